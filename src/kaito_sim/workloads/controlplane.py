"""Runs the simulated kubelet, scheduler and workload controllers together, as one task the server owns."""

from __future__ import annotations

import asyncio

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.nodes.kubelet import Kubelet, KubeletConfig
from kaito_sim.nodes.podfaults import PodFaults
from kaito_sim.nodes.scheduling import Scheduler
from kaito_sim.workloads.deployments import DeploymentController
from kaito_sim.workloads.endpoints import EndpointsController
from kaito_sim.workloads.jobs import JobController
from kaito_sim.workloads.loop import Loop
from kaito_sim.workloads.statefulsets import StatefulSetController


class ControlPlane:
    """The loops that make pods run; each one is its own named task in a single task group."""

    def __init__(self, cluster: Cluster, *, config: KubeletConfig, faults: PodFaults) -> None:
        self.loops: list[Loop] = [
            Scheduler(cluster),
            Kubelet(cluster, config=config, faults=faults),
            DeploymentController(cluster),
            StatefulSetController(cluster),
            JobController(cluster),
            EndpointsController(cluster),
        ]

    @property
    def subscriptions(self) -> int:
        """Store subscriptions the loops hold (they are not client watches)."""
        return sum(loop.subscribed for loop in self.loops)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for loop in self.loops:
                group.create_task(loop.run(), name=f"sim-{loop.name}")
