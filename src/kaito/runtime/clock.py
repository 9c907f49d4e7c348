"""An injectable clock, so backoff, requeue and lease timing can be tested in virtual time."""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for intervals, wall time for timestamps written to the API, and sleeping."""

    def now(self) -> float:
        """Monotonic seconds; only differences mean anything."""
        ...

    def wall(self) -> dt.datetime:
        """Timezone-aware UTC wall time (Lease renew times, event timestamps)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The system clock."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


REAL_CLOCK = RealClock()


def api_time(moment: dt.datetime) -> str:
    """`moment` as the API writes a Time (`lastTransitionTime`, `creationTimestamp`): UTC, whole seconds."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: dt.datetime) -> str:
    """`moment` as the API writes a MicroTime (a Lease's `renewTime`, an Event's `eventTime`)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeClock:
    """Virtual time: sleepers wake only when a test calls `advance` (or `step`)."""

    def __init__(self, start: float = 1000.0, *, wall_start: dt.datetime | None = None) -> None:
        self._now = start
        self._start = start
        self._wall_start = wall_start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> dt.datetime:
        return self._wall_start + dt.timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending (a test can wait for a task to reach its sleep)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed, earliest first."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    async def step(self, seconds: float, *, settle: int = 20) -> None:
        """Advance through every deadline up to `seconds` ahead, letting woken tasks run at each one."""
        target = self._now + seconds
        await settle_loop(settle)
        while (deadline := self.next_deadline()) is not None and deadline <= target:
            self.advance(max(0.0, deadline - self._now))
            await settle_loop(settle)
        self.advance(max(0.0, target - self._now))
        await settle_loop(settle)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)


async def settle_loop(rounds: int = 20) -> None:
    """Yield to the event loop a few times so tasks woken by a clock change can run."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def sleep_until_stopped(clock: Clock, seconds: float, stop: asyncio.Event) -> bool:
    """Sleep for `seconds` unless `stop` is set first; returns True when stopped."""
    if stop.is_set():
        return True
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, stopper):
            task.cancel()
    return stop.is_set()
