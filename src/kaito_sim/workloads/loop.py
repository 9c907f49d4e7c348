"""The level-based loop every simulated controller runs: store changes become keys, reconciled one at a time."""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Iterable

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import ApiError
from kaito_sim.apiserver.store import CLOSE, StorageKey, Subscription, WatchEvent
from kaito_sim.workloads.common import Key, key_of

log = logging.getLogger(__name__)


class Loop(abc.ABC):
    """A level-based control loop: store changes become dirty keys, reconciled one at a time.

    Subclasses name the storage keys they watch, map each change to keys, and reconcile a key from the
    store's current state; `reconcile` may ask to be called again after a delay (a simulated timer).
    """

    name = "loop"
    watches: tuple[StorageKey, ...] = ()

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.subscribed = 0
        self.clock = time.monotonic
        self._dirty: dict[Key, None] = {}
        self._wake = asyncio.Event()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        return [key_of(event.obj)]

    def initial_keys(self) -> Iterable[Key]:
        return [key_of(obj) for obj in self.cluster.store.items(self.watches[0])]

    @abc.abstractmethod
    async def reconcile(self, key: Key) -> float | None:
        """Converge `key`; return seconds after which to look again, or None."""

    def enqueue(self, key: Key) -> None:
        self._dirty[key] = None
        self._wake.set()

    def enqueue_after(self, key: Key, delay: float) -> None:
        """Reconcile `key` after `delay` seconds; an earlier pending time for the key wins."""
        loop = asyncio.get_running_loop()
        timer = self._timers.get(key)
        if timer is not None and timer.when() <= loop.time() + delay:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.enqueue(key)

    async def run(self) -> None:
        subs = [self.cluster.store.subscribe(key) for key in self.watches]
        self.subscribed = len(subs)
        try:
            async with asyncio.TaskGroup() as group:
                for sub in subs:
                    group.create_task(self._pump(sub), name=f"{self.name}-watch-{sub.storage_key[1]}")
                for key in self.initial_keys():
                    self.enqueue(key)
                group.create_task(self._work(), name=f"{self.name}-worker")
        finally:
            for sub in subs:
                sub.close()
            self.subscribed = 0
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()

    async def _pump(self, sub: Subscription) -> None:
        while True:
            event = await sub.queue.get()
            if event.type == CLOSE:  # a forced close of client watches; this subscription stays open
                continue
            for key in self.keys_for(event):
                self.enqueue(key)

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                key = next(iter(self._dirty))
                del self._dirty[key]
                await self._reconcile_guarded(key)
                await asyncio.sleep(0)  # a reconcile that never suspends must not hold the loop for the whole queue

    async def _reconcile_guarded(self, key: Key) -> None:
        try:
            after = await self.reconcile(key)
        except ApiError as exc:  # races with clients and namespace teardown are expected: retry quietly
            level = logging.DEBUG if exc.code in (403, 404, 409) else logging.WARNING
            log.log(level, "%s: %s/%s: %s", self.name, key[0], key[1], exc)
            after = self._backoff(key)
        except Exception:
            log.exception("%s: reconciling %s/%s failed", self.name, key[0], key[1])
            after = self._backoff(key)
        else:
            self._failures.pop(key, None)
        if after is not None:
            self.enqueue_after(key, after + 0.001)  # past the boundary, so the timer never lands just short of it

    def _backoff(self, key: Key) -> float:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        return float(min(0.05 * 2 ** min(failures, 10), 10.0))
