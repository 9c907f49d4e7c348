"""Work queues with client-go's guarantees, so a key is never reconciled twice at once and no update is lost.

`WorkQueue` keeps a FIFO of ready items plus client-go's `dirty` set (needs processing) and
`processing` set (handed to a worker). An item is queued at most once; an item added while it is
being processed waits in `dirty` until `done()` and is then queued again. `DelayingQueue` adds
`add_after`, where the earliest requested time wins; `RateLimitingQueue` adds per-item backoff.
Delayed items are promoted lazily on each operation, so the synchronous methods work without an
event loop (a `FakeClock` drives them in tests) and no background task is needed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from kaito.runtime.clock import REAL_CLOCK, Clock
from kaito.runtime.metrics import METRICS, RuntimeMetrics
from kaito.runtime.ratelimit import RateLimiter, default_controller_rate_limiter

T = TypeVar("T", bound=Hashable)


class ShutDown(Exception):
    """The queue is shut down and has nothing left to hand out."""


@dataclass(frozen=True)
class _Metrics:
    depth: Gauge
    adds: Counter
    queue_duration: Histogram
    work_duration: Histogram
    retries: Counter
    unfinished: Gauge
    longest: Gauge

    @classmethod
    def for_name(cls, name: str, metrics: RuntimeMetrics) -> _Metrics:
        return cls(
            depth=metrics.workqueue_depth.labels(name=name),
            adds=metrics.workqueue_adds.labels(name=name),
            queue_duration=metrics.workqueue_queue_duration.labels(name=name),
            work_duration=metrics.workqueue_work_duration.labels(name=name),
            retries=metrics.workqueue_retries.labels(name=name),
            unfinished=metrics.workqueue_unfinished_work.labels(name=name),
            longest=metrics.workqueue_longest_running.labels(name=name),
        )


class WorkQueue(Generic[T]):
    """A deduplicating FIFO where an item is held by at most one worker at a time."""

    def __init__(self, *, name: str = "", clock: Clock = REAL_CLOCK, metrics: RuntimeMetrics = METRICS) -> None:
        self.name = name
        self._clock = clock
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._shutting_down = False
        self._metrics = _Metrics.for_name(name, metrics) if name else None
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}
        # Events are replaced after each set() so that every waiter sees one wake-up per change;
        # asyncio.Event binds to a loop only when awaited, so creating them needs no running loop.
        self._items_changed = asyncio.Event()
        self._processing_changed = asyncio.Event()

    def add(self, item: T) -> None:
        """Mark `item` as needing processing; a no-op if it is already queued or after shutdown."""
        if self._shutting_down:
            return
        self._promote_due()
        self._insert(item)

    def get_nowait(self) -> T | None:
        """The next ready item, or None; raises ShutDown once shut down with nothing queued."""
        self._promote_due()
        if self._queue:
            return self._take()
        if self._shutting_down:
            raise ShutDown
        return None

    async def get(self) -> T:
        """Wait for the next ready item; raises ShutDown once shut down with nothing queued."""
        while True:
            self._promote_due()
            if self._queue:
                return self._take()
            if self._shutting_down:
                raise ShutDown
            await self._wait_for_items()

    def done(self, item: T) -> None:
        """Finish processing `item`; if it was added meanwhile, it is queued again now."""
        if item not in self._processing:
            return
        self._processing.discard(item)
        started = self._started_at.pop(item, None)
        if self._metrics is not None and started is not None:
            self._metrics.work_duration.observe(self._clock.now() - started)
        if item in self._dirty:
            self._queue.append(item)
            self._set_depth()
            self._notify_items()
        self._notify(processing=True)
        self.update_unfinished_work()

    def __len__(self) -> int:
        """Ready items waiting for a worker (not those being processed or delayed)."""
        self._promote_due()
        return len(self._queue)

    def shut_down(self) -> None:
        """Ignore further adds; queued items are still handed out, then getters raise ShutDown."""
        self._shutting_down = True
        self._notify_items()

    async def shut_down_with_drain(self) -> None:
        """Shut down, then wait until no item is being processed."""
        self.shut_down()
        while self._processing:
            changed = self._processing_changed
            await changed.wait()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def processing_count(self) -> int:
        return len(self._processing)

    def is_processing(self, item: T) -> bool:
        return item in self._processing

    def is_dirty(self, item: T) -> bool:
        """Whether `item` is queued, or was added while processing and will be queued on `done()`."""
        return item in self._dirty

    def update_unfinished_work(self) -> None:
        """Refresh the unfinished-work gauges from the items being processed now."""
        if self._metrics is None:
            return
        now = self._clock.now()
        running = [now - started for started in self._started_at.values()]
        self._metrics.unfinished.set(sum(running))
        self._metrics.longest.set(max(running, default=0.0))

    def _insert(self, item: T) -> None:
        if item in self._dirty:
            return
        self._dirty.add(item)
        if self._metrics is not None:
            self._metrics.adds.inc()
            self._added_at.setdefault(item, self._clock.now())
        if item in self._processing:
            return
        self._queue.append(item)
        self._set_depth()
        self._notify_items()

    def _take(self) -> T:
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        if self._metrics is not None:
            now = self._clock.now()
            added = self._added_at.pop(item, now)
            self._metrics.queue_duration.observe(now - added)
            self._started_at[item] = now
            self._set_depth()
            self.update_unfinished_work()
        return item

    async def _wait_for_items(self) -> None:
        changed = self._items_changed
        due = self._next_due()
        if due is None:
            await changed.wait()
            return
        # Either a change (new item, earlier deadline, shutdown) or the earliest deadline wakes us;
        # sleeping through the clock lets a FakeClock's advance() release the wait.
        waiter = asyncio.ensure_future(changed.wait())
        timer = asyncio.ensure_future(self._clock.sleep(due - self._clock.now()))
        try:
            await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()

    def _notify_items(self) -> None:
        self._notify(processing=False)

    def _notify(self, *, processing: bool) -> None:
        if processing:
            self._processing_changed.set()
            self._processing_changed = asyncio.Event()
        else:
            self._items_changed.set()
            self._items_changed = asyncio.Event()

    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.depth.set(len(self._queue))

    def _promote_due(self) -> None:
        """Move delayed items whose time has come into the queue (DelayingQueue)."""

    def _next_due(self) -> float | None:
        """The clock time the earliest delayed item becomes ready, if any (DelayingQueue)."""
        return None


class DelayingQueue(WorkQueue[T]):
    """A work queue that can also take an item after a delay; re-adding never pushes an item back."""

    def __init__(self, *, name: str = "", clock: Clock = REAL_CLOCK, metrics: RuntimeMetrics = METRICS) -> None:
        super().__init__(name=name, clock=clock, metrics=metrics)
        self._waiting: list[tuple[float, int, T]] = []
        # The live entry per item; heap entries whose sequence number differs are stale and skipped.
        self._ready_at: dict[T, tuple[float, int]] = {}
        self._seq = itertools.count()

    def add_after(self, item: T, delay: float) -> None:
        """Add `item` once `delay` seconds have passed; if already waiting, the earlier time wins."""
        if self._shutting_down:
            return
        if self._metrics is not None:
            self._metrics.retries.inc()
        if delay <= 0:
            self.add(item)
            return
        ready_at = self._clock.now() + delay
        current = self._ready_at.get(item)
        if current is not None and current[0] <= ready_at:
            return
        seq = next(self._seq)
        self._ready_at[item] = (ready_at, seq)
        heapq.heappush(self._waiting, (ready_at, seq, item))
        self._notify_items()

    @property
    def waiting_count(self) -> int:
        """Items waiting for their delay to pass."""
        return len(self._ready_at)

    def ready_at(self, item: T) -> float | None:
        """The clock time a delayed `item` will be added, or None if it is not waiting."""
        entry = self._ready_at.get(item)
        return entry[0] if entry is not None else None

    def shut_down(self) -> None:
        self._waiting.clear()
        self._ready_at.clear()
        super().shut_down()

    def _promote_due(self) -> None:
        now = self._clock.now()
        while self._waiting and self._waiting[0][0] <= now:
            ready_at, seq, item = heapq.heappop(self._waiting)
            if self._ready_at.get(item) != (ready_at, seq):
                continue
            del self._ready_at[item]
            self._insert(item)

    def _next_due(self) -> float | None:
        while self._waiting:
            ready_at, seq, item = self._waiting[0]
            if self._ready_at.get(item) == (ready_at, seq):
                return ready_at
            heapq.heappop(self._waiting)
        return None


class RateLimitingQueue(DelayingQueue[T]):
    """A delaying queue whose retries back off per item, as decided by a `RateLimiter`."""

    def __init__(
        self,
        rate_limiter: RateLimiter[T] | None = None,
        *,
        name: str = "",
        clock: Clock = REAL_CLOCK,
        metrics: RuntimeMetrics = METRICS,
    ) -> None:
        super().__init__(name=name, clock=clock, metrics=metrics)
        self.rate_limiter: RateLimiter[T] = (
            rate_limiter if rate_limiter is not None else default_controller_rate_limiter(clock=clock)
        )

    def add_rate_limited(self, item: T) -> None:
        """Add `item` after the limiter's delay for it (one more recorded failure)."""
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """Clear `item`'s failure history, so its next retry starts from the shortest delay."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)
