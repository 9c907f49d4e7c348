"""Leader election on a coordination.k8s.io Lease, so only one manager replica reconciles at a time.

kubernetes-asyncio ships a `leaderelection` package, but it reads the system clock and sleeps
directly (no virtual-time tests), cannot release the lease on shutdown (a standby then waits a full
lease duration), and reports no metric; so this one is written against our client instead.

Expiry is judged by the local clock from when this candidate last saw the lease record change, never
by comparing timestamps written by another machine, so clock skew between replicas does not matter.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kaito.runtime import errors
from kaito.runtime.clock import REAL_CLOCK, Clock, micro_time, sleep_until_stopped
from kaito.runtime.kinds import LEASE
from kaito.runtime.metrics import METRICS, RuntimeMetrics
from kaito.runtime.objects import Obj

if TYPE_CHECKING:
    from kaito.runtime.client import Client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaderElectionConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_stop: bool = True


class LeaderElector:
    """Acquires, renews and releases one Lease; `leading` is set while this replica holds it."""

    def __init__(
        self,
        client: Client,
        config: LeaderElectionConfig,
        *,
        clock: Clock = REAL_CLOCK,
        metrics: RuntimeMetrics = METRICS,
    ) -> None:
        self.client = client
        self.config = config
        self.clock = clock
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self._observed: tuple[str, str, int] | None = None  # holder, renewTime, transitions
        self._observed_at = 0.0
        self._last_renew = 0.0
        self._lease: Obj | None = None
        self._status = metrics.leader_election_status.labels(name=config.name)
        self._status.set(0)

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign until leader, then renew until `stop` (release) or until renewals fail (sets `lost`)."""
        cfg = self.config
        while not await self._try_acquire_or_renew():
            if await sleep_until_stopped(self.clock, cfg.retry_period, stop):
                return
        self._became_leader()
        while not await sleep_until_stopped(self.clock, cfg.retry_period, stop):
            if await self._try_acquire_or_renew():
                self._last_renew = self.clock.now()
            elif self.clock.now() - self._last_renew >= cfg.renew_deadline:
                self._lost_leadership()
                return
        if cfg.release_on_stop:
            await self._release()
        self._status.set(0)
        self.leading.clear()

    def _became_leader(self) -> None:
        log.info(
            "leader election: %s became leader of %s/%s", self.config.identity, self.config.namespace, self.config.name
        )
        self._last_renew = self.clock.now()
        self._status.set(1)
        self.leading.set()

    def _lost_leadership(self) -> None:
        log.error("leader election: %s lost %s/%s", self.config.identity, self.config.namespace, self.config.name)
        self._status.set(0)
        self.leading.clear()
        self.lost.set()

    async def _try_acquire_or_renew(self) -> bool:
        try:
            lease = await self.client.get(LEASE, self.config.name, namespace=self.config.namespace)
        except errors.NotFound:
            return await self._create()
        except (errors.ApiError, OSError) as exc:
            log.warning("leader election: reading lease failed: %s", exc)
            return False
        spec: dict[str, Any] = lease.get("spec") or {}
        self._observe(spec)
        holder = str(spec.get("holderIdentity") or "")
        if holder and holder != self.config.identity and not self._expired(spec):
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.config.identity else 1)
        acquire = spec.get("acquireTime") if holder == self.config.identity else None
        lease["spec"] = self._spec(transitions=transitions, acquire_time=acquire)
        try:
            self._lease = await self.client.update(LEASE, lease)
        except (errors.ApiError, OSError) as exc:
            log.info("leader election: updating lease failed: %s", exc)
            return False
        return True

    async def _create(self) -> bool:
        body: Obj = {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": {"name": self.config.name, "namespace": self.config.namespace},
            "spec": self._spec(transitions=0, acquire_time=None),
        }
        try:
            self._lease = await self.client.create(LEASE, body)
        except (errors.ApiError, OSError) as exc:
            log.info("leader election: creating lease failed: %s", exc)
            return False
        return True

    def _spec(self, *, transitions: int, acquire_time: Any) -> dict[str, Any]:
        now = micro_time(self.clock.wall())
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": max(1, round(self.config.lease_duration)),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _observe(self, spec: dict[str, Any]) -> None:
        record = (
            str(spec.get("holderIdentity") or ""),
            str(spec.get("renewTime") or ""),
            int(spec.get("leaseTransitions") or 0),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock.now()

    def _expired(self, spec: dict[str, Any]) -> bool:
        duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
        return self.clock.now() - self._observed_at >= duration

    async def _release(self) -> None:
        """Hand the lease back at once (empty holder, 1 s duration) so a standby need not wait it out."""
        if self._lease is None:
            return
        lease = self._lease
        spec = dict(lease.get("spec") or {})
        spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=micro_time(self.clock.wall()))
        lease["spec"] = spec
        try:
            await self.client.update(LEASE, lease)
            log.info(
                "leader election: %s released %s/%s", self.config.identity, self.config.namespace, self.config.name
            )
        except (errors.ApiError, OSError) as exc:
            log.warning("leader election: releasing lease failed: %s", exc)
