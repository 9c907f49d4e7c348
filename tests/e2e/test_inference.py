"""The README's inference example on the simulated AKS cluster: kubectl apply, GPU nodes, Ready, and a clean delete."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from kaito_sim.nodes.nodespec import NodeSpec
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, condition, wait_workspace

ROOT = Path(__file__).resolve().parents[2]
PHI3 = ROOT / "examples/inference/kaito_workspace_phi_3.yaml"
NAME = "workspace-phi-3-mini"


async def gpu_nodes(kubectl: Kubectl) -> list[str]:
    nodes = (await kubectl("get", "nodes", "-o", "json", namespaced=False)).json()["items"]
    return [n["metadata"]["name"] for n in nodes if "nvidia.com/gpu" in (n["status"].get("capacity") or {})]


async def test_readme_example_becomes_ready_and_deletes_cleanly(kubectl: Kubectl, operator: Operator) -> None:
    await kubectl("apply", "-f", str(PHI3))
    ws = await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True")
    table = (await kubectl("get", "workspace", NAME)).stdout.splitlines()
    assert table[0].split() == ["NAME", "INSTANCE", "RESOURCEREADY", "INFERENCEREADY", "WORKSPACEREADY", "AGE"]
    assert table[1].split()[:5] == [NAME, "Standard_NC6s_v3", "True", "True", "True"]
    plan = ws["status"]["plan"]
    assert plan["nodes"] == 1 and plan["dtype"] == "float16" and plan["maxModelLen"] == 4096
    assert ws["status"]["state"] == "Ready" and len(ws["status"]["workerNodes"]) == 1
    claims = (await kubectl("get", "nodeclaims", "-o", "json", namespaced=False)).json()["items"]
    assert len(claims) == 1 and claims[0]["metadata"]["labels"]["kaito.sh/workspace"] == NAME
    assert len(operator.aks.arm.pools) == 1 and operator.aks.arm.requests.creates == 1
    assert len(await gpu_nodes(kubectl)) == 1
    service = (await kubectl("get", "service", NAME, "-o", "json")).json()
    assert service["spec"]["ports"][0]["port"] == 80 and service["spec"]["ports"][0]["targetPort"] == 5000
    endpoints = (await kubectl("get", "endpoints", NAME, "-o", "json")).json()
    assert endpoints["subsets"][0]["addresses"], "the Service should front a ready pod"
    events = (await kubectl("get", "events", "--field-selector", f"involvedObject.name={NAME}", "-o", "json")).json()
    assert any(e["reason"] == "WorkspaceSucceededTrue" for e in events["items"])

    await kubectl("delete", "workspace", NAME, "--timeout=60s")
    for _ in range(150):
        claims = (await kubectl("get", "nodeclaims", "-o", "json", namespaced=False)).json()["items"]
        if not claims and not operator.aks.arm.pools and not await gpu_nodes(kubectl):
            break
        await asyncio.sleep(0.2)
    assert not claims, "NodeClaims left behind"
    assert not operator.aks.arm.pools, "agent pools left behind"
    assert not await gpu_nodes(kubectl), "GPU nodes left behind"


async def test_quota_exceeded_is_reported_and_recovers(kubectl: Kubectl, operator: Operator) -> None:
    operator.aks.arm.faults.fail_create("QuotaExceeded")
    await kubectl("apply", "-f", str(PHI3))
    ws = await wait_workspace(kubectl, NAME, "ResourceReady", "False", reason="QuotaExceeded")
    assert "quota" in condition(ws, "ResourceReady")["message"].lower()
    assert ws["status"]["state"] == "Pending"
    operator.aks.arm.faults.clear()
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True", within=60)
    assert len(operator.aks.arm.pools) == 1


async def test_sku_not_available_and_throttling(kubectl: Kubectl, operator: Operator) -> None:
    operator.aks.arm.faults.fail_create("SkuNotAvailable")
    await kubectl("apply", "-f", str(PHI3))
    ws = await wait_workspace(kubectl, NAME, "ResourceReady", "False", reason="SkuNotAvailable")
    assert "Standard_NC6s_v3" in condition(ws, "ResourceReady")["message"]
    operator.aks.arm.faults.clear()
    operator.aks.arm.faults.throttle(3, retry_after=1)
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True", within=60)
    assert len(operator.aks.arm.pools) == 1


async def test_pod_failures_are_reported_on_the_workspace(sim: SimServer, kubectl: Kubectl, operator: Operator) -> None:
    sim.pod_faults.add({"kaito.sh/workspace": NAME}, "OOMKilled")
    await kubectl("apply", "-f", str(PHI3))
    await wait_workspace(kubectl, NAME, "InferenceReady", "False", reason="ContainerOOMKilled")
    sim.pod_faults.clear()
    sim.pod_faults.add({"kaito.sh/workspace": NAME}, "ImagePullBackOff")
    await kubectl("delete", "pods", "-l", f"kaito.sh/workspace={NAME}")
    await wait_workspace(kubectl, NAME, "InferenceReady", "False", reason="ImagePullError")
    sim.pod_faults.clear()
    await kubectl("delete", "pods", "-l", f"kaito.sh/workspace={NAME}")
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True")


async def test_the_first_adapter_turns_lora_on_and_rolls_the_workload_without_new_nodes(
    kubectl: Kubectl, operator: Operator
) -> None:
    await kubectl("apply", "-f", str(PHI3))
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True")
    before = (await kubectl("get", "deployment", NAME, "-o", "json")).json()
    patch = (
        '{"inference": {"adapters": [{"source": {"name": "demo", "image": "registry.example.com/adapters/demo:1"}}]}}'
    )
    await kubectl("patch", "workspace", NAME, "--type=merge", "-p", patch)
    for _ in range(100):
        after = (await kubectl("get", "deployment", NAME, "-o", "json")).json()
        if "kaito.sh/lora-rank" in (after["spec"]["template"]["metadata"].get("annotations") or {}):
            break
        await asyncio.sleep(0.2)
    assert after["spec"]["template"]["metadata"]["annotations"]["kaito.sh/lora-rank"] == "16"
    assert not after["spec"]["template"]["spec"].get("initContainers")  # the server pulls adapters at runtime
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert operator.aks.arm.requests.creates == 1, "an adapter must not provision hardware"
    claims = (await kubectl("get", "nodeclaims", "-o", "json", namespaced=False)).json()["items"]
    assert len(claims) == 1
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True")


async def test_restarting_the_manager_never_creates_a_second_pool(kubectl: Kubectl, operator: Operator) -> None:
    operator.aks.arm.provisioning_delay = 1.0
    await kubectl("apply", "-f", str(PHI3))
    for delay in (0.3, 0.6, 0.9, 1.4):
        await asyncio.sleep(delay)
        await operator.halt()
        await operator.start()
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True", within=60)
    assert len(operator.aks.arm.pools) == 1 and operator.aks.arm.requests.creates == 1


async def test_bring_your_own_nodes(sim: SimServer, kubectl: Kubectl, operator: Operator) -> None:
    await operator.halt()
    await operator.start(byo=True)
    await sim.add_node(
        NodeSpec(
            name="my-gpu-node",
            labels={"apps": "phi-3", "node.kubernetes.io/instance-type": "Standard_NC6s_v3"},
            capacity={"cpu": "6", "memory": "112Gi", "pods": "110", "nvidia.com/gpu": "1"},
            taints=({"key": "sku", "value": "gpu", "effect": "NoSchedule"},),
        )
    )
    await kubectl("apply", "-f", str(PHI3))
    ws = await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True")
    assert ws["status"]["workerNodes"] == ["my-gpu-node"]
    pods = (await kubectl("get", "pods", "-l", f"kaito.sh/workspace={NAME}", "-o", "json")).json()["items"]
    assert [p["spec"]["nodeName"] for p in pods] == ["my-gpu-node"]
    assert (await kubectl("get", "nodeclaims", "-o", "name", namespaced=False)).stdout.strip() == ""
    assert not operator.aks.arm.pools


async def test_bring_your_own_amd_node_is_ready_for_an_amd_instance_type(
    sim: SimServer, kubectl: Kubectl, operator: Operator
) -> None:
    await operator.halt()
    await operator.start(byo=True)
    await sim.add_node(
        NodeSpec(
            name="my-amd-node",
            labels={"apps": "phi-3", "node.kubernetes.io/instance-type": "Standard_ND96isr_MI300X_v5"},
            capacity={"cpu": "96", "memory": "1850Gi", "pods": "110", "amd.com/gpu": "8"},
            taints=({"key": "sku", "value": "gpu", "effect": "NoSchedule"},),
        )
    )
    ws = yaml.safe_load(PHI3.read_text())
    ws["resource"]["instanceType"] = "Standard_ND96isr_MI300X_v5"
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(ws))
    ready = await wait_workspace(kubectl, NAME, "ResourceReady", "True")
    assert condition(ready, "NodesReady")["status"] == "True"
    assert ready["status"]["workerNodes"] == ["my-amd-node"]


async def test_other_examples_apply(kubectl: Kubectl, operator: Operator) -> None:
    await kubectl("apply", "-f", str(ROOT / "examples/inference/kaito_workspace_phi_3_with_adapters.yaml"))
    ws = await wait_workspace(kubectl, "workspace-phi-3-mini-adapter", "WorkspaceSucceeded", "True")
    assert "--enable-lora" in ws["status"]["plan"]["engineArgs"]
    tuning = yaml.safe_load((ROOT / "examples/tuning/kaito_workspace_tuning_phi_3.yaml").read_text())
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(tuning))
    await wait_workspace(kubectl, "workspace-phi-3-mini", "ResourceReady", "True")
    for _ in range(100):
        if (await kubectl("get", "job", "workspace-phi-3-mini", check=False)).rc == 0:
            break
        await asyncio.sleep(0.2)
    job = (await kubectl("get", "job", "workspace-phi-3-mini", "-o", "json")).json()
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["kaito", "tune"]
