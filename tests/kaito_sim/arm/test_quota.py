"""The ARM simulator's quotas and capacity: the Compute usages API through the real SDK, and creates they refuse."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.containerservice.aio import ContainerServiceClient

from kaito.provisioner.credentials import StaticTokenCredential
from kaito_sim.arm import ArmSimulator, CloudLimits
from kaito_sim.arm.quota import DEFAULT_FAMILY_VCPUS, localized
from tests.kaito_sim.recording_hook import RecordingHook

SUB = "00000000-0000-0000-0000-0000000000cc"
RG = "kaito-rg"
CLUSTER = "kaito-aks"
TOKEN = "quota-test-token"
A100 = "Standard_NC24ads_A100_v4"
A100_FAMILY = "standardNCADSA100v4Family"


@pytest.fixture
def hook() -> RecordingHook:
    return RecordingHook()


@pytest.fixture
async def sim(hook: RecordingHook) -> AsyncIterator[ArmSimulator]:
    limits = CloudLimits(quotas={A100_FAMILY: 48})
    async with ArmSimulator(
        subscription_id=SUB, resource_group=RG, cluster=CLUSTER, token=TOKEN, node_hook=hook, limits=limits
    ) as s:
        yield s


@pytest.fixture
async def compute(sim: ArmSimulator) -> AsyncIterator[ComputeManagementClient]:
    client = ComputeManagementClient(
        StaticTokenCredential(TOKEN), SUB, base_url=sim.url, connection_verify=str(sim.ca_path), retry_total=0
    )
    async with client:
        yield client


@pytest.fixture
async def aks(sim: ArmSimulator) -> AsyncIterator[ContainerServiceClient]:
    client = ContainerServiceClient(
        StaticTokenCredential(TOKEN), SUB, base_url=sim.url, connection_verify=str(sim.ca_path), retry_total=0
    )
    async with client:
        yield client


async def usages(compute: ComputeManagementClient, location: str = "eastus") -> dict[str, tuple[int, int, str]]:
    """name.value -> (currentValue, limit, localizedValue), as the SDK parses them."""
    return {
        u.name.value: (u.current_value, u.limit, u.name.localized_value)
        async for u in compute.usage.list(location)
        if u.name is not None and u.name.value is not None and u.name.localized_value is not None
    }


async def create(aks: ContainerServiceClient, name: str, vm_size: str = A100, count: int = 1) -> None:
    body = {"properties": {"vmSize": vm_size, "count": count, "mode": "User", "osType": "Linux"}}
    await aks.agent_pools.begin_create_or_update(
        RG, CLUSTER, name, io.BytesIO(json.dumps(body).encode()), polling=False
    )


async def settle(sim: ArmSimulator) -> None:
    """Wait (5 s at most) until every operation started so far has ended."""
    for _ in range(500):
        if all(operation.done for operation in sim.operations.values()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("an operation never ended")


async def test_usages_report_each_family_and_the_regional_total(
    sim: ArmSimulator, compute: ComputeManagementClient, aks: ContainerServiceClient
) -> None:
    before = await usages(compute)
    assert before[A100_FAMILY] == (0, 48, "Standard NCADSA100v4 Family vCPUs")
    assert before["standardNCadsH100v5Family"] == (0, DEFAULT_FAMILY_VCPUS, "Standard NCadsH100v5 Family vCPUs")
    assert before["cores"][0:2] == (0, 100_000) and before["cores"][2] == "Total Regional vCPUs"

    await create(aks, "a1")
    await create(aks, "h1", "Standard_NC80adis_H100_v5")
    after = await usages(compute)
    assert after[A100_FAMILY][0] == 24, "a pool holds its family's vCPUs from the accepted create on"
    assert after["standardNCadsH100v5Family"][0] == 80
    assert after["cores"][0] == 104
    assert (await usages(compute, "westeurope"))[A100_FAMILY][0] == 0, "another region holds none of the pools"

    await aks.agent_pools.begin_delete(RG, CLUSTER, "a1", polling=False)
    await settle(sim)
    assert (await usages(compute))[A100_FAMILY][0] == 0, "a deleted pool gives its vCPUs back"


async def test_a_create_beyond_the_family_quota_is_refused_in_azures_words(
    sim: ArmSimulator, aks: ContainerServiceClient, hook: RecordingHook
) -> None:
    await create(aks, "a1")
    await create(aks, "a2")
    with pytest.raises(HttpResponseError) as refused:
        await create(aks, "a3")
    assert refused.value.status_code == 400
    assert refused.value.error is not None and refused.value.error.code == "QuotaExceeded"
    message = refused.value.error.message or ""
    assert message.startswith(
        f"Operation could not be completed as it results in exceeding approved {A100_FAMILY} Cores quota. "
    )
    assert "Location: eastus, Current Limit: 48, Current Usage: 48, Additional Required: 24" in message
    assert "(Minimum) New Limit Required: 72." in message
    assert set(sim.pools) == {"a1", "a2"}, "a refused create leaves no pool"

    sim.limits.set_quota(A100_FAMILY, 72)  # the quota was raised
    await create(aks, "a3")
    assert "a3" in sim.pools


async def test_the_regional_total_refuses_too(sim: ArmSimulator, aks: ContainerServiceClient) -> None:
    sim.limits.set_quota("cores", 30)
    with pytest.raises(HttpResponseError) as refused:
        await create(aks, "h1", "Standard_NC40ads_H100_v5")
    assert refused.value.error is not None and refused.value.error.code == "QuotaExceeded"
    assert "exceeding approved Total Regional Cores quota" in (refused.value.error.message or "")


async def test_scaling_a_pool_up_counts_only_the_new_vms(sim: ArmSimulator, aks: ContainerServiceClient) -> None:
    await create(aks, "a1")
    await settle(sim)
    await create(aks, "a1", count=2)  # 24 more of 48
    await settle(sim)
    with pytest.raises(HttpResponseError, match="Current Usage: 48, Additional Required: 24"):
        await create(aks, "a1", count=3)


async def test_capacity_fails_the_create_with_allocation_failed(
    sim: ArmSimulator, aks: ContainerServiceClient, hook: RecordingHook
) -> None:
    sim.limits.set_capacity(A100, 1)
    await create(aks, "a1")
    await create(aks, "a2")  # ARM accepts it: allocation fails in the operation, as on Azure
    await settle(sim)
    assert sim.pools["a1"].provisioning_state == "Succeeded"
    failed = await aks.agent_pools.get(RG, CLUSTER, "a2")
    assert failed.provisioning_state == "Failed"
    error = failed.status.provisioning_error if failed.status else None
    assert error is not None and error.code == "AllocationFailed"
    assert (error.message or "").startswith("Allocation failed. We do not have sufficient capacity for the requested")
    assert len(hook.added) == 1, "no VM booted for the pool that found no capacity"

    await aks.agent_pools.begin_delete(RG, CLUSTER, "a2", polling=False)
    await aks.agent_pools.begin_delete(RG, CLUSTER, "a1", polling=False)
    await settle(sim)
    await create(aks, "a3")  # a1's VM is free again
    await settle(sim)
    assert sim.pools["a3"].provisioning_state == "Succeeded"


async def test_the_managed_cluster_reports_its_location(aks: ContainerServiceClient) -> None:
    cluster = await aks.managed_clusters.get(RG, CLUSTER)
    assert (cluster.name, cluster.location) == (CLUSTER, "eastus")


def test_limits_refuse_negative_values() -> None:
    with pytest.raises(ValueError, match="standardNCSv3Family"):
        CloudLimits(quotas={"standardNCSv3Family": -1})
    with pytest.raises(ValueError, match=A100):
        CloudLimits(capacity={A100: -2})


def test_localized_names_follow_the_usages_api() -> None:
    assert localized("standardNDAMSv4_A100Family") == "Standard NDAMSv4_A100 Family vCPUs"
    assert localized("cores") == "Total Regional vCPUs"
