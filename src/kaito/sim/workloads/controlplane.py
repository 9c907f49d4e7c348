"""Runs the simulated kubelet, scheduler and workload controllers together, as one task the server owns."""

from __future__ import annotations

import asyncio

from kaito.sim.cluster import Cluster
from kaito.sim.kubelet import Kubelet, KubeletConfig
from kaito.sim.podfaults import PodFaults
from kaito.sim.scheduling import Scheduler
from kaito.sim.workloads.deployments import DeploymentController
from kaito.sim.workloads.endpoints import EndpointsController
from kaito.sim.workloads.jobs import JobController
from kaito.sim.workloads.loop import Loop
from kaito.sim.workloads.statefulsets import StatefulSetController


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
