"""The ARM simulator over raw HTTPS: agent pool lifecycle, long-running operations, nodes, auth and faults."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from kaito_sim.arm import ArmSimulator
from kaito_sim.arm.errors import quota_message, sku_not_available_message
from kaito_sim.arm.nodes import Cluster
from tests.kaito_sim.recording_hook import RecordingHook

SUB = "00000000-0000-0000-0000-0000000000aa"
RG = "kaito-rg"
CLUSTER = "kaito-aks"
TOKEN = "arm-test-token"
API = "2026-08-01"
NODE_NAME = re.compile(r"^aks-(?P<pool>[a-z][a-z0-9]*)-(?P<id>\d{8})-vmss(?P<index>[0-9a-z]{6})$")


class Arm:
    """A bare HTTPS client for the simulator: what the SDK sends, without the SDK."""

    def __init__(self, sim: ArmSimulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session

    def pool_url(self, name: str = "") -> str:
        base = (
            f"{self.sim.url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/"
            f"managedClusters/{CLUSTER}/agentPools"
        )
        return f"{base}/{name}?api-version={API}" if name else f"{base}?api-version={API}"

    async def call(
        self, method: str, url: str, body: Any = None, *, token: str | None = TOKEN
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.session.request(method, url, json=body, headers=headers) as response:
            text = await response.text()
            payload = await response.json(content_type=None) if text else None
            return response.status, dict(response.headers), payload

    async def put_pool(self, name: str, vm_size: str = "Standard_NC6s_v3", **properties: Any) -> tuple[int, Any, Any]:
        status, headers, body = await self.call(
            "PUT", self.pool_url(name), {"properties": pool_body(vm_size, **properties)}
        )
        return status, headers, body

    async def wait(self, operation_url: str, *, within: float = 5.0) -> dict[str, Any]:
        """Poll the Azure-AsyncOperation URL, as the SDK does, until the operation ends."""
        async with asyncio.timeout(within):
            while True:
                status, _, body = await self.call("GET", operation_url)
                assert status == 200, body
                if body["status"] != "InProgress":
                    return dict(body)
                await asyncio.sleep(0.02)


def pool_body(vm_size: str, **properties: Any) -> dict[str, Any]:
    return {"vmSize": vm_size, "count": 1, "mode": "User", "osType": "Linux", **properties}


@pytest.fixture
def hook() -> RecordingHook:
    return RecordingHook()


@pytest.fixture
async def sim(hook: RecordingHook) -> AsyncIterator[ArmSimulator]:
    async with ArmSimulator(subscription_id=SUB, resource_group=RG, cluster=CLUSTER, token=TOKEN, node_hook=hook) as s:
        yield s


@pytest.fixture
async def arm(sim: ArmSimulator) -> AsyncIterator[Arm]:
    context = ssl.create_default_context(cafile=str(sim.ca_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield Arm(sim, session)


async def test_create_is_a_long_running_operation_that_succeeds(sim: ArmSimulator, arm: Arm) -> None:
    sim.provisioning_delay = 0.3
    status, headers, body = await arm.put_pool("gpu1")
    assert status == 201
    assert body["name"] == "gpu1"
    assert body["properties"]["provisioningState"] == "Creating"
    operation_url = headers["Azure-AsyncOperation"]
    assert operation_url.startswith(f"{sim.url}/subscriptions/{SUB}/providers/Microsoft.ContainerService/locations/")
    assert "/operationresults/" in headers["Location"]

    _, _, first = await arm.call("GET", operation_url)
    assert first["status"] == "InProgress"
    assert (await arm.wait(operation_url))["status"] == "Succeeded"
    _, _, pool = await arm.call("GET", arm.pool_url("gpu1"))
    assert pool["properties"]["provisioningState"] == "Succeeded"
    assert "status" not in pool["properties"]


@pytest.mark.parametrize(
    ("vm_size", "gpus", "cpus"),
    [pytest.param("Standard_NC6s_v3", 1, "6", id="nc6s-v3"), pytest.param("Standard_NC12s_v3", 2, "12", id="nc12s-v3")],
)
async def test_gpu_pool_boots_nodes_like_aks(
    sim: ArmSimulator, arm: Arm, hook: RecordingHook, vm_size: str, gpus: int, cpus: str
) -> None:
    _, headers, _ = await arm.put_pool(
        "gpu1", vm_size, nodeLabels={"team": "ml"}, nodeTaints=["sku=gpu:NoSchedule"], osDiskSizeGB=256
    )
    await arm.wait(headers["Azure-AsyncOperation"])

    [node] = hook.added
    match = NODE_NAME.match(node.name)
    assert match and match["pool"] == "gpu1" and match["index"] == "000000"
    labels = node.labels
    assert labels["kubernetes.azure.com/agentpool"] == labels["agentpool"] == "gpu1"
    assert labels["kubernetes.azure.com/cluster"] == f"MC_{RG}_{CLUSTER}_eastus"
    assert labels["node.kubernetes.io/instance-type"] == labels["beta.kubernetes.io/instance-type"] == vm_size
    assert labels["topology.kubernetes.io/region"] == "eastus"
    assert labels["kubernetes.azure.com/mode"] == "user"
    assert labels["accelerator"] == "nvidia"
    assert "V100" in labels["nvidia.com/gpu.product"]
    assert labels["nvidia.com/gpu.count"] == str(gpus)
    assert 15_000 < int(labels["nvidia.com/gpu.memory"]) <= 16 * 1024
    assert labels["team"] == "ml"
    assert node.capacity["nvidia.com/gpu"] == str(gpus)
    assert node.capacity["cpu"] == cpus
    assert node.capacity["pods"] == "110"
    assert node.capacity["ephemeral-storage"] == f"{256 * 1024 * 1024}Ki"
    assert node.taints == ({"key": "sku", "value": "gpu", "effect": "NoSchedule"},)
    assert node.provider_id == (
        f"azure:///subscriptions/{SUB}/resourceGroups/mc_{RG}_{CLUSTER}_eastus/providers/Microsoft.Compute/"
        f"virtualMachineScaleSets/aks-gpu1-{match['id']}-vmss/virtualMachines/0"
    )
    assert sim.node_names("gpu1") == [node.name]


def test_node_names_use_base36_instance_ids() -> None:
    cluster = Cluster(SUB, RG, CLUSTER, "eastus")
    assert cluster.node_name("pool", 11).endswith("-vmss00000b")
    assert cluster.node_name("pool", 36).endswith("-vmss000010")
    assert cluster.provider_id("pool", 11).endswith("/virtualMachines/11")


async def test_count_boots_one_node_per_vm_and_cpu_sizes_fall_back(
    sim: ArmSimulator, arm: Arm, hook: RecordingHook
) -> None:
    sim.node_ready_after = 2.5
    _, headers, _ = await arm.put_pool("cpu", "Standard_D4s_v3", count=3)
    await arm.wait(headers["Azure-AsyncOperation"])
    assert [n.name[-6:] for n in hook.added] == ["000000", "000001", "000002"]
    assert all(NODE_NAME.match(n.name) for n in hook.added)
    assert all("nvidia.com/gpu" not in n.capacity and "accelerator" not in n.labels for n in hook.added)
    assert hook.added[0].capacity["cpu"] == "4"
    assert {n.ready_after for n in hook.added} == {2.5}


async def test_update_scales_and_conflicts_while_busy(sim: ArmSimulator, arm: Arm, hook: RecordingHook) -> None:
    sim.provisioning_delay = 0.2
    _, headers, _ = await arm.put_pool("gpu1")
    status, _, body = await arm.put_pool("gpu1")
    assert status == 409 and body["error"]["code"] == "OperationNotAllowed"
    await arm.wait(headers["Azure-AsyncOperation"])

    status, headers, body = await arm.put_pool("gpu1", count=2)
    assert status == 200 and body["properties"]["provisioningState"] == "Updating"
    await arm.wait(headers["Azure-AsyncOperation"])
    assert len(hook.added) == 2
    status, _, body = await arm.put_pool("gpu1", "Standard_NC12s_v3")
    assert status == 400 and body["error"]["code"] == "PropertyChangeNotAllowed"
    assert (sim.requests.creates, sim.requests.updates) == (1, 1)


async def test_delete_removes_the_nodes_then_the_pool(sim: ArmSimulator, arm: Arm, hook: RecordingHook) -> None:
    _, headers, _ = await arm.put_pool("gpu1", count=2)
    await arm.wait(headers["Azure-AsyncOperation"])
    sim.provisioning_delay = 0.1

    status, headers, body = await arm.call("DELETE", arm.pool_url("gpu1"))
    assert status == 202 and body is None
    assert "Location" in headers
    _, _, pool = await arm.call("GET", arm.pool_url("gpu1"))
    assert pool["properties"]["provisioningState"] == "Deleting"
    assert (await arm.wait(headers["Azure-AsyncOperation"]))["status"] == "Succeeded"

    assert sorted(hook.removed) == sorted(n.name for n in hook.added)
    status, _, body = await arm.call("GET", arm.pool_url("gpu1"))
    assert status == 404 and body["error"]["code"] == "NotFound"
    status, _, _ = await arm.call("DELETE", arm.pool_url("gpu1"))
    assert status == 204


async def test_delete_preempts_a_running_create(sim: ArmSimulator, arm: Arm, hook: RecordingHook) -> None:
    sim.provisioning_delay = 0.2
    _, create, _ = await arm.put_pool("gpu1")
    _, delete, _ = await arm.call("DELETE", arm.pool_url("gpu1"))
    assert (await arm.wait(create["Azure-AsyncOperation"]))["status"] == "Canceled"
    assert (await arm.wait(delete["Azure-AsyncOperation"]))["status"] == "Succeeded"
    assert hook.added == [] and "gpu1" not in sim.pools


async def test_list_returns_every_pool(arm: Arm) -> None:
    for name in ("pool2", "pool1"):
        await arm.put_pool(name)
    status, _, body = await arm.call("GET", arm.pool_url())
    assert status == 200
    assert [p["name"] for p in body["value"]] == ["pool1", "pool2"]
    assert "nextLink" not in body


@pytest.mark.parametrize(
    ("header_token", "code"),
    [
        pytest.param(None, "AuthenticationFailed", id="missing"),
        pytest.param("wrong", "InvalidAuthenticationToken", id="wrong"),
    ],
)
async def test_requests_need_the_bearer_token(sim: ArmSimulator, arm: Arm, header_token: str | None, code: str) -> None:
    status, headers, body = await arm.call("GET", arm.pool_url(), token=header_token)
    assert status == 401
    assert body["error"]["code"] == code
    assert headers["WWW-Authenticate"].startswith("Bearer ")
    assert sim.pools == {}


async def test_api_version_is_required(arm: Arm) -> None:
    status, _, body = await arm.call("GET", arm.pool_url().split("?")[0])
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"


async def test_other_clusters_are_not_found(sim: ArmSimulator, arm: Arm) -> None:
    url = arm.pool_url("gpu1").replace(f"/managedClusters/{CLUSTER}/", "/managedClusters/other/")
    status, _, body = await arm.call("GET", url)
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("GPU1", id="uppercase"),
        pytest.param("1gpu", id="leading-digit"),
        pytest.param("gpu-pool", id="hyphen"),
        pytest.param("abcdefghijklm", id="13-chars"),
    ],
)
async def test_invalid_pool_names_are_refused(sim: ArmSimulator, arm: Arm, name: str) -> None:
    status, _, body = await arm.put_pool(name)
    assert status == 400
    assert body["error"]["code"] == "InvalidParameter"
    assert body["error"]["target"] == "agentPoolProfile.name"
    assert sim.pools == {}


async def test_twelve_character_names_are_accepted(arm: Arm) -> None:
    status, _, _ = await arm.put_pool("abcdefghijkl")
    assert status == 201


async def test_unknown_vm_sizes_are_refused(sim: ArmSimulator, arm: Arm) -> None:
    status, _, body = await arm.put_pool("gpu1", "Standard_Bogus_v9")
    assert status == 400
    assert body["error"]["code"] == "VMSizeNotSupported"
    assert "Standard_Bogus_v9" in body["error"]["message"]
    assert sim.pools == {}


async def test_tag_names_with_slashes_are_refused(arm: Arm) -> None:
    status, _, body = await arm.put_pool("gpu1", tags={"kaito.sh/nodeclaim": "x"})
    assert status == 400 and body["error"]["code"] == "InvalidTagNameCharacters"


@pytest.mark.parametrize(
    ("code", "http_status"),
    [pytest.param("QuotaExceeded", 400, id="quota"), pytest.param("OperationNotAllowed", 409, id="crp-quota")],
)
async def test_synchronous_quota_fault_refuses_the_put(
    sim: ArmSimulator, arm: Arm, hook: RecordingHook, code: str, http_status: int
) -> None:
    message = quota_message(vm_size="Standard_NC6s_v3", location="eastus")
    assert "exceeding approved standardNCSv3Family Cores quota" in message
    sim.faults.fail_create(code, message, times=1)
    status, _, body = await arm.put_pool("gpu1")
    assert status == http_status
    assert body == {"error": {"code": code, "message": message}}
    assert sim.pools == {}

    status, headers, _ = await arm.put_pool("gpu1")
    assert status == 201
    await arm.wait(headers["Azure-AsyncOperation"])
    assert len(hook.added) == 1


async def test_sku_fault_without_message_uses_azure_wording(sim: ArmSimulator, arm: Arm) -> None:
    sim.faults.fail_create("SkuNotAvailable")
    status, _, body = await arm.put_pool("gpu1")
    assert status == 400
    assert body["error"]["message"] == sku_not_available_message(vm_size="Standard_NC6s_v3", location="eastus")
    sim.faults.clear()
    status, _, _ = await arm.put_pool("gpu1")
    assert status == 201


async def test_asynchronous_allocation_failure_fails_the_operation(
    sim: ArmSimulator, arm: Arm, hook: RecordingHook
) -> None:
    sim.faults.fail_create("AllocationFailed", "no capacity", sync=False)
    status, headers, _ = await arm.put_pool("gpu1")
    assert status == 201
    operation = await arm.wait(headers["Azure-AsyncOperation"])
    assert operation["status"] == "Failed"
    assert operation["error"] == {"code": "AllocationFailed", "message": "no capacity"}
    _, _, pool = await arm.call("GET", arm.pool_url("gpu1"))
    assert pool["properties"]["provisioningState"] == "Failed"
    assert pool["properties"]["status"]["provisioningError"]["code"] == "AllocationFailed"
    assert hook.added == []


async def test_throttling_answers_429_with_retry_after_then_recovers(sim: ArmSimulator, arm: Arm) -> None:
    sim.faults.throttle(2, retry_after=7)
    for _ in range(2):
        status, headers, body = await arm.call("GET", arm.pool_url())
        assert status == 429
        assert headers["Retry-After"] == "7"
        assert body["error"]["code"] == "SubscriptionRequestsThrottled"
    status, _, _ = await arm.call("GET", arm.pool_url())
    assert status == 200
    assert sim.requests.count("GET", status=429) == 2
