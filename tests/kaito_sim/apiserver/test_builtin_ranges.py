"""Range checks of built-in kinds: the real kubectl against the simulated server, then the rules one by one."""

from __future__ import annotations

from typing import Any

import pytest

from kaito_sim.apiserver.builtin_ranges import name_causes, range_causes
from kaito_sim.apiserver.errors import ApiError
from kaito_sim.apiserver.quantity import parse_quantity
from tests.conftest import Kubectl
from tests.kaito_sim.manifests import deployment

SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
CONTAINER = "spec.template.spec.containers[0]"


def with_resources(name: str, resources: str) -> str:
    return deployment(name).replace("          env:\n", f"          resources: {resources}\n          env:\n")


# ----- the real kubectl


async def test_a_container_port_out_of_range_is_refused(kubectl: Kubectl) -> None:
    out = await kubectl("create", "deployment", "x", "--image=nginx", "--port=99999", check=False)
    assert out.rc == 1
    assert (
        'Deployment.apps "x" is invalid: spec.template.spec.containers[0].ports[0].containerPort: '
        "Invalid value: 99999: must be between 1 and 65535, inclusive"
    ) in out.stderr
    assert (await kubectl("get", "deployments", "-o", "name")).stdout == ""


async def test_negative_replicas_are_refused(kubectl: Kubectl) -> None:
    out = await kubectl("apply", "-f", "-", stdin=deployment("neg", replicas=-1), check=False)
    assert out.rc == 1
    assert 'The Deployment "neg" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0' in (
        out.stderr
    )


async def test_requests_above_limits_and_negative_quantities_are_refused(kubectl: Kubectl) -> None:
    bad = with_resources("res", "{requests: {cpu: 2000m}, limits: {cpu: '1', memory: -1Gi}}")
    out = await kubectl("apply", "-f", "-", stdin=bad, check=False)
    assert out.rc == 1 and 'The Deployment "res" is invalid:' in out.stderr
    assert f'* {CONTAINER}.resources.limits[memory]: Invalid value: "-1Gi": must be greater than or equal to 0' in (
        out.stderr
    )
    assert f'* {CONTAINER}.resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1' in (
        out.stderr
    )


async def test_a_malformed_quantity_fails_decoding(kubectl: Kubectl) -> None:
    out = await kubectl("apply", "-f", "-", stdin=with_resources("q", "{limits: {cpu: lots}}"), check=False)
    assert out.rc == 1
    assert (
        'Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be handled '
        "as a Deployment: quantities must match the regular expression "
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    ) in out.stderr


async def test_service_ports_out_of_range_are_refused(kubectl: Kubectl) -> None:
    service = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec:\n  ports: [{port: 70000, targetPort: 8080}]\n"
    )
    out = await kubectl("apply", "-f", "-", stdin=service, check=False)
    assert out.rc == 1
    assert (
        'The Service "svc" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive'
    ) in out.stderr


async def test_names_are_checked_by_kind(kubectl: Kubectl) -> None:
    out = await kubectl("create", "configmap", "Foo_Bar", check=False)
    assert out.rc == 1
    assert f'ConfigMap "Foo_Bar" is invalid: metadata.name: Invalid value: "Foo_Bar": {SUBDOMAIN}' in out.stderr
    out = await kubectl("create", "service", "clusterip", "1st", "--tcp=80", check=False)
    assert out.rc == 1 and f'Service "1st" is invalid: metadata.name: Invalid value: "1st": {DNS1035}' in out.stderr
    # RBAC objects are named by path segments: the colons of system roles are fine.
    role = ("create", "clusterrole", "system:kaito-reader", "--verb=get", "--resource=pods")
    assert "created" in (await kubectl(*role, namespaced=False)).stdout


async def test_valid_ranges_are_accepted(kubectl: Kubectl) -> None:
    good = with_resources("ok", "{requests: {cpu: 500m, nvidia.com/gpu: 1}, limits: {cpu: '1', nvidia.com/gpu: 1}}")
    await kubectl("apply", "-f", "-", stdin=good.replace("replicas: 1", "replicas: 0"))
    obj = (await kubectl("get", "deploy", "ok", "-o", "json")).json()
    assert obj["spec"]["replicas"] == 0
    assert obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "500m"


# ----- the rules


def pod(container: dict[str, Any], *, kind: str = "Pod") -> dict[str, Any]:
    spec = {"containers": [{"name": "c", "image": "i", **container}]}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
    if kind == "CronJob":
        job = {"jobTemplate": {"spec": {"template": {"spec": spec}}}}
        return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "p"}, "spec": job}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "p"}, "spec": {"template": {"spec": spec}}}


def messages(obj: dict[str, Any]) -> list[str]:
    return [f"{c['field']}: {c['message']}" for c in range_causes(obj)]


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Pod", "spec.containers[0]"),
        ("StatefulSet", "spec.template.spec.containers[0]"),
        ("CronJob", "spec.jobTemplate.spec.template.spec.containers[0]"),
    ],
)
def test_ports_of_every_pod_spec(kind: str, path: str) -> None:
    ports = [{"containerPort": 0}, {"containerPort": 65535, "hostPort": 65536}, {"containerPort": 1, "hostPort": 0}]
    assert messages(pod({"ports": ports}, kind=kind)) == [
        f"{path}.ports[0].containerPort: Required value",
        f"{path}.ports[1].hostPort: Invalid value: 65536: must be between 1 and 65535, inclusive",
    ]


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"])
def test_replicas_of_every_replicated_kind(kind: str) -> None:
    obj: dict[str, Any] = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "r"}, "spec": {"replicas": -3}}
    assert messages(obj) == ["spec.replicas: Invalid value: -3: must be greater than or equal to 0"]
    obj["spec"]["replicas"] = 0
    assert messages(obj) == []


def test_a_zero_target_port_is_the_port() -> None:
    spec = {"ports": [{"port": 70000, "targetPort": 0}, {"port": 80, "targetPort": "http"}, {"port": 81}]}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": spec}
    assert messages(service) == [
        "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
    ]


def test_extended_resources_are_whole_and_requested_at_their_limit() -> None:
    gpu = "nvidia.com/gpu"
    where = "spec.containers[0].resources"
    unequal = {"requests": {gpu: "1"}, "limits": {gpu: "2"}}
    assert messages(pod({"resources": unequal})) == [
        f'{where}.requests: Invalid value: "1": must be equal to nvidia.com/gpu limit of 2'
    ]
    halves = {"requests": {gpu: "0.5"}, "limits": {gpu: "0.5"}}
    assert messages(pod({"resources": halves})) == [
        f'{where}.limits[nvidia.com/gpu]: Invalid value: "500m": must be an integer',
        f'{where}.requests[nvidia.com/gpu]: Invalid value: "500m": must be an integer',
    ]
    assert messages(pod({"resources": {"requests": {gpu: 1}}})) == [
        f"{where}.limits: Required value: Limit must be set for non overcommitable resources"
    ]
    assert messages(pod({"resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": 1}}})) == []


def test_a_malformed_quantity_is_a_decoding_error_and_other_types_are_the_schemas() -> None:
    with pytest.raises(ApiError) as failed:
        range_causes(pod({"resources": {"limits": {"memory": "1KK"}}}))
    assert (failed.value.code, failed.value.message) == (
        400,
        'Pod in version "v1" cannot be handled as a Pod: unable to parse quantity\'s suffix',
    )
    assert range_causes(pod({"resources": {"limits": {"memory": ["1Gi"]}}})) == []


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("2000m", "2"),
        ("0.5", "500m"),
        ("1.5Gi", "1536Mi"),
        ("0.5Ki", "512"),
        ("1e3", "1e3"),
        ("1.5e3", "1500"),
        ("129M", "129M"),
        (0.25, "250m"),
        ("0.1n", "1n"),
        ("-1Gi", "-1Gi"),
    ],
)
def test_quantities_print_as_the_api_server_prints_them(written: object, canonical: str) -> None:
    assert str(parse_quantity(written)) == canonical


def test_names_by_kind() -> None:
    assert name_causes("Deployment", "web.v2") == [] and name_causes("Service", "web") == []
    assert [c["message"] for c in name_causes("Service", "web.v2")] == [f'Invalid value: "web.v2": {DNS1035}']
    too_long = "a" * 254
    assert [c["message"].split(": ", 2)[2] for c in name_causes("ConfigMap", too_long)] == [
        "must be no more than 253 characters"
    ]
    assert name_causes("ClusterRoleBinding", "system:node") == []
    assert [c["message"] for c in name_causes("Role", "a/b")] == ["Invalid value: \"a/b\": may not contain '/'"]
    assert [c["message"] for c in name_causes("RoleBinding", "..")] == ["Invalid value: \"..\": may not be '..'"]
