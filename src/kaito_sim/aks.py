"""A simulated AKS cluster: the API server simulator plus the ARM simulator, whose agent pools become its Nodes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from types import TracebackType

from kaito_sim.arm import ArmSimulator, CloudLimits
from kaito_sim.nodes.nodespec import NodeSpec
from kaito_sim.server import SimServer

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "kaito-rg"
CLUSTER = "kaito-sim"


class _Kubelets:
    """VMs booted by the ARM simulator join the API server simulator as Nodes (and leave it when deleted)."""

    def __init__(self, sim: SimServer) -> None:
        self.sim = sim

    async def add(self, spec: NodeSpec) -> None:
        await self.sim.add_node(spec)

    async def remove(self, name: str) -> None:
        await self.sim.remove_node(name)


@dataclass(frozen=True)
class AzureTarget:
    """What an Azure provider needs to reach the simulated cluster's ARM endpoint."""

    url: str
    ca_path: str
    token: str
    subscription_id: str = SUBSCRIPTION
    resource_group: str = RESOURCE_GROUP
    cluster: str = CLUSTER


class SimulatedAks:
    """Starts and stops both simulators together; `arm.faults` injects cloud failures, `arm.limits` quotas."""

    def __init__(
        self,
        sim: SimServer,
        *,
        provisioning_delay: float = 0.0,
        node_ready_after: float = 0.0,
        limits: CloudLimits | None = None,
    ) -> None:
        self.sim = sim
        self.token = secrets.token_urlsafe(24)
        self.arm = ArmSimulator(
            subscription_id=SUBSCRIPTION,
            resource_group=RESOURCE_GROUP,
            cluster=CLUSTER,
            token=self.token,
            node_hook=_Kubelets(sim),
            provisioning_delay=provisioning_delay,
            node_ready_after=node_ready_after,
            limits=limits,
        )

    @property
    def azure(self) -> AzureTarget:
        return AzureTarget(url=self.arm.url, ca_path=str(self.arm.ca_path), token=self.token)

    async def __aenter__(self) -> SimulatedAks:
        await self.arm.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.arm.stop()
