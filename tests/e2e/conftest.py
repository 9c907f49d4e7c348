"""End-to-end fixtures: the simulated AKS cluster (API server + ARM) with the kaito operator running against it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from kaito.operator import OperatorOptions, build
from kaito.provisioner.azure import AzureProvider
from kaito.runtime.client import Client
from kaito.runtime.manager import Manager
from kaito_sim.aks import SimulatedAks
from kaito_sim.demo.operator import install_crds, simulated_azure_provider
from kaito_sim.nodes.nodespec import NodeSpec
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.registry import registry as registry  # the docker-registry fixture, for the model image tests


@dataclass
class Operator:
    aks: SimulatedAks
    client: Client
    manager: Manager | None = None
    provider: AzureProvider | None = None
    stop: asyncio.Event | None = None
    task: asyncio.Task[None] | None = None

    def new_provider(self) -> AzureProvider:
        return simulated_azure_provider(self.aks)

    async def start(
        self,
        *,
        byo: bool = False,
        byo_node_selector: str | None = None,
        registration_timeout: float = 900.0,
        node_ready_timeout: float = 900.0,
        capacity_retries: int = 2,
    ) -> None:
        self.provider = None if byo else self.new_provider()
        options = OperatorOptions(
            byo_node_selector=byo_node_selector,
            nodeclaim_registration_timeout=registration_timeout,
            node_ready_timeout=node_ready_timeout,
            metrics_address="127.0.0.1:0",
            health_address="127.0.0.1:0",
            webhook_address="127.0.0.1:0",
            leader_election=False,
            nodeclaim_poll_interval=0.2,
            nodeclaim_retry_interval=0.5,
            fallback_capacity_retries=capacity_retries,
        )
        self.manager = build(self.client, self.provider, options)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.manager.run(self.stop))
        await asyncio.wait_for(self.manager.elected.wait(), 15)

    async def halt(self) -> None:
        if self.stop is not None and self.task is not None:
            self.stop.set()
            await asyncio.wait_for(self.task, 30)
        if self.provider is not None:
            await self.provider.close()
        self.task = self.stop = None


@pytest.fixture
async def operator(sim: SimServer, kclient: Client) -> AsyncIterator[Operator]:
    async with SimulatedAks(sim, provisioning_delay=0.1) as aks:
        await install_crds(kclient, "kaito-system")
        op = Operator(aks=aks, client=kclient)
        await op.start()
        yield op
        await op.halt()


async def workspace_json(kubectl: Kubectl, name: str) -> dict[str, Any]:
    result = await kubectl("get", "workspace", name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.rc == 0 else {}


def condition(ws: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (ws.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


async def wait_workspace(
    kubectl: Kubectl, name: str, kind: str, status: str, *, reason: str | None = None, within: float = 30
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    ws: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        ws = await workspace_json(kubectl, name)
        cond = condition(ws, kind)
        if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return ws
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"{name}: {kind} never became {status}/{reason}; status: {json.dumps(ws.get('status'), indent=1)}"
    )


async def bring_your_own_node(sim: SimServer, operator: Operator, *, name: str, gpus: int) -> Operator:
    """The operator without a cloud provider, and one GPU node of the user's (label apps=phi-3, NC6s_v3)."""
    await operator.halt()
    await operator.start(byo=True)
    await sim.add_node(
        NodeSpec(
            name=name,
            labels={"apps": "phi-3", "node.kubernetes.io/instance-type": "Standard_NC6s_v3"},
            capacity={"cpu": "24", "memory": "448Gi", "pods": "110", "nvidia.com/gpu": str(gpus)},
        )
    )
    return operator
