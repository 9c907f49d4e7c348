"""The gateway's state: the ready replicas, the requests held for one, and the choice of a replica per attempt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass

from kaito.gateway.demand import Demand
from kaito.gateway.discovery import Discovery
from kaito.gateway.holding import HoldQueue
from kaito.gateway.metrics import GatewayMetrics
from kaito.gateway.router import Replica, Router
from kaito.runtime.clock import REAL_CLOCK, Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """What `kaito gateway`'s flags set."""

    max_queue: int = 100
    hold_timeout: float = 600.0  # seconds a request may wait for a replica
    retry_after: int = 5  # seconds, in the Retry-After of a full queue's 503
    affinity_slack: int = 4  # outstanding requests a preferred replica may have beyond the least loaded one
    prefix_chars: int = 256
    connect_timeout: float = 5.0  # seconds to reach a replica; the answer itself has no limit (long generations)


class Gateway:
    """Replicas from `discovery`, held requests released when one is ready, demand noted while holding."""

    def __init__(
        self,
        discovery: Discovery,
        *,
        demand: Demand | None,
        settings: Settings = Settings(),
        clock: Clock = REAL_CLOCK,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.discovery = discovery
        self.demand = demand
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or GatewayMetrics()
        self.router = Router(slack=settings.affinity_slack)
        self.holding = HoldQueue(max_queue=settings.max_queue, clock=clock)

    def set_replicas(self, replicas: Sequence[Replica]) -> None:
        """The ready set as discovery last saw it; held requests go out as soon as it is not empty."""
        added, removed = self.router.set_replicas(replicas)
        if added or removed:
            log.info("ready replicas: %s", ", ".join(r.name for r in replicas) or "none")
        self.metrics.replicas_changed(added=added, removed=removed, ready=len(replicas))
        if replicas and len(self.holding):
            self.holding.release()
            self.metrics.queued.set(0)

    async def replica_for(self, key: str | None, *, tried: frozenset[str], deadline: float) -> Replica | None:
        """A replica for one attempt, holding while none is ready; None when every ready replica was `tried`.

        Raises `QueueFull` or `HoldTimeout` from the hold queue.
        """
        while self.router.empty:
            waiter = self.holding.admit()
            self.metrics.queued.set(len(self.holding))
            if self.demand is not None:
                self.demand.note(self.clock.wall())
            started = self.clock.now()
            try:
                await self.holding.wait(waiter, deadline=deadline)
            finally:
                self.metrics.held.observe(self.clock.now() - started)
                self.metrics.queued.set(len(self.holding))
        return self.router.choose(key, exclude=tried)

    def started(self, replica: Replica) -> None:
        self.router.started(replica)
        self.metrics.in_flight.inc()
        self.metrics.replica_outstanding(replica.name, self.router.outstanding(replica.name))

    def finished(self, replica: Replica) -> None:
        self.router.finished(replica)
        self.metrics.in_flight.dec()
        if self.router.has(replica.name):  # a replica gone keeps no series
            self.metrics.replica_outstanding(replica.name, self.router.outstanding(replica.name))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Discovery and demand run in the background while the block runs."""
        tasks = [asyncio.create_task(_guarded(self.discovery.run(self.set_replicas), "discovery"), name="discovery")]
        if self.demand is not None:
            demand = self.demand.run(lambda: len(self.holding) > 0)
            tasks.append(asyncio.create_task(_guarded(demand, "demand"), name="demand"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _guarded(work: Awaitable[None], what: str) -> None:
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the gateway's %s loop crashed", what)
        raise
