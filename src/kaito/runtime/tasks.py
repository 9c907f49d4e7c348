"""Named, guarded background tasks: a crash is logged and recorded for health checks, never silent."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class CrashRecorder:
    """Remembers which background tasks died unexpectedly; `/healthz` fails while any has."""

    def __init__(self) -> None:
        self.crashed: dict[str, str] = {}

    def record(self, name: str, exc: BaseException) -> None:
        self.crashed[name] = f"{type(exc).__name__}: {exc}"

    @property
    def healthy(self) -> bool:
        return not self.crashed


async def guard(name: str, coro: Awaitable[None], crashes: CrashRecorder | None = None) -> None:
    """Run `coro`; an exception other than cancellation is logged with its task name and recorded."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("background task %s crashed", name)
        if crashes is not None:
            crashes.record(name, exc)


def spawn(
    group: asyncio.TaskGroup, name: str, coro: Coroutine[Any, Any, None], crashes: CrashRecorder | None = None
) -> asyncio.Task[None]:
    """Start a named, guarded task in `group` (a crash never tears the whole group down)."""
    return group.create_task(guard(name, coro, crashes), name=name)


class Backoff:
    """Jittered exponential delays between `initial` and `cap` (relists, leader retries, reconnects)."""

    def __init__(
        self, *, initial: float, cap: float, factor: float = 2.0, jitter: float = 1.0, rng: random.Random | None = None
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._next = initial

    def next(self) -> float:
        """The next delay: the current step plus up to `jitter` times it, never above `cap`."""
        base = self._next
        self._next = min(self.cap, self._next * self.factor)
        return min(self.cap, base * (1.0 + self._rng.random() * self.jitter))

    def reset(self) -> None:
        self._next = self.initial


Runnable = Callable[[asyncio.Event], Awaitable[None]]
"""Something the manager runs until the event is set: `await runnable(stop)`."""
