"""Garbage collection of cloud instances whose NodeClaim is gone (a crash between delete and finalizer, a hand edit)."""

from __future__ import annotations

import asyncio
import logging

from kaito.api.nodeclaim import NODECLAIM
from kaito.provisioner import cloud
from kaito.provisioner.cloud import CloudProvider, InstanceState
from kaito.runtime.cache import Cache
from kaito.runtime.clock import REAL_CLOCK, Clock, sleep_until_stopped
from kaito.runtime.objects import ObjectKey

log = logging.getLogger(__name__)


class OrphanCollector:
    """A leader-elected runnable: every `interval`, deletes instances that have had no NodeClaim for a whole interval.

    Instances carry no creation time, so "older than one interval" is judged by sight: an instance is
    deleted only when two passes, an interval apart, both found it without a claim. That leaves a
    fresh create whose claim the cache has not shown yet alone.
    """

    def __init__(self, cache: Cache, provider: CloudProvider, *, interval: float, clock: Clock = REAL_CLOCK) -> None:
        self.cache = cache
        self.provider = provider
        self.interval = interval
        self.clock = clock
        self._suspects: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.cache.wait_for_sync([NODECLAIM])
        while True:
            await self.collect()
            if await sleep_until_stopped(self.clock, self.interval, stop):
                return

    async def collect(self) -> list[str]:
        """One pass; returns the NodeClaim names whose instances it deleted."""
        try:
            instances = await self.provider.list()
        except cloud.CloudError as exc:
            log.warning("orphan collection: listing %s instances failed: %s", self.provider.name, exc)
            return []
        claims = {ObjectKey.of(claim).name for claim in self.cache.list(NODECLAIM)}
        orphans = {
            i.nodeclaim for i in instances if i.nodeclaim not in claims and i.state is not InstanceState.DELETING
        }
        doomed = sorted(orphans & self._suspects)
        self._suspects = orphans - set(doomed)
        return [name for name in doomed if await self._delete(name)]

    async def _delete(self, nodeclaim: str) -> bool:
        try:
            await self.provider.delete(nodeclaim)
        except cloud.NotFound:
            return False
        except cloud.CloudError as exc:
            log.warning("orphan collection: deleting the instance of %s failed: %s", nodeclaim, exc)
            self._suspects.add(nodeclaim)  # still orphaned: try again next pass
            return False
        log.info("orphan collection: deleted the %s instance of vanished NodeClaim %s", self.provider.name, nodeclaim)
        return True
