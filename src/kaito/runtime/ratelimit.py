"""Retry delays for failed work items and a token bucket for client QPS, with client-go's semantics.

A `RateLimiter` answers "how long before this item may be retried?": per-item exponential backoff,
fast-then-slow, or a global token bucket, combined with `MaxOfRateLimiter`. `TokenBucket` is the
same bucket as an awaitable limiter for API clients. All time goes through an injected `Clock`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from kaito.runtime.clock import REAL_CLOCK, Clock

T = TypeVar("T", bound=Hashable)
T_contra = TypeVar("T_contra", bound=Hashable, contravariant=True)

# 2.0 ** 1024 raises OverflowError; capping the exponent keeps `base * 2**n` finite or inf, never an error.
_MAX_EXPONENT = 1023


class RateLimiter(Protocol[T_contra]):
    """Decides per-item retry delays; `when` records a failure, `forget` clears the item's history."""

    def when(self, item: T_contra) -> float:
        """Seconds to wait before retrying `item`; counts as one more failure."""
        ...

    def forget(self, item: T_contra) -> None:
        """Stop tracking `item` (it succeeded)."""
        ...

    def num_requeues(self, item: T_contra) -> int:
        """Failures recorded for `item` since it was last forgotten."""
        ...


class ItemExponentialFailureRateLimiter(Generic[T]):
    """`base_delay * 2**failures`, capped at `max_delay`, counted per item."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[T, int] = {}

    def when(self, item: T) -> float:
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        return min(self.base_delay * 2.0 ** min(failures, _MAX_EXPONENT), self.max_delay)

    def forget(self, item: T) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: T) -> int:
        return self._failures.get(item, 0)


class ItemFastSlowRateLimiter(Generic[T]):
    """`fast_delay` for the first `max_fast_attempts` failures of an item, `slow_delay` after."""

    def __init__(self, fast_delay: float, slow_delay: float, max_fast_attempts: int) -> None:
        self.fast_delay = fast_delay
        self.slow_delay = slow_delay
        self.max_fast_attempts = max_fast_attempts
        self._failures: dict[T, int] = {}

    def when(self, item: T) -> float:
        failures = self._failures.get(item, 0) + 1
        self._failures[item] = failures
        return self.fast_delay if failures <= self.max_fast_attempts else self.slow_delay

    def forget(self, item: T) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: T) -> int:
        return self._failures.get(item, 0)


class TokenBucket:
    """A token bucket refilled at `qps` up to `burst`; reservations may go into debt, like x/time/rate's Reserve.

    Each `reserve()` takes one token now and says how long until that token would have existed, so
    callers that wait that long are spaced 1/qps apart once the burst is spent. `qps <= 0` is unlimited.
    """

    def __init__(self, *, qps: float, burst: int, clock: Clock = REAL_CLOCK) -> None:
        if qps > 0 and burst < 1:
            raise ValueError(f"burst must be at least 1 when qps > 0, got {burst}")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.now()
        self._reservations = 0

    @property
    def unlimited(self) -> bool:
        return self.qps <= 0

    def reserve(self) -> float:
        """Take a token; returns the seconds the caller must wait before using it (0 if one was there)."""
        if self.unlimited:
            return 0.0
        now = self._clock.now()
        if now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
        self._tokens -= 1.0
        self._reservations += 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def acquire(self) -> float:
        """Reserve a token and sleep until it is usable; returns the seconds waited."""
        wait = self.reserve()
        if wait <= 0:
            return 0.0
        ticket = self._reservations
        try:
            await self._clock.sleep(wait)
        except asyncio.CancelledError:
            # Only the newest reservation can hand its token back: later callers already counted on
            # the debt it created, so refunding an older one would let a new caller jump their spacing.
            if ticket == self._reservations:
                self._tokens += 1.0
            raise
        return wait


class BucketRateLimiter:
    """One token bucket shared by all items: bounds the overall retry rate, not any one item's."""

    def __init__(self, *, qps: float = 10.0, burst: int = 100, clock: Clock = REAL_CLOCK) -> None:
        self.bucket = TokenBucket(qps=qps, burst=burst, clock=clock)

    def when(self, item: object) -> float:
        return self.bucket.reserve()

    def forget(self, item: object) -> None:
        pass

    def num_requeues(self, item: object) -> int:
        return 0


class MaxOfRateLimiter(Generic[T]):
    """The longest delay of several limiters; every limiter sees every failure."""

    def __init__(self, *limiters: RateLimiter[T]) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self.limiters = limiters

    def when(self, item: T) -> float:
        # A list, not a generator into max(): each limiter must record the failure, even after a long one.
        return max([limiter.when(item) for limiter in self.limiters])

    def forget(self, item: T) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter(*, clock: Clock = REAL_CLOCK) -> MaxOfRateLimiter[Hashable]:
    """client-go's default: per-item exponential 5 ms .. 1000 s, and overall 10 qps with a burst of 100."""
    return MaxOfRateLimiter[Hashable](
        ItemExponentialFailureRateLimiter[Hashable](0.005, 1000.0),
        BucketRateLimiter(qps=10.0, burst=100, clock=clock),
    )
