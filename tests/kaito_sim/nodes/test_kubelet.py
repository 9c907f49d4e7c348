"""Nodes, the scheduler and the kubelet: pods land on a fitting node and run, or say why they cannot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest

from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.nodes.nodespec import NodeSpec
from kaito_sim.nodes.scheduling import affinity_matches, fit_error, pod_requests, quantity, tolerates
from kaito_sim.server import SimServer
from tests.conftest import Kubectl

SYSTEM = "aks-system-00000000"
GPU_NODE = NodeSpec(
    name="gpu-1",
    labels={"sku": "gpu", "node.kubernetes.io/instance-type": "Standard_NC6s_v3"},
    capacity={"cpu": "6", "memory": "112Gi", "pods": "110", "nvidia.com/gpu": "1"},
    taints=({"key": "sku", "value": "gpu", "effect": "NoSchedule"},),
)


def pod_yaml(name: str, *, labels: str = "", extra_spec: str = "", gpus: int = 0, init: bool = False) -> str:
    resources = f"\n      resources: {{limits: {{nvidia.com/gpu: {gpus}}}}}" if gpus else ""
    inits = "  initContainers: [{name: setup, image: busybox}, {name: warm, image: busybox}]\n" if init else ""
    return (
        f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}{labels}}}\nspec:\n"
        f"{inits}{extra_spec}  containers:\n    - name: main\n      image: busybox:1.36{resources}\n"
    )


async def get_json(kubectl: Kubectl, *args: str) -> Any:
    return (await kubectl("get", *args, "-o", "json")).json()


async def until(kubectl: Kubectl, what: str, check: Callable[[JsonObj], bool], *, within: float = 10) -> JsonObj:
    """Poll `kubectl get <what> -o json` until `check` holds; return the object it held for."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        obj: JsonObj = await get_json(kubectl, *what.split())
        if check(obj):
            return obj
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} never satisfied the check; last seen:\n{json.dumps(obj, indent=1)[:3000]}")
        await asyncio.sleep(0.05)


def cond(obj: JsonObj, kind: str) -> JsonObj:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


async def events(kubectl: Kubectl, name: str) -> list[JsonObj]:
    items: list[JsonObj] = (await get_json(kubectl, "events"))["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


async def test_system_node_is_ready(kubectl: Kubectl) -> None:
    rows = (await kubectl("get", "nodes", namespaced=False)).stdout.splitlines()
    assert rows[1].split()[:2] == [SYSTEM, "Ready"] and rows[1].split()[-1] == "v1.32.0"
    node = await get_json(kubectl, "node", SYSTEM)
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.azure.com/mode"] == "system" and labels["kubernetes.io/hostname"] == SYSTEM
    assert node["status"]["allocatable"]["cpu"] == "4" and "nvidia.com/gpu" not in node["status"]["capacity"]
    assert [c["status"] for c in node["status"]["conditions"]] == ["False", "False", "False", "True"]


async def test_kubectl_run_pod_becomes_ready_on_system_node(kubectl: Kubectl) -> None:
    await kubectl("run", "nginx", "--image=nginx")
    await kubectl("wait", "--for=condition=Ready", "pod/nginx", "--timeout=20s")
    pod = await get_json(kubectl, "pod", "nginx")
    status = pod["status"]
    assert pod["spec"]["nodeName"] == SYSTEM and status["phase"] == "Running"
    assert status["podIP"].startswith("10.244.") and status["hostIP"] == "10.224.0.4"
    [container] = status["containerStatuses"]
    assert container["image"] == "docker.io/library/nginx:latest" and container["imageID"].startswith("docker.io/")
    assert container["started"] and container["ready"] and container["restartCount"] == 0
    assert container["containerID"].startswith("containerd://") and "running" in container["state"]
    assert {c["type"] for c in status["conditions"]} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
    scheduled = [e for e in await events(kubectl, "nginx") if e["reason"] == "Scheduled"]
    assert scheduled and scheduled[0]["message"].endswith(f"/nginx to {SYSTEM}")


async def test_init_containers_complete_before_containers_run(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", "-", stdin=pod_yaml("init", init=True))
    await kubectl("wait", "--for=condition=Ready", "pod/init")
    statuses = (await get_json(kubectl, "pod", "init"))["status"]["initContainerStatuses"]
    assert [(s["name"], s["state"]["terminated"]["reason"]) for s in statuses] == [
        ("setup", "Completed"),
        ("warm", "Completed"),
    ]


async def test_gpu_pod_waits_for_a_gpu_node_it_tolerates(kubectl: Kubectl, sim: SimServer) -> None:
    await kubectl("apply", "-f", "-", stdin=pod_yaml("gpu", gpus=1))
    await kubectl("wait", "--for=condition=PodScheduled=false", "pod/gpu")
    pod = await get_json(kubectl, "pod", "gpu")
    scheduled = cond(pod, "PodScheduled")
    assert scheduled["reason"] == "Unschedulable" and pod["status"]["phase"] == "Pending"
    assert scheduled["message"] == (
        "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    )
    failed = [e for e in await events(kubectl, "gpu") if e["reason"] == "FailedScheduling"]
    assert failed and failed[0]["type"] == "Warning" and "Insufficient nvidia.com/gpu" in failed[0]["message"]

    await sim.add_node(GPU_NODE)
    pod = await until(kubectl, "pod gpu", lambda p: "untolerated taint" in cond(p, "PodScheduled")["message"])
    assert cond(pod, "PodScheduled")["message"].startswith(
        "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) had untolerated taint {sku: gpu}."
    )
    assert "nodeName" not in pod["spec"]

    toleration = [{"op": "add", "path": "/spec/tolerations", "value": [{"key": "sku", "operator": "Exists"}]}]
    await kubectl("patch", "pod", "gpu", "--type=json", "-p", json.dumps(toleration))
    await kubectl("wait", "--for=condition=Ready", "pod/gpu")
    assert (await get_json(kubectl, "pod", "gpu"))["spec"]["nodeName"] == "gpu-1"
    allocated = (await kubectl("describe", "node", "gpu-1", namespaced=False)).stdout
    assert "gpu" in allocated


@pytest.mark.parametrize(
    "placement",
    [
        pytest.param("  nodeSelector: {sku: gpu}\n", id="node-selector"),
        pytest.param(
            "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n"
            "        nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.azure.com/mode, operator: NotIn, "
            "values: [system]}]}]\n",
            id="affinity-not-in",
        ),
    ],
)
async def test_placement_mismatch_keeps_pod_pending(kubectl: Kubectl, placement: str) -> None:
    await kubectl("apply", "-f", "-", stdin=pod_yaml("picky", extra_spec=placement))
    await kubectl("wait", "--for=condition=PodScheduled=false", "pod/picky")
    message = cond(await get_json(kubectl, "pod", "picky"), "PodScheduled")["message"]
    assert message.startswith("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.")


FAULTS = [
    pytest.param(
        "ImagePullBackOff",
        lambda s: s["containerStatuses"][0]["state"].get("waiting", {}).get("reason") == "ImagePullBackOff",
        lambda s: (
            s["containerStatuses"][0]["state"]["waiting"]["message"] == 'Back-off pulling image "busybox:1.36"'
            and s["phase"] == "Pending"
        ),
        {"Failed", "BackOff"},
        id="image-pull",
    ),
    pytest.param(
        "CrashLoopBackOff",
        lambda s: s["containerStatuses"][0]["restartCount"] >= 2,
        lambda s: (
            s["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            and s["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
        ),
        {"BackOff"},
        id="crash-loop",
    ),
    pytest.param(
        "OOMKilled",
        lambda s: s["containerStatuses"][0]["restartCount"] >= 1,
        lambda s: (
            s["containerStatuses"][0]["lastState"]["terminated"]["reason"] == "OOMKilled"
            and s["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 137
            and s["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        ),
        {"BackOff"},
        id="oom-killed",
    ),
    pytest.param(
        "ProbeFailure",
        lambda s: s.get("phase") == "Running",
        lambda s: not s["containerStatuses"][0]["ready"] and s["containerStatuses"][0]["started"],
        {"Unhealthy"},
        id="probe-failure",
    ),
    pytest.param(
        "InitFailure",
        lambda s: bool(s.get("initContainerStatuses")) and s["initContainerStatuses"][0]["restartCount"] >= 1,
        lambda s: (
            s["initContainerStatuses"][0]["lastState"]["terminated"] | {"startedAt": "", "finishedAt": ""}
            == {"exitCode": 1, "reason": "Error", "startedAt": "", "finishedAt": ""}
            and s["phase"] == "Pending"
        ),
        {"BackOff"},
        id="init-failure",
    ),
]


@pytest.mark.parametrize(("mode", "reached", "shows", "reasons"), FAULTS)
async def test_fault_shows_in_pod_status_and_clears(
    kubectl: Kubectl,
    sim: SimServer,
    mode: str,
    reached: Callable[[JsonObj], bool],
    shows: Callable[[JsonObj], bool],
    reasons: set[str],
) -> None:
    sim.pod_faults.backoff_seconds = 0.1
    sim.pod_faults.add({"app": "sick"}, mode, namespace=kubectl.namespace)
    await kubectl("apply", "-f", "-", stdin=pod_yaml("sick", init=mode == "InitFailure"))
    pod = await until(kubectl, "pod sick", lambda p: reached(p.get("status", {})))
    assert shows(pod["status"]), json.dumps(pod["status"], indent=1)
    assert cond(pod, "Ready")["status"] == "False"
    warnings = [e for e in await events(kubectl, "sick") if e["type"] == "Warning"]
    assert reasons <= {e["reason"] for e in warnings}
    if mode == "ProbeFailure":
        assert any(e["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 503" for e in warnings)

    sim.pod_faults.clear()
    await kubectl("wait", "--for=condition=Ready", "pod/sick")
    assert (await get_json(kubectl, "pod", "sick"))["status"]["phase"] == "Running"


async def test_crash_loop_writes_stop_after_the_restart_limit(kubectl: Kubectl, sim: SimServer) -> None:
    sim.pod_faults.backoff_seconds = 0.05
    sim.pod_faults.add({"app": "loop"}, "CrashLoopBackOff")
    await kubectl("apply", "-f", "-", stdin=pod_yaml("loop"))
    await until(kubectl, "pod loop", lambda p: p["status"].get("containerStatuses", [{}])[0].get("restartCount") == 5)
    rv = sim.cluster.store.rv
    await asyncio.sleep(0.5)
    assert sim.cluster.store.rv == rv
    row = (await kubectl("get", "pod", "loop")).stdout.splitlines()[1].split()
    assert row[1:4] == ["0/1", "CrashLoopBackOff", "5"]


async def test_never_restarting_pod_fails_for_good(kubectl: Kubectl, sim: SimServer) -> None:
    sim.pod_faults.add({"app": "once"}, "OOMKilled", message="out of memory")
    await kubectl("apply", "-f", "-", stdin=pod_yaml("once", extra_spec="  restartPolicy: Never\n"))
    pod = await until(kubectl, "pod once", lambda p: p["status"].get("phase") == "Failed")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"], terminated["message"]) == ("OOMKilled", 137, "out of memory")
    sim.pod_faults.clear()
    await asyncio.sleep(0.2)
    assert (await get_json(kubectl, "pod", "once"))["status"]["phase"] == "Failed"


async def test_remove_node_evicts_its_pods(kubectl: Kubectl, sim: SimServer) -> None:
    await sim.add_node(NodeSpec(name="extra", labels={"pool": "extra"}, capacity={"cpu": "2", "memory": "4Gi"}))
    await kubectl("apply", "-f", "-", stdin=pod_yaml("guest", extra_spec="  nodeSelector: {pool: extra}\n"))
    await kubectl("wait", "--for=condition=Ready", "pod/guest")
    await sim.remove_node("extra")
    assert (await kubectl("get", "pod", "guest", check=False)).rc != 0
    assert "extra" not in (await kubectl("get", "nodes", namespaced=False)).stdout
    await sim.remove_node("extra")  # gone already: nothing to do


async def test_node_ready_after_delays_pods(kubectl: Kubectl, sim: SimServer) -> None:
    await sim.add_node(NodeSpec(name="slow", labels={"pool": "slow"}, capacity={"cpu": "2"}, ready_after=1.5))
    row = (await kubectl("get", "node", "slow", namespaced=False)).stdout.splitlines()[1].split()
    assert row[:2] == ["slow", "NotReady"]
    await kubectl("apply", "-f", "-", stdin=pod_yaml("patient", extra_spec="  nodeSelector: {pool: slow}\n"))
    await kubectl("wait", "--for=condition=PodScheduled=false", "pod/patient")
    message = cond(await get_json(kubectl, "pod", "patient"), "PodScheduled")["message"]
    assert "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }" in message
    await kubectl("wait", "--for=condition=Ready", "node/slow", namespaced=False)
    await kubectl("wait", "--for=condition=Ready", "pod/patient")
    assert (await get_json(kubectl, "pod", "patient"))["spec"]["nodeName"] == "slow"


async def test_pod_ready_delay_holds_readiness(kubectl: Kubectl, sim: SimServer) -> None:
    sim.pod_ready_delay = 1.0
    await kubectl("apply", "-f", "-", stdin=pod_yaml("warmup"))
    pod = await until(kubectl, "pod warmup", lambda p: p["status"].get("phase") == "Running")
    assert cond(pod, "Ready")["status"] == "False"
    await kubectl("wait", "--for=condition=Ready", "pod/warmup")


# ----- scheduling rules, as pure functions


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("100m", Fraction(1, 10), id="milli"),
        pytest.param("16Gi", Fraction(16 * 2**30), id="binary"),
        pytest.param("1.5k", Fraction(1500), id="decimal"),
        pytest.param("1e3", Fraction(1000), id="exponent"),
        pytest.param(2, Fraction(2), id="int"),
    ],
)
def test_quantity(text: str | int, value: Fraction) -> None:
    assert quantity(text) == value


def test_pod_requests_take_init_max_and_limits_as_requests() -> None:
    spec = {
        "containers": [{"resources": {"requests": {"cpu": "500m"}}}, {"resources": {"limits": {"nvidia.com/gpu": 1}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
    }
    assert pod_requests(spec) == {"cpu": Fraction(2), "nvidia.com/gpu": Fraction(1)}


NODE: JsonObj = {"metadata": {"name": "n1", "labels": {"sku": "gpu", "gpus": "4"}}}


@pytest.mark.parametrize(
    ("expression", "matches"),
    [
        pytest.param({"key": "sku", "operator": "In", "values": ["gpu"]}, True, id="in"),
        pytest.param({"key": "sku", "operator": "NotIn", "values": ["gpu"]}, False, id="not-in"),
        pytest.param({"key": "zone", "operator": "Exists"}, False, id="exists"),
        pytest.param({"key": "zone", "operator": "DoesNotExist"}, True, id="does-not-exist"),
        pytest.param({"key": "gpus", "operator": "Gt", "values": ["2"]}, True, id="gt"),
        pytest.param({"key": "gpus", "operator": "Lt", "values": ["2"]}, False, id="lt"),
    ],
)
def test_node_affinity_operators(expression: JsonObj, matches: bool) -> None:
    terms = {"nodeSelectorTerms": [{"matchExpressions": [expression]}]}
    spec = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": terms}}}
    assert affinity_matches(spec, NODE) is matches


def test_node_affinity_match_fields_and_ored_terms() -> None:
    terms = [
        {"matchExpressions": [{"key": "sku", "operator": "In", "values": ["cpu"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
    ]
    spec = {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    }
    assert affinity_matches(spec, NODE)


TAINT = {"key": "sku", "value": "gpu", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("toleration", "ok"),
    [
        pytest.param({"operator": "Exists"}, True, id="empty-key-exists"),
        pytest.param({"key": "sku", "operator": "Exists"}, True, id="key-exists"),
        pytest.param({"key": "sku", "value": "gpu"}, True, id="equal"),
        pytest.param({"key": "sku", "value": "cpu"}, False, id="other-value"),
        pytest.param({"key": "sku", "operator": "Exists", "effect": "NoExecute"}, False, id="other-effect"),
    ],
)
def test_tolerations(toleration: JsonObj, ok: bool) -> None:
    assert tolerates(toleration, TAINT) is ok


def test_fit_error_reads_like_the_real_scheduler() -> None:
    taint = "node(s) had untolerated taint {sku: gpu}"
    assert fit_error([["Insufficient nvidia.com/gpu"], [taint], [taint]]) == (
        "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint {sku: gpu}. "
        "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, "
        "2 Preemption is not helpful for scheduling."
    )
    assert fit_error([]) == "no nodes available to schedule pods"
