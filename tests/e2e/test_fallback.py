"""Fallback across instance types on the simulated AKS cluster, driven with kubectl: a refused type gives way."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.presets.catalog import Catalog
from kaito.presets.choice import fitting
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, wait_workspace, workspace_json
from tests.e2e.test_humans import kaito

ROOT = Path(__file__).resolve().parents[2]
PHI3: dict[str, Any] = yaml.safe_load((ROOT / "examples/inference/kaito_workspace_phi_3.yaml").read_text())
NAME = PHI3["metadata"]["name"]
A100, H100 = "Standard_NC24ads_A100_v4", "Standard_NC40ads_H100_v5"
A100_FAMILY = (
    "standardNCADSA100v4Family"  # the A100's quota family, as the usages API and `kaito sim --azure-quota` name it
)
AZURE_QUOTA_WORDS = f"Operation could not be completed as it results in exceeding approved {A100_FAMILY} Cores quota"


def manifest(**resource: Any) -> str:
    doc = copy.deepcopy(PHI3)
    doc["resource"].pop("instanceType", None)
    doc["resource"].update(resource)
    return yaml.safe_dump(doc)


async def claims(kubectl: Kubectl) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await kubectl("get", "nodeclaims", "-o", "json", namespaced=False)).json()["items"]
    return items


async def gpu_node_types(kubectl: Kubectl) -> list[str]:
    nodes = (await kubectl("get", "nodes", "-o", "json", namespaced=False)).json()["items"]
    gpu = [n for n in nodes if "nvidia.com/gpu" in (n["status"].get("capacity") or {})]
    return [n["metadata"]["labels"].get("node.kubernetes.io/instance-type", "") for n in gpu]


async def wait_attempts(kubectl: Kubectl, count: int, *, within: float = 30) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        attempts: list[dict[str, Any]] = ((await workspace_json(kubectl, NAME)).get("status") or {}).get(
            "instanceAttempts"
        ) or []
        if len(attempts) >= count:
            return attempts
        await asyncio.sleep(0.1)
    raise AssertionError(f"{NAME}: fewer than {count} instance attempts recorded")


async def ready_on(kubectl: Kubectl, sku: str) -> dict[str, Any]:
    """The workspace Ready on `sku`, with every claim and GPU node of that one type."""
    ws = await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True", within=60)
    assert ws["status"]["plan"]["instanceType"] == sku
    table = (await kubectl("get", "workspace", NAME)).stdout.splitlines()
    assert table[0].split()[1] == "INSTANCE" and table[1].split()[1] == sku
    for _ in range(50):  # the refused type's claim may still be finishing its deletion
        if {c["metadata"]["labels"]["node.kubernetes.io/instance-type"] for c in await claims(kubectl)} == {sku}:
            break
        await asyncio.sleep(0.2)
    assert {c["metadata"]["labels"]["node.kubernetes.io/instance-type"] for c in await claims(kubectl)} == {sku}
    assert set(await gpu_node_types(kubectl)) == {sku}
    return ws


@pytest.fixture
async def cleanup(kubectl: Kubectl, operator: Operator) -> AsyncIterator[Operator]:
    """After the test: the workspace deleted, and no NodeClaim, agent pool or GPU node left that no workspace owns."""
    yield operator
    await kubectl("delete", "workspace", NAME, "--ignore-not-found", "--timeout=60s")
    for _ in range(150):
        if not await claims(kubectl) and not operator.aks.arm.pools and not await gpu_node_types(kubectl):
            break
        await asyncio.sleep(0.2)
    assert not await claims(kubectl), "NodeClaims left behind"
    assert not operator.aks.arm.pools, "agent pools left behind"
    assert not await gpu_node_types(kubectl), "GPU nodes left behind"


async def test_a_quota_refusal_falls_back_to_the_next_listed_type(
    kubectl: Kubectl, cleanup: Operator, sim: SimServer
) -> None:
    cleanup.aks.arm.faults.fail_create("QuotaExceeded", times=1)  # the A100's launch: Azure's quota wording
    await kubectl("apply", "-f", "-", stdin=manifest(instanceTypes=[A100, H100]))
    ws = await ready_on(kubectl, H100)
    [attempt] = ws["status"]["instanceAttempts"]
    assert attempt["instanceType"] == A100 and attempt["reason"] == "QuotaExceeded"
    assert "quota" in attempt["message"].lower() and attempt["time"]
    events = (await kubectl("get", "events", "--field-selector", f"involvedObject.name={NAME}", "-o", "json")).json()
    assert any(e["reason"] == "InstanceTypeRefused" and H100 in e["message"] for e in events["items"])
    rc, out, _ = await kaito(sim, "status", NAME, "-n", kubectl.namespace)
    assert rc == 0 and "instance types refused:" in out and f"{A100:28} QuotaExceeded: " in out


async def test_auto_falls_back_along_the_ranking(kubectl: Kubectl, cleanup: Operator) -> None:
    model = Catalog.builtin().model(PHI3["inference"]["preset"]["name"])
    ranked = [c.sku.name for c in fitting(model, Catalog.builtin(), "azure")]
    cleanup.aks.arm.faults.fail_create("SkuNotAvailable", times=1)
    await kubectl("apply", "-f", "-", stdin=manifest(instanceType="auto"))
    ws = await ready_on(kubectl, ranked[1])
    assert [(a["instanceType"], a["reason"]) for a in ws["status"]["instanceAttempts"]] == [
        (ranked[0], "SkuNotAvailable")
    ]


async def test_capacity_failures_fall_back_after_the_retries(kubectl: Kubectl, cleanup: Operator) -> None:
    await cleanup.halt()
    await cleanup.start(capacity_retries=4)  # 4.5 retry intervals of 0.5 s: at least three launches of the A100
    arm = cleanup.aks.arm
    arm.faults.fail_create("AllocationFailed")
    await kubectl("apply", "-f", "-", stdin=manifest(instanceTypes=[A100, H100]))
    [attempt] = await wait_attempts(kubectl, 1)
    launched = arm.requests.count("PUT")  # each an A100 agent pool the cloud refused
    arm.faults.clear()
    assert attempt["instanceType"] == A100 and attempt["reason"] == "InsufficientCapacity"
    assert launched >= 3, f"moved on after {launched} launch(es)"
    await ready_on(kubectl, H100)


async def test_every_type_refused_is_said_with_the_attempts(kubectl: Kubectl, cleanup: Operator) -> None:
    cleanup.aks.arm.faults.fail_create("QuotaExceeded")
    await kubectl("apply", "-f", "-", stdin=manifest(instanceTypes=[A100, H100]))
    ws = await wait_workspace(kubectl, NAME, "ResourceReady", "False", reason="InstanceTypesExhausted")
    message = next(c for c in ws["status"]["conditions"] if c["type"] == "ResourceReady")["message"]
    assert f"{A100} (QuotaExceeded)" in message and f"{H100} (QuotaExceeded)" in message
    cleanup.aks.arm.faults.clear()
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True", within=60)


async def test_an_a100_quota_of_zero_ends_ready_on_the_h100(
    kubectl: Kubectl, cleanup: Operator, sim: SimServer
) -> None:
    arm = cleanup.aks.arm
    arm.limits.set_quota(A100_FAMILY, 0)  # what `kaito sim --azure-quota standardNCADSA100v4Family=0` sets
    await kubectl("apply", "-f", "-", stdin=manifest(instanceTypes=[A100, H100]))
    ws = await ready_on(kubectl, H100)
    [attempt] = ws["status"]["instanceAttempts"]
    assert attempt["instanceType"] == A100 and attempt["reason"] == "QuotaExceeded"
    assert attempt["message"].startswith(AZURE_QUOTA_WORDS) and "Current Limit: 0" in attempt["message"]
    assert arm.requests.creates == 1, "the quota was read first: no A100 agent pool was ever asked for"
    rc, out, _ = await kaito(sim, "status", NAME, "-n", kubectl.namespace)
    assert rc == 0 and f"{A100:28} QuotaExceeded: {AZURE_QUOTA_WORDS}" in out


async def test_auto_falls_back_past_a_family_without_quota(kubectl: Kubectl, cleanup: Operator) -> None:
    catalog = Catalog.builtin()
    model = catalog.model("phi-4")
    ranked = [c.sku for c in fitting(model, catalog, "azure")]
    assert ranked[0].quota_family == A100_FAMILY, "phi-4's ranking starts on the A100 family"
    refused = [sku.name for sku in itertools.takewhile(lambda sku: sku.quota_family == A100_FAMILY, ranked)]
    cleanup.aks.arm.limits.set_quota(A100_FAMILY, 0)
    doc = yaml.safe_load(manifest(instanceType="auto"))
    doc["inference"]["preset"]["name"] = "phi-4"
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    ws = await ready_on(kubectl, ranked[len(refused)].name)
    attempts = ws["status"]["instanceAttempts"]
    assert [(a["instanceType"], a["reason"]) for a in attempts] == [(name, "QuotaExceeded") for name in refused]
    assert all(a["message"].startswith(AZURE_QUOTA_WORDS) for a in attempts)
    assert cleanup.aks.arm.requests.creates == 1


async def test_no_a100_capacity_falls_back_after_the_retries(kubectl: Kubectl, cleanup: Operator) -> None:
    await cleanup.halt()
    await cleanup.start(capacity_retries=4)  # 4.5 retry intervals of 0.5 s: at least three launches of the A100
    arm = cleanup.aks.arm
    arm.limits.set_capacity(A100, 0)  # what `kaito sim --azure-capacity Standard_NC24ads_A100_v4=0` sets
    await kubectl("apply", "-f", "-", stdin=manifest(instanceTypes=[A100, H100]))
    [attempt] = await wait_attempts(kubectl, 1)
    assert attempt["instanceType"] == A100 and attempt["reason"] == "InsufficientCapacity"
    assert arm.requests.creates >= 3, f"moved on after {arm.requests.creates} launch(es)"
    await ready_on(kubectl, H100)
    [attempt] = (await workspace_json(kubectl, NAME))["status"]["instanceAttempts"]  # no second refusal recorded


async def test_both_instance_type_fields_are_refused_at_apply(kubectl: Kubectl, operator: Operator) -> None:
    result = await kubectl("apply", "-f", "-", stdin=manifest(instanceType=A100, instanceTypes=[H100]), check=False)
    assert result.rc != 0
    assert "resource.instanceTypes" in result.stderr and "resource.instanceType " in result.stderr
