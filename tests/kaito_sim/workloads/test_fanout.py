"""The simulated controllers share the API server's loop: a pod change wakes only the Services that select it,
and a queue of reconciles that never suspend still lets every other task run between them."""

from __future__ import annotations

import asyncio

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.store import WatchEvent
from kaito_sim.workloads.common import PODS, SERVICES, Key
from kaito_sim.workloads.endpoints import EndpointsController
from kaito_sim.workloads.loop import Loop


def service(name: str, selector: dict[str, str] | None) -> JsonObj:
    spec: JsonObj = {"ports": [{"port": 80}], **({"selector": selector} if selector is not None else {})}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def pod(app: str) -> JsonObj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "labels": {"app": app}}}


def test_a_pod_change_wakes_only_the_services_selecting_it_before_or_after() -> None:
    cluster = Cluster()
    for name, selector in [("a", {"app": "a"}), ("b", {"app": "b"}), ("c", {"app": "c"}), ("none", None)]:
        cluster.seed(SERVICES, service(name, selector))
    controller = EndpointsController(cluster)
    relabelled = WatchEvent(9, "MODIFIED", PODS, pod("a"), pod("b"))
    added = WatchEvent(9, "ADDED", PODS, pod("c"), None)
    assert sorted(controller.keys_for(relabelled)) == [("ns", "a"), ("ns", "b")]
    assert list(controller.keys_for(added)) == [("ns", "c")]
    assert list(controller.keys_for(WatchEvent(9, "ADDED", PODS, pod("elsewhere"), None))) == []


class Busy(Loop):
    """Reconciles without ever suspending, recording the order in which things ran."""

    def __init__(self, cluster: Cluster, ran: list[str]) -> None:
        super().__init__(cluster)
        self.ran = ran

    async def reconcile(self, key: Key) -> float | None:
        self.ran.append(key[1])
        return None


async def test_a_loop_lets_other_tasks_run_between_reconciles() -> None:
    ran: list[str] = []
    loop = Busy(Cluster(), ran)
    for name in ("k1", "k2", "k3"):
        loop.enqueue(("ns", name))
    worker = asyncio.create_task(loop._work())

    async def other() -> None:
        while len(ran) < 6:
            ran.append("other")
            await asyncio.sleep(0)

    await asyncio.wait_for(other(), 5)
    worker.cancel()
    assert ran[ran.index("k1") : ran.index("k3") + 1].count("other") >= 2
