"""A controller: watches feed keys into a rate-limited work queue; workers run the reconciler on each key.

The one place that maps reconcile outcomes to queue actions and metric labels:
success -> forget; `requeue_after` -> forget, then re-add after the delay; `requeue` or an error ->
rate-limited retry; a 409 Conflict -> quiet rate-limited retry (the cache was stale);
`TerminalError` -> logged and counted, not retried. Nothing a reconciler raises kills a worker.
With mutation detection on (see `mutation`), a reconcile after which a cached object was found
changed in place fails like a panic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from kaito.runtime import errors
from kaito.runtime.cache import Cache
from kaito.runtime.clock import REAL_CLOCK, Clock
from kaito.runtime.handler import Mapper, Predicate
from kaito.runtime.informer import Event
from kaito.runtime.kinds import Kind
from kaito.runtime.metrics import METRICS, RuntimeMetrics
from kaito.runtime.objects import ObjectKey
from kaito.runtime.ratelimit import RateLimiter
from kaito.runtime.reconcile import Reconciler, Result, TerminalError
from kaito.runtime.workqueue import RateLimitingQueue, ShutDown

log = logging.getLogger(__name__)

# Failures that come from the outside world; anything else escaping a reconciler is a bug ("panic").
EXPECTED_FAILURES = (errors.ApiError, aiohttp.ClientError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class Watch:
    kind: Kind
    mapper: Mapper
    predicates: Sequence[Predicate] = field(default_factory=tuple)


class Controller:
    """Runs `reconcile` for keys produced by its watches, at most `max_concurrent_reconciles` at a time."""

    def __init__(
        self,
        name: str,
        reconcile: Reconciler,
        *,
        cache: Cache,
        watches: Sequence[Watch] = (),
        max_concurrent_reconciles: int = 1,
        rate_limiter: RateLimiter[ObjectKey] | None = None,
        clock: Clock = REAL_CLOCK,
        metrics: RuntimeMetrics = METRICS,
    ) -> None:
        if max_concurrent_reconciles < 1:
            raise ValueError("max_concurrent_reconciles must be at least 1")
        self.name = name
        self.reconcile = reconcile
        self.cache = cache
        self.watches = list(watches)
        self.max_concurrent_reconciles = max_concurrent_reconciles
        self.clock = clock
        self.metrics = metrics
        self.queue: RateLimitingQueue[ObjectKey] = RateLimitingQueue(
            rate_limiter, name=name, clock=clock, metrics=metrics
        )
        self._started = False
        metrics.init_controller_series(name, max_concurrent_reconciles)

    def watch(self, kind: Kind, mapper: Mapper, *predicates: Predicate) -> None:
        if self._started:
            raise RuntimeError(f"controller {self.name}: add watches before it starts")
        self.watches.append(Watch(kind, mapper, predicates))

    async def run(self, stop: asyncio.Event) -> None:
        """Register handlers, wait for the watched kinds to sync, then work until `stop`, draining on the way out."""
        self._started = True
        for index, watch in enumerate(self.watches):
            handler_name = f"{self.name}-watch-{index}-{watch.kind.plural}"
            self.cache.informer(watch.kind).add_handler(self._handler(watch), name=handler_name)
        await self.cache.wait_for_sync([watch.kind for watch in self.watches])
        log.info("controller %s: starting %d workers", self.name, self.max_concurrent_reconciles)
        async with asyncio.TaskGroup() as group:
            for index in range(self.max_concurrent_reconciles):
                group.create_task(self._worker(), name=f"{self.name}-worker-{index}")
            await stop.wait()
            # Items already queued are still handed out; new adds are dropped; returns when all are done.
            await self.queue.shut_down_with_drain()
        log.info("controller %s: stopped", self.name)

    def _handler(self, watch: Watch) -> Callable[[Event], None]:
        def handle(event: Event) -> None:
            if all(predicate(event) for predicate in watch.predicates):
                for key in watch.mapper(event):
                    self.queue.add(key)

        return handle

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self._reconcile_one(key)
            finally:
                self.queue.done(key)
            # A reconcile that only reads the cache never suspends, and neither does `get` on a full queue:
            # without this, one worker drains hundreds of keys while health checks, lease renewals and
            # the watch streams that fill the cache wait for the loop.
            await asyncio.sleep(0)

    async def _reconcile_one(self, key: ObjectKey) -> None:
        started = self.clock.now()
        active = self.metrics.active_workers.labels(controller=self.name)
        active.inc()
        try:
            result = await self.reconcile(key)
            self.cache.check_mutations()  # a reconciler that changed a shared cached object is a bug
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(key, exc)
        else:
            self._succeeded(key, result or Result())
        finally:
            active.dec()
            self.metrics.reconcile_time.labels(controller=self.name).observe(self.clock.now() - started)

    def _succeeded(self, key: ObjectKey, result: Result) -> None:
        if result.requeue_after is not None and result.requeue_after > 0:
            self.queue.forget(key)
            self.queue.add_after(key, result.requeue_after)
            self._count("requeue_after")
        elif result.requeue:
            self.queue.add_rate_limited(key)
            self._count("requeue")
        else:
            self.queue.forget(key)
            self._count("success")

    def _failed(self, key: ObjectKey, exc: Exception) -> None:
        if isinstance(exc, errors.Conflict):
            log.debug("controller %s: %s: conflict, requeueing: %s", self.name, key, exc)
            self.queue.add_rate_limited(key)
            self._count("requeue")
            return
        self.metrics.reconcile_errors.labels(controller=self.name).inc()
        self._count("error")
        if isinstance(exc, TerminalError):
            self.metrics.terminal_reconcile_errors.labels(controller=self.name).inc()
            log.error("controller %s: %s: terminal error, not retrying: %s", self.name, key, exc)
            self.queue.forget(key)
            return
        if isinstance(exc, EXPECTED_FAILURES):
            log.warning("controller %s: %s: %s (retry %d)", self.name, key, exc, self.queue.num_requeues(key) + 1)
        else:
            self.metrics.reconcile_panics.labels(controller=self.name).inc()
            log.error("controller %s: %s: reconcile panicked", self.name, key, exc_info=exc)
        self.queue.add_rate_limited(key)

    def _count(self, result: str) -> None:
        self.metrics.reconcile_total.labels(controller=self.name, result=result).inc()
