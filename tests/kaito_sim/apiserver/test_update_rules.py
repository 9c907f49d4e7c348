"""Rules a real server enforces on updates and deletes: immutable fields, protected namespaces, dry runs."""

from __future__ import annotations

import pytest

from tests.conftest import Kubectl
from tests.kaito_sim.manifests import deployment


@pytest.mark.parametrize(
    ("setup", "patch", "message"),
    [
        pytest.param(
            ("create", "configmap", "im", "--from-literal=a=1"),
            ("cm", "im", '{"data":{"a":"2"}}'),
            "field is immutable when `immutable` is set",
            id="immutable-configmap",
        ),
        pytest.param(
            ("run", "p1", "--image=nginx"),
            ("pod", "p1", '{"spec":{"containers":[{"name":"p1","image":"nginx","workingDir":"/x"}]}}'),
            "pod updates may not change fields other than",
            id="pod-spec",
        ),
        pytest.param(
            ("create", "service", "clusterip", "s1", "--tcp=80:80"),
            ("svc", "s1", '{"spec":{"clusterIP":"10.96.7.7"}}'),
            "may not change once set",
            id="service-cluster-ip",
        ),
    ],
)
async def test_immutable_fields_are_refused(
    kubectl: Kubectl, setup: tuple[str, ...], patch: tuple[str, str, str], message: str
) -> None:
    await kubectl(*setup)
    if patch[0] == "cm":
        await kubectl("patch", "cm", "im", "--type=merge", "-p", '{"immutable":true}')
    out = await kubectl("patch", patch[0], patch[1], "--type=merge", "-p", patch[2], check=False)
    assert out.rc == 1 and message in out.stderr


async def test_pod_image_may_change(kubectl: Kubectl) -> None:
    await kubectl("run", "p2", "--image=nginx:1")
    await kubectl("set", "image", "pod/p2", "p2=nginx:2")
    pod = (await kubectl("get", "pod", "p2", "-o", "json")).json()
    assert pod["spec"]["containers"][0]["image"] == "nginx:2"


async def test_deployment_selector_is_immutable(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=deployment("sel"))
    changed = (
        deployment("sel")
        .replace("matchLabels: {app: sel}", "matchLabels: {app: sel, x: z}")
        .replace("      labels: {app: sel}\n    spec:", "      labels: {app: sel, x: z}\n    spec:")
    )
    out = await kubectl("apply", "-f", "-", stdin=changed, check=False)
    assert out.rc == 1 and "spec.selector" in out.stderr and "field is immutable" in out.stderr


async def test_server_dry_run_delete_keeps_the_object(kubectl: Kubectl) -> None:
    await kubectl("create", "configmap", "keep")
    out = await kubectl("delete", "cm", "keep", "--dry-run=server")
    assert "(server dry run)" in out.stdout
    await kubectl("get", "cm", "keep")


async def test_system_namespaces_cannot_be_deleted(kubectl: Kubectl) -> None:
    out = await kubectl("delete", "namespace", "default", namespaced=False, check=False)
    assert out.rc == 1 and "this namespace may not be deleted" in out.stderr
    await kubectl("get", "namespace", "default", namespaced=False)


async def test_listing_a_missing_namespace_is_empty(kubectl: Kubectl) -> None:
    out = await kubectl("get", "pods", "-n", "nope", namespaced=False)
    assert out.rc == 0 and "No resources found in nope namespace." in out.stderr


async def test_unknown_field_warning_reaches_kubectl(kubectl: Kubectl) -> None:
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: u1}\nfoo: 1\n"
    out = await kubectl("create", "-f", "-", "--validate=warn", stdin=body)
    assert 'Warning: unknown field "foo"' in out.stderr


async def test_foreground_delete_only_detaches_dependents_with_another_owner(kubectl: Kubectl) -> None:
    uids = {}
    for name in ("a", "b"):
        await kubectl("create", "configmap", name)
        uids[name] = (await kubectl("get", "cm", name, "-o", "json")).json()["metadata"]["uid"]
    refs = "".join(f"  - {{apiVersion: v1, kind: ConfigMap, name: {n}, uid: {u}}}\n" for n, u in uids.items())
    await kubectl(
        "apply", "-f", "-", stdin=f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n  ownerReferences:\n{refs}"
    )
    await kubectl("delete", "cm", "a", "--cascade=foreground")
    child = (await kubectl("get", "cm", "d", "-o", "json")).json()
    assert [r["name"] for r in child["metadata"]["ownerReferences"]] == ["b"]
