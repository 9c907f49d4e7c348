"""The reconciler contract: given a key, make the world match the object, then return a `Result` or raise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kaito.runtime.objects import ObjectKey


@dataclass(frozen=True)
class Result:
    """`requeue_after` re-checks after a fixed delay; `requeue` retries with the rate limiter's backoff."""

    requeue: bool = False
    requeue_after: float | None = None


DONE = Result()


class TerminalError(Exception):
    """A failure that retrying cannot fix (bad input): logged and counted, never retried."""


Reconciler = Callable[[ObjectKey], Awaitable[Result | None]]
