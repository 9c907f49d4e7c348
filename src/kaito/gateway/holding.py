"""Requests that wait for a replica: a bounded first-in first-out queue with a deadline per request.

When a replica becomes ready every waiter is woken at once, in arrival order: their futures resolve in that
order, so their handlers resume (and pick replicas) in that order too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from kaito.runtime.clock import Clock


class QueueFull(Exception):
    """The hold queue already has `max_queue` requests."""


class HoldTimeout(Exception):
    """No replica became ready before the request's deadline."""


class HoldQueue:
    """At most `max_queue` waiters; `wait` returns when `release` is called, or raises at the deadline."""

    def __init__(self, *, max_queue: int, clock: Clock) -> None:
        self.max_queue = max_queue
        self.clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._waiters)

    def admit(self) -> asyncio.Future[None]:
        """A place in the queue; raises `QueueFull` when there is none."""
        if len(self._waiters) >= self.max_queue:
            raise QueueFull
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def wait(self, waiter: asyncio.Future[None], *, deadline: float) -> None:
        """Until `waiter` is released; `HoldTimeout` at `deadline` (on the queue's clock)."""
        timer = asyncio.ensure_future(self.clock.sleep(deadline - self.clock.now()))
        try:
            await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                raise HoldTimeout
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):  # already released
                self._waiters.remove(waiter)

    def release(self) -> int:
        """Wake every waiter, first come first; returns how many."""
        woken = 0
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken += 1
        return woken
