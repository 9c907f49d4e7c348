"""kubectl against the simulated server: built-in kinds, patch types, scale, logs, kustomize and validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.kaito_sim.manifests import CARD, CRD, deployment


async def test_deployment_apply_strategic_merge_keeps_lists(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=deployment("web"))
    out = await kubectl("apply", "-f", "-", stdin=deployment("web", image="nginx:1.28", replicas=2))
    assert "deployment.apps/web configured" in out.stdout
    obj = (await kubectl("get", "deploy", "web", "-o", "json")).json()
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.28" and container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert obj["spec"]["replicas"] == 2 and obj["metadata"]["generation"] == 2
    assert obj["spec"]["strategy"]["type"] == "RollingUpdate"  # server default


async def test_patch_types(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=deployment("p"))
    await kubectl(
        "patch",
        "deploy",
        "p",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"B","value":"2"}]}]}}}}',
    )
    env = (await kubectl("get", "deploy", "p", "-o", "json")).json()["spec"]["template"]["spec"]["containers"][0]
    assert [e["name"] for e in env["env"]] == ["A", "B"]  # strategic: merged by name
    await kubectl("patch", "deploy", "p", "--type=merge", "-p", '{"metadata":{"labels":{"extra":"yes"}}}')
    await kubectl(
        "patch",
        "deploy",
        "p",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/replicas","value":3},{"op":"remove","path":"/metadata/labels/extra"}]',
    )
    obj = (await kubectl("get", "deploy", "p", "-o", "json")).json()
    assert obj["spec"]["replicas"] == 3 and "extra" not in obj["metadata"]["labels"]
    out = await kubectl(
        "patch", "deploy", "p", "--type=json", "-p", '[{"op":"test","path":"/spec/replicas","value":9}]', check=False
    )
    assert out.rc == 1


async def test_strategic_patch_on_custom_resource_is_unsupported(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=CRD, namespaced=False)
    await kubectl("apply", "-f", "-", stdin=CARD)
    out = await kubectl("patch", "mc", "phi-4-mini", "--type=strategic", "-p", '{"spec":{"gpus":2}}', check=False)
    # kubectl refuses on its own; the server's 415 for this case is covered in test_http.py.
    assert out.rc == 1 and "strategic-merge-patch+json is not supported" in out.stderr


async def test_invalid_deployment_rejected_by_official_schema(kubectl: Kubectl) -> None:
    bad = deployment("bad").replace("replicas: 1", "replicas: two")
    out = await kubectl("apply", "--validate=false", "-f", "-", stdin=bad, check=False)
    assert out.rc == 1 and "spec.replicas" in out.stderr
    mismatch = deployment("bad2").replace("labels: {app: bad2}\n    spec:", "labels: {app: other}\n    spec:")
    out = await kubectl("apply", "-f", "-", stdin=mismatch, check=False)
    assert out.rc == 1 and "selector" in out.stderr


async def test_scale_subresource(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=deployment("s"))
    out = await kubectl("scale", "deploy/s", "--replicas=4")
    assert "deployment.apps/s scaled" in out.stdout
    assert (await kubectl("get", "deploy", "s", "-o", "json")).json()["spec"]["replicas"] == 4


async def test_stale_resource_version_conflicts(kubectl: Kubectl, tmp_path: Path) -> None:
    await kubectl("create", "configmap", "cfg", "--from-literal=a=1")
    stale = (await kubectl("get", "cm", "cfg", "-o", "json")).json()
    await kubectl("patch", "cm", "cfg", "--type=merge", "-p", '{"data":{"a":"2"}}')
    stale["data"]["a"] = "3"
    path = tmp_path / "stale.json"
    path.write_text(json.dumps(stale))
    out = await kubectl("replace", "-f", str(path), check=False)
    assert out.rc == 1
    assert "the object has been modified; please apply your changes to the latest version" in out.stderr
    assert (await kubectl("get", "cm", "cfg", "-o", "json")).json()["data"] == {"a": "2"}


async def test_create_existing_is_already_exists(kubectl: Kubectl) -> None:
    await kubectl("create", "configmap", "dup")
    out = await kubectl("create", "configmap", "dup", check=False)
    assert out.rc == 1 and 'configmaps "dup" already exists' in out.stderr


async def test_apply_kustomization(kubectl: Kubectl, tmp_path: Path) -> None:
    (tmp_path / "deploy.yaml").write_text(deployment("kz"))
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {k: v}\n")
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [deploy.yaml, cm.yaml]\nlabels:\n- pairs: {owner: kaito}\n  includeSelectors: false\n"
        "namePrefix: demo-\n"
    )
    out = await kubectl("apply", "-k", str(tmp_path))
    assert "configmap/demo-settings created" in out.stdout and "deployment.apps/demo-kz created" in out.stdout
    cm = (await kubectl("get", "cm", "demo-settings", "-o", "json")).json()
    assert cm["metadata"]["labels"] == {"owner": "kaito"}


async def test_pod_logs(kubectl: Kubectl, sim: SimServer) -> None:
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p1}\nspec:\n  containers: [{name: c, image: busybox}]\n"
    await kubectl("apply", "-f", "-", stdin=pod)
    for i in range(5):
        sim.cluster.append_log(kubectl.namespace, "p1", "c", f"line {i}")
    assert (await kubectl("logs", "p1")).stdout.splitlines() == [f"line {i}" for i in range(5)]
    assert (await kubectl("logs", "p1", "--tail=2")).stdout.splitlines() == ["line 3", "line 4"]
    await kubectl("wait", "--for=condition=Ready", "pod/p1")
    out = await kubectl("get", "pod", "p1")
    assert out.stdout.splitlines()[1].split()[:3] == ["p1", "1/1", "Running"]


async def test_services_get_cluster_ips_and_table(kubectl: Kubectl) -> None:
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec:\n  selector: {app: api}\n  ports: [{port: 80}]\n"
    await kubectl("apply", "-f", "-", stdin=svc)
    row = (await kubectl("get", "svc", "api")).stdout.splitlines()[1].split()
    assert row[0] == "api" and row[1] == "ClusterIP" and row[2].startswith("10.") and row[4] == "80/TCP"


@pytest.mark.parametrize(
    ("args", "kind", "name"),
    [
        pytest.param(("deployment", "d1", "--image=nginx:1.27", "--replicas=2"), "deploy", "d1", id="deployment"),
        pytest.param(("secret", "generic", "s1", "--from-literal=k=v"), "secret", "s1", id="secret"),
        pytest.param(("service", "clusterip", "svc1", "--tcp=80:8080"), "svc", "svc1", id="service"),
        pytest.param(("cronjob", "cj1", "--image=busybox", "--schedule=*/5 * * * *"), "cronjob", "cj1", id="cronjob"),
        pytest.param(("job", "j1", "--image=busybox"), "job", "j1", id="job"),
        pytest.param(("role", "r1", "--verb=get", "--resource=pods"), "role", "r1", id="role"),
        pytest.param(("serviceaccount", "sa1"), "sa", "sa1", id="serviceaccount"),
        pytest.param(("poddisruptionbudget", "pdb1", "--selector=app=x", "--min-available=1"), "pdb", "pdb1", id="pdb"),
    ],
)
async def test_kubectl_create_generators_send_protobuf_that_round_trips(
    kubectl: Kubectl, args: tuple[str, ...], kind: str, name: str
) -> None:
    expected = (await kubectl("create", *args, "--dry-run=client", "-o", "json")).json()
    await kubectl("create", *args)
    live = (await kubectl("get", kind, name, "-o", "json")).json()
    assert live["kind"] == expected["kind"] and live["metadata"]["uid"]
    for key in ("data", "rules"):  # stored exactly as sent; spec gains server defaults
        assert live.get(key) == expected.get(key)
    if kind == "deploy":
        assert live["spec"]["replicas"] == 2
        assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
