"""AzureProvider through the real azure-mgmt-containerservice SDK against the ARM simulator."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import random
import re
import string
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerservice.aio import ContainerServiceClient

from kaito.provisioner.azure import MANAGED_BY_TAG, NODECLAIM_TAG, AzureProvider, pool_name
from kaito.provisioner.azure_errors import InvalidRequest, classify
from kaito.provisioner.cloud import (
    CloudError,
    CloudProvider,
    Instance,
    InstanceRequest,
    InstanceState,
    InsufficientCapacity,
    NotFound,
    QuotaExceeded,
    SkuNotAvailable,
    Throttled,
    TransientError,
)
from kaito.provisioner.credentials import StaticTokenCredential, default_credential
from kaito_sim.arm import ArmSimulator
from kaito_sim.arm.errors import quota_message, sku_not_available_message
from tests.kaito_sim.recording_hook import RecordingHook

SUB = "00000000-0000-0000-0000-0000000000bb"
RG = "kaito-rg"
CLUSTER = "kaito-aks"
TOKEN = "provider-test-token"
VALID_POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")


class InstantClock:
    """Records the provider's retry sleeps without waiting, so backoff is checked exactly and fast."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def hook() -> RecordingHook:
    return RecordingHook()


@pytest.fixture
def clock() -> InstantClock:
    return InstantClock()


@pytest.fixture
async def sim(hook: RecordingHook) -> AsyncIterator[ArmSimulator]:
    async with ArmSimulator(subscription_id=SUB, resource_group=RG, cluster=CLUSTER, token=TOKEN, node_hook=hook) as s:
        yield s


def make_provider(sim: ArmSimulator, clock: InstantClock, *, max_retries: int = 3) -> AzureProvider:
    return AzureProvider(
        credential=StaticTokenCredential(TOKEN),
        subscription_id=SUB,
        resource_group=RG,
        cluster=CLUSTER,
        base_url=sim.url,
        connection_verify=str(sim.ca_path),
        clock=clock,
        max_retries=max_retries,
    )


@pytest.fixture
async def provider(sim: ArmSimulator, clock: InstantClock) -> AsyncIterator[AzureProvider]:
    async with make_provider(sim, clock) as p:
        yield p


def request(claim: str = "ws-llama-0a1b2c", vm_size: str = "Standard_NC12s_v3") -> InstanceRequest:
    return InstanceRequest(
        nodeclaim=claim,
        instance_type=vm_size,
        labels={"kaito.sh/workspace": "llama"},
        taints=("sku=gpu:NoSchedule",),
        os_disk_gb=300,
    )


async def wait_for_state(provider: AzureProvider, claim: str, state: InstanceState) -> Instance:
    """Poll `get` the way the NodeClaim controller does, until the pool reaches `state` (5 s at most)."""
    for _ in range(250):
        instance = await provider.get(claim)
        if instance.state is state:
            return instance
        await asyncio.sleep(0.02)
    raise AssertionError(f"{claim} never reached {state}; last {instance}")


async def wait_until_gone(sim: ArmSimulator) -> None:
    for _ in range(250):
        if not sim.pools:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"pools still there: {list(sim.pools)}")


async def test_create_returns_creating_and_get_reports_success(
    sim: ArmSimulator, provider: AzureProvider, hook: RecordingHook
) -> None:
    sim.provisioning_delay = 0.2
    as_protocol: CloudProvider = provider
    created = await as_protocol.create(request())
    assert created.state is InstanceState.CREATING
    assert created.name == pool_name("ws-llama-0a1b2c")
    assert (created.nodeclaim, created.instance_type) == ("ws-llama-0a1b2c", "Standard_NC12s_v3")
    assert hook.added == []  # create did not wait for the operation

    done = await wait_for_state(provider, "ws-llama-0a1b2c", InstanceState.SUCCEEDED)
    assert done.error is None
    [node] = hook.added
    assert node.labels["kaito.sh/nodeclaim"] == "ws-llama-0a1b2c"
    assert node.labels["kaito.sh/workspace"] == "llama"
    assert node.labels["kubernetes.azure.com/agentpool"] == created.name
    assert node.capacity["nvidia.com/gpu"] == "2"
    assert node.capacity["ephemeral-storage"] == f"{300 * 1024 * 1024}Ki"
    assert node.taints == ({"key": "sku", "value": "gpu", "effect": "NoSchedule"},)
    pool = sim.pools[created.name]
    assert pool.spec.tags == {NODECLAIM_TAG: "ws-llama-0a1b2c", MANAGED_BY_TAG: "kaito"}
    assert (pool.spec.count, pool.spec.mode, pool.spec.os_type) == (1, "User", "Linux")


async def test_create_twice_or_after_restart_makes_one_pool(
    sim: ArmSimulator, provider: AzureProvider, clock: InstantClock
) -> None:
    sim.provisioning_delay = 0.2
    first = await provider.create(request())
    again = await provider.create(request())
    async with make_provider(sim, clock) as restarted:
        after_restart = await restarted.create(request())
    assert first.name == again.name == after_restart.name
    assert again.state is InstanceState.CREATING
    assert sim.requests.count("PUT") == 1 and sim.requests.creates == 1
    assert list(sim.pools) == [first.name]


async def test_delete_then_the_pool_is_gone(sim: ArmSimulator, provider: AzureProvider, hook: RecordingHook) -> None:
    await provider.create(request())
    await wait_for_state(provider, "ws-llama-0a1b2c", InstanceState.SUCCEEDED)
    sim.provisioning_delay = 0.1
    await provider.delete("ws-llama-0a1b2c")
    assert (await provider.get("ws-llama-0a1b2c")).state is InstanceState.DELETING
    await wait_until_gone(sim)
    with pytest.raises(NotFound):
        await provider.get("ws-llama-0a1b2c")
    assert hook.removed == [hook.added[0].name]
    with pytest.raises(NotFound):
        await provider.delete("ws-llama-0a1b2c")


async def test_unknown_claims_are_not_found(provider: AzureProvider) -> None:
    with pytest.raises(NotFound) as got:
        await provider.get("never-created")
    assert got.value.code == "NotFound"
    with pytest.raises(NotFound):
        await provider.delete("never-created")


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        pytest.param(
            "QuotaExceeded", quota_message(vm_size="Standard_NC12s_v3", location="eastus"), QuotaExceeded, id="quota"
        ),
        pytest.param(
            "OperationNotAllowed",
            quota_message(vm_size="Standard_NC12s_v3", location="eastus"),
            QuotaExceeded,
            id="crp-quota-409",
        ),
        pytest.param(
            "SkuNotAvailable",
            sku_not_available_message(vm_size="Standard_NC12s_v3", location="eastus"),
            SkuNotAvailable,
            id="sku",
        ),
        pytest.param("AllocationFailed", "Allocation failed.", InsufficientCapacity, id="allocation"),
        pytest.param(
            "OverconstrainedAllocationRequest", "Too restrictive.", InsufficientCapacity, id="overconstrained"
        ),
    ],
)
async def test_synchronous_arm_errors_raise_typed_errors(
    sim: ArmSimulator, provider: AzureProvider, code: str, message: str, expected: type[CloudError]
) -> None:
    sim.faults.fail_create(code, message)
    with pytest.raises(expected) as got:
        await provider.create(request())
    assert got.value.message == message
    assert got.value.code == code
    assert sim.pools == {}
    assert sim.requests.count("PUT") == 1


async def test_unsupported_vm_size_is_sku_not_available(provider: AzureProvider) -> None:
    with pytest.raises(SkuNotAvailable) as got:
        await provider.create(request(vm_size="Standard_Bogus_v9"))
    assert got.value.code == "VMSizeNotSupported"
    assert "Standard_Bogus_v9" in got.value.message


async def test_asynchronous_capacity_failure_shows_on_get(sim: ArmSimulator, provider: AzureProvider) -> None:
    sim.faults.fail_create("ZonalAllocationFailed", "We do not have sufficient capacity", sync=False)
    assert (await provider.create(request())).state is InstanceState.CREATING
    failed = await wait_for_state(provider, "ws-llama-0a1b2c", InstanceState.FAILED)
    assert isinstance(failed.error, InsufficientCapacity)
    assert failed.error.code == "ZonalAllocationFailed"
    assert failed.message == "We do not have sufficient capacity"


async def test_failed_pool_is_returned_until_deleted_then_recreated(
    sim: ArmSimulator, provider: AzureProvider, hook: RecordingHook
) -> None:
    sim.faults.fail_create("AllocationFailed", "no capacity", sync=False, times=1)
    await provider.create(request())
    await wait_for_state(provider, "ws-llama-0a1b2c", InstanceState.FAILED)
    assert (await provider.create(request())).state is InstanceState.FAILED
    assert sim.requests.creates == 1

    await provider.delete("ws-llama-0a1b2c")
    await wait_until_gone(sim)
    assert (await provider.create(request())).state is InstanceState.CREATING
    await wait_for_state(provider, "ws-llama-0a1b2c", InstanceState.SUCCEEDED)
    assert sim.requests.creates == 2 and len(hook.added) == 1


async def test_server_error_on_put_surfaces_without_a_blind_retry(sim: ArmSimulator, provider: AzureProvider) -> None:
    sim.faults.fail_create("InternalServerError", "try later", times=1)
    with pytest.raises(TransientError) as got:
        await provider.create(request())
    assert got.value.message == "try later"
    assert sim.requests.count("PUT") == 1


async def test_throttling_is_retried_after_retry_after(
    sim: ArmSimulator, provider: AzureProvider, clock: InstantClock
) -> None:
    sim.faults.throttle(2, retry_after=1)
    created = await provider.create(request())
    assert created.state is InstanceState.CREATING
    assert clock.sleeps == [1.0, 1.0]
    assert sim.requests.count(status=429) == 2
    assert sim.requests.creates == 1


async def test_throttling_beyond_the_retries_raises_throttled(
    sim: ArmSimulator, provider: AzureProvider, clock: InstantClock
) -> None:
    sim.faults.throttle(100, retry_after=2)
    with pytest.raises(Throttled) as got:
        await provider.get("ws-llama-0a1b2c")
    assert got.value.retry_after == 2.0
    assert got.value.code == "SubscriptionRequestsThrottled"
    assert clock.sleeps == [2.0, 2.0, 2.0]
    assert sim.requests.count() == 4


async def test_long_retry_after_is_left_to_the_caller(
    sim: ArmSimulator, provider: AzureProvider, clock: InstantClock
) -> None:
    sim.faults.throttle(1, retry_after=600)
    with pytest.raises(Throttled) as got:
        await provider.list()
    assert got.value.retry_after == 600.0
    assert clock.sleeps == []


async def test_unreachable_endpoint_is_transient_after_backoff(clock: InstantClock) -> None:
    provider = AzureProvider(
        credential=StaticTokenCredential(TOKEN),
        subscription_id=SUB,
        resource_group=RG,
        cluster=CLUSTER,
        base_url="https://127.0.0.1:9",
        clock=clock,
        max_retries=2,
    )
    async with provider:
        with pytest.raises(TransientError):
            await provider.get("ws-llama-0a1b2c")
    assert clock.sleeps == [0.5, 1.0]


async def test_list_returns_only_kaito_managed_pools(sim: ArmSimulator, provider: AzureProvider) -> None:
    await provider.create(request("claim-a"))
    await provider.create(request("claim-b", "Standard_NC6s_v3"))
    async with sdk_client(sim) as client:
        foreign = {"properties": {"vmSize": "Standard_D4s_v3", "count": 1, "mode": "System", "tags": {"team": "x"}}}
        await client.agent_pools.begin_create_or_update(RG, CLUSTER, "system", body(foreign), polling=False)
    assert len(sim.pools) == 3
    listed = sorted(await provider.list(), key=lambda i: i.nodeclaim)
    assert [(i.nodeclaim, i.name, i.instance_type) for i in listed] == [
        ("claim-a", pool_name("claim-a"), "Standard_NC12s_v3"),
        ("claim-b", pool_name("claim-b"), "Standard_NC6s_v3"),
    ]


async def test_a_pool_of_another_claim_is_not_adopted(sim: ArmSimulator, provider: AzureProvider) -> None:
    squatter = {"properties": {"vmSize": "Standard_NC6s_v3", "count": 1, "tags": {NODECLAIM_TAG: "other"}}}
    async with sdk_client(sim) as client:
        await client.agent_pools.begin_create_or_update(RG, CLUSTER, pool_name("mine"), body(squatter), polling=False)
    with pytest.raises(InvalidRequest):
        await provider.create(request("mine"))
    assert sim.requests.creates == 1


async def test_the_sdk_long_running_operations_complete_against_the_simulator(sim: ArmSimulator) -> None:
    sim.provisioning_delay = 0.1
    pool = {"properties": {"vmSize": "Standard_NC6s_v3", "count": 1, "mode": "User"}}
    async with sdk_client(sim) as client:
        poller = await client.agent_pools.begin_create_or_update(RG, CLUSTER, "lro", body(pool), polling_interval=0.02)
        result = await poller.result()
        assert result.provisioning_state == "Succeeded"
        assert result.vm_size == "Standard_NC6s_v3"
        await (await client.agent_pools.begin_delete(RG, CLUSTER, "lro", polling_interval=0.02)).result()
        assert sim.pools == {}

        sim.faults.fail_create("AllocationFailed", "no capacity", sync=False)
        poller = await client.agent_pools.begin_create_or_update(RG, CLUSTER, "lro", body(pool), polling_interval=0.02)
        with pytest.raises(HttpResponseError) as got:
            await poller.result()
        assert got.value.error is not None and got.value.error.code == "AllocationFailed"


@pytest.mark.parametrize(
    ("code", "message", "status", "expected"),
    [
        pytest.param("InsufficientVCPUQuota", "", 400, QuotaExceeded, id="aks-vcpu-quota"),
        pytest.param("OperationNotAllowed", "another operation is in progress", 409, TransientError, id="busy"),
        pytest.param(
            "BadRequest",
            "Virtual Machine size: 'X' is not supported for subscription s",
            400,
            SkuNotAvailable,
            id="sub",
        ),
        pytest.param("InvalidParameter", "bad", 400, InvalidRequest, id="invalid"),
        pytest.param("ServiceUnavailable", "", 503, TransientError, id="5xx"),
        pytest.param("AuthorizationFailed", "", 403, CloudError, id="forbidden"),
    ],
)
def test_error_table(code: str, message: str, status: int, expected: type[CloudError]) -> None:
    error = classify(code, message, status=status)
    assert type(error) is expected
    assert (error.code, error.message) == (code, message)


def test_pool_names_are_valid_deterministic_and_distinct() -> None:
    rng = random.Random(20260101)
    alphabet = string.ascii_lowercase + string.digits + "-."
    claims = {"".join(rng.choices(alphabet, k=rng.randint(1, 253))) for _ in range(1000)}
    names = {pool_name(claim) for claim in claims}
    assert len(names) == len(claims)
    assert all(VALID_POOL_NAME.match(name) and len(name) <= 12 for name in names)
    assert all(pool_name(claim) == pool_name(claim) for claim in claims)
    assert pool_name("ws-llama-0a1b2c") == pool_name("ws-llama-0a1b2c") != pool_name("ws-llama-0a1b2d")


async def test_static_credential_and_default_credential() -> None:
    credential: AsyncTokenCredential = StaticTokenCredential("abc")
    async with credential:
        token = await credential.get_token("https://management.azure.com/.default")
    assert token.token == "abc" and token.expires_on > time.time() + 365 * 24 * 3600
    real = default_credential()
    assert type(real).__name__ == "DefaultAzureCredential"
    await real.close()


def sdk_client(sim: ArmSimulator) -> ContainerServiceClient:
    return ContainerServiceClient(
        StaticTokenCredential(TOKEN), SUB, base_url=sim.url, connection_verify=str(sim.ca_path), retry_total=0
    )


def body(pool: Mapping[str, Any]) -> io.BytesIO:
    return io.BytesIO(json.dumps(pool).encode())


A100 = "Standard_NC24ads_A100_v4"
A100_FAMILY = "standardNCADSA100v4Family"


class SteppedClock(InstantClock):
    """An instant clock whose `now` moves only when a test steps it, for the usages cache."""

    def __init__(self) -> None:
        super().__init__()
        self.at = 1000.0

    def now(self) -> float:
        return self.at


def usage_reads(sim: ArmSimulator) -> int:
    return sum(1 for r in sim.requests.records if r.path.lower().endswith("/usages"))


async def test_a_size_over_its_family_quota_is_refused_without_creating_a_pool(
    sim: ArmSimulator, provider: AzureProvider
) -> None:
    sim.limits.set_quota(A100_FAMILY, 0)
    with pytest.raises(QuotaExceeded) as refused:
        await provider.create(request("ws-a100-0", A100))
    assert refused.value.code == "QuotaExceeded"
    assert refused.value.message.startswith(
        f"Operation could not be completed as it results in exceeding approved {A100_FAMILY} Cores quota. "
        "Additional details - Deployment Model: Resource Manager, Location: eastus, Current Limit: 0, "
        "Current Usage: 0, Additional Required: 24, (Minimum) New Limit Required: 24."
    )
    assert sim.requests.count("PUT") == 0 and sim.pools == {}
    # What it asked: whether the pool exists, where the cluster is, and the region's usages; nothing else.
    assert [(r.method, r.status) for r in sim.requests.records] == [("GET", 404), ("GET", 200), ("GET", 200)]
    assert usage_reads(sim) == 1

    sim.requests.clear()
    instance = await provider.create(request("ws-h100-0", "Standard_NC40ads_H100_v5"))  # another family fits
    assert instance.state is InstanceState.CREATING
    assert sim.requests.creates == 1 and usage_reads(sim) == 0, "the burst reused the cached usages"


async def test_the_regional_vcpu_total_refuses_too(sim: ArmSimulator, provider: AzureProvider) -> None:
    sim.limits.set_quota("cores", 20)
    with pytest.raises(QuotaExceeded, match="exceeding approved Total Regional Cores quota"):
        await provider.create(request("ws-a100-0", A100))
    assert sim.requests.count("PUT") == 0


async def test_one_usages_read_serves_a_burst_and_counts_its_own_creates(
    sim: ArmSimulator, provider: AzureProvider
) -> None:
    sim.limits.set_quota(A100_FAMILY, 48)
    results = await asyncio.gather(
        *(provider.create(request(f"ws-a100-{i}", A100)) for i in range(3)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 1 and "Current Usage: 48, Additional Required: 24" in refused[0].message
    assert sim.requests.count("PUT") == 2, "the third claim was refused by the check, not by ARM"
    assert usage_reads(sim) == 1
    assert (
        sum(
            1
            for r in sim.requests.records
            if "managedclusters/" in r.path.lower() and "agentpools" not in r.path.lower()
        )
        == 1
    )


async def test_a_failing_usages_read_still_creates_and_is_not_retried_within_the_ttl(sim: ArmSimulator) -> None:
    clock = SteppedClock()
    async with make_provider(sim, clock) as provider:
        sim.faults.fail_usages(times=1)
        sim.limits.set_quota(A100_FAMILY, 24)
        await provider.create(request("ws-a100-0", A100))
        assert sim.requests.creates == 1
        with pytest.raises(QuotaExceeded):  # quota unknown to us: the PUT goes out, and ARM refuses it
            await provider.create(request("ws-a100-1", A100))
        assert sim.requests.count("PUT") == 2 and usage_reads(sim) == 1
        assert clock.sleeps == [], "a failed usages read is not retried"

        clock.at += provider.quota.ttl
        with pytest.raises(QuotaExceeded, match="Current Limit: 24, Current Usage: 24"):
            await provider.create(request("ws-a100-2", A100))
        assert usage_reads(sim) == 2 and sim.requests.count("PUT") == 2, "refused by the check this time"


async def test_an_unknown_size_and_a_forbidden_usages_read_are_unknown(
    sim: ArmSimulator, provider: AzureProvider
) -> None:
    await provider.create(request("ws-cpu-0", "Standard_D4s_v3"))  # not in the catalog: no family known to check
    assert sim.requests.creates == 1 and usage_reads(sim) == 0
    sim.faults.fail_usages(times=1, status=403)  # a role without Microsoft.Compute/locations/usages/read
    await provider.create(request("ws-a100-0", A100))
    assert sim.requests.creates == 2 and usage_reads(sim) == 1


async def test_cached_usages_expire_and_a_delete_drops_them(sim: ArmSimulator) -> None:
    clock = SteppedClock()
    async with make_provider(sim, clock, max_retries=0) as provider:
        sim.limits.set_quota(A100_FAMILY, 24)
        await provider.create(request("ws-a100-0", A100))
        clock.at += provider.quota.ttl - 1
        with pytest.raises(QuotaExceeded):
            await provider.create(request("ws-a100-1", A100))
        assert usage_reads(sim) == 1

        await provider.delete("ws-a100-0")
        await wait_until_gone(sim)
        await provider.create(request("ws-a100-1", A100))
        assert usage_reads(sim) == 2, "the delete dropped the cached usages"


async def test_a_given_location_is_not_read_from_the_cluster(sim: ArmSimulator, clock: InstantClock) -> None:
    provider = AzureProvider(
        credential=StaticTokenCredential(TOKEN),
        subscription_id=SUB,
        resource_group=RG,
        cluster=CLUSTER,
        base_url=sim.url,
        connection_verify=str(sim.ca_path),
        clock=clock,
        location="westeurope",
    )
    async with provider:
        await provider.create(request("ws-a100-0", A100))
    assert next(r.path for r in sim.requests.records if "usages" in r.path).endswith("/locations/westeurope/usages")
    assert not any(r.path.lower().endswith(f"/managedclusters/{CLUSTER}") for r in sim.requests.records)
