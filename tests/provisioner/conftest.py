"""Provisioner test helpers: NodeClaims shaped like the workspace controller's, GPU Nodes, and a running manager."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kaito.api.nodeclaim import LABEL_INSTANCE_TYPE, LABEL_NODECLAIM, NODECLAIM
from kaito.api.workspace import LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE
from kaito.provisioner.cloud import Instance
from kaito.provisioner.fake import FakeCloudProvider
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.clock import FakeClock
from kaito.runtime.kinds import NODE
from kaito.runtime.manager import Manager, ManagerOptions
from kaito.runtime.objects import Obj
from tests.api.test_crds import install_crds
from tests.conftest import Kubectl

SKU = "Standard_NC6s_v3"
TICK = 0.05  # virtual seconds per poll of `until` with a FakeClock


@pytest.fixture
async def crds(kubectl: Kubectl) -> None:
    """Our CRDs, installed the way a user would, with the NodeClaim one established."""
    await install_crds(kubectl)
    await kubectl("wait", "--for=condition=Established", "crd/nodeclaims.karpenter.sh", namespaced=False)


@pytest.fixture
def fake(kclient: Client) -> FakeCloudProvider:
    """A fake cloud whose finished instances join the cluster as Ready GPU nodes, as a kubelet would register them."""

    return FakeCloudProvider(on_ready=joiner(kclient))


def joiner(kclient: Client, *, gpus: int = 1) -> Callable[[Instance], Awaitable[None]]:
    """An `on_ready` hook that registers the instance's Node as its kubelet would: create, then report status."""

    async def join(instance: Instance) -> None:
        node = gpu_node(instance, gpus=gpus)
        await kclient.create(NODE, node)
        await kclient.patch_status(NODE, node["metadata"]["name"], {"status": node["status"]})

    return join


def claim_name(workspace: str, namespace: str) -> str:
    """`<workspace>-<9 hex>`, as the workspace controller names its claims."""
    return f"{workspace}-{hashlib.sha256(f'{namespace}{workspace}'.encode()).hexdigest()[:9]}"


def nodeclaim(name: str, *, workspace: str = "phi-3", namespace: str = "default", sku: str = SKU) -> Obj:
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": {
                LABEL_WORKSPACE: workspace,
                LABEL_WORKSPACE_NAMESPACE: namespace,
                "karpenter.sh/nodepool": "kaito",
            },
            "annotations": {"karpenter.sh/do-not-disrupt": "true"},
        },
        "spec": {
            "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
            "requirements": [
                {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
                {"key": LABEL_INSTANCE_TYPE, "operator": "In", "values": [sku]},
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            ],
            "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
            "resources": {"requests": {"storage": "1024Gi"}},
        },
    }


def gpu_node(instance: Instance, *, gpus: int = 1, ready: bool = True) -> Obj:
    capacity = {"cpu": "6", "memory": "112Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": f"aks-{instance.name}-vmss000000",
            "labels": {LABEL_NODECLAIM: instance.nodeclaim, LABEL_INSTANCE_TYPE: instance.instance_type},
        },
        "spec": {"providerID": instance.provider_id},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady"}],
        },
    }


def options(namespace: str) -> ManagerOptions:
    return ManagerOptions(metrics_address=None, health_address=None, namespace=namespace, graceful_shutdown_timeout=5)


@asynccontextmanager
async def running(manager: Manager) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        await asyncio.wait_for(manager.elected.wait(), 10)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def read_claim(kclient: Client, name: str) -> Obj | None:
    return await errors.ignore_not_found(kclient.get(NODECLAIM, name))


def condition(claim: Obj | None, type_: str) -> dict[str, Any]:
    """The condition of `type_` ({} when absent), for asserting on status, reason and message together."""
    for cond in ((claim or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


async def until(
    read: Callable[[], Awaitable[Any]],
    check: Callable[[Any], bool],
    within: float = 10.0,
    *,
    clock: FakeClock | None = None,
) -> Any:
    """Poll `read` until `check` holds on its value; returns the value, or fails with the last one seen.

    With a `clock`, virtual time moves on by `TICK` between polls, so what the manager schedules on it comes due.
    """
    deadline = asyncio.get_running_loop().time() + within
    while not check(value := await read()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {within}s; last value: {value!r}")
        if clock is not None:
            await clock.step(TICK)
        await asyncio.sleep(0.02)
    return value


async def counted(value: int) -> int:
    """A count as an awaitable, for `until`."""
    return value
