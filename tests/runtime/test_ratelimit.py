"""Retry limiters and the token bucket, in virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import pytest

from kaito.runtime.clock import FakeClock, settle_loop
from kaito.runtime.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    TokenBucket,
    default_controller_rate_limiter,
)


def test_exponential_doubles_per_item() -> None:
    limiter = ItemExponentialFailureRateLimiter[str](0.005, 1000.0)
    assert [limiter.when("a") for _ in range(5)] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert limiter.when("b") == pytest.approx(0.005)
    assert limiter.num_requeues("a") == 5
    assert limiter.num_requeues("b") == 1


def test_exponential_caps_at_max_delay() -> None:
    limiter = ItemExponentialFailureRateLimiter[str](0.005, 1000.0)
    delays = [limiter.when("a") for _ in range(30)]
    assert max(delays) == 1000.0
    assert delays[-1] == 1000.0
    assert delays[17] < 1000.0 < 0.005 * 2**18  # 0.005 * 2**17 = 655 s, the last uncapped step
    assert delays[18] == 1000.0


def test_exponential_huge_failure_counts_do_not_overflow() -> None:
    limiter = ItemExponentialFailureRateLimiter[str](1.0, 60.0)
    for _ in range(5000):
        assert limiter.when("a") <= 60.0
    assert limiter.when("a") == 60.0
    assert limiter.num_requeues("a") == 5001


def test_exponential_forget_resets() -> None:
    limiter = ItemExponentialFailureRateLimiter[str](0.1, 10.0)
    limiter.when("a")
    limiter.when("a")
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == pytest.approx(0.1)


def test_fast_slow() -> None:
    limiter = ItemFastSlowRateLimiter[str](0.1, 5.0, 3)
    assert [limiter.when("a") for _ in range(5)] == [0.1, 0.1, 0.1, 5.0, 5.0]
    assert limiter.when("b") == 0.1
    assert limiter.num_requeues("a") == 5
    limiter.forget("a")
    assert limiter.when("a") == 0.1


def test_bucket_burst_then_spacing() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10.0, burst=3, clock=clock)
    assert [limiter.when(i) for i in range(3)] == [0.0, 0.0, 0.0]
    # Beyond the burst, reservations queue up 1/qps apart.
    assert [limiter.when(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert limiter.num_requeues("x") == 0


def test_bucket_refills_with_virtual_time() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10.0, burst=2, clock=clock)
    limiter.when("a")
    limiter.when("a")
    assert limiter.when("a") == pytest.approx(0.1)
    clock.advance(0.1)
    assert limiter.when("a") == pytest.approx(0.1)  # the debt was repaid; the next token is 0.1 s away
    clock.advance(10.0)  # refills only up to the burst
    assert [limiter.when("a") for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])


def test_bucket_forget_is_noop() -> None:
    limiter = BucketRateLimiter(qps=1.0, burst=1, clock=FakeClock())
    limiter.when("a")
    limiter.forget("a")
    assert limiter.when("a") == pytest.approx(1.0)


def test_max_of_takes_longest_and_records_everywhere() -> None:
    fast_slow = ItemFastSlowRateLimiter[str](0.5, 30.0, 2)
    exponential = ItemExponentialFailureRateLimiter[str](0.1, 100.0)
    limiter = MaxOfRateLimiter[str](fast_slow, exponential)
    assert [limiter.when("a") for _ in range(4)] == pytest.approx([0.5, 0.5, 30.0, 30.0])
    assert exponential.num_requeues("a") == 4
    assert limiter.when("a") == pytest.approx(30.0)
    assert limiter.num_requeues("a") == 5
    limiter.forget("a")
    assert fast_slow.num_requeues("a") == 0
    assert exponential.num_requeues("a") == 0


def test_default_controller_limiter() -> None:
    clock = FakeClock()
    limiter: RateLimiter[str] = default_controller_rate_limiter(clock=clock)
    assert [limiter.when("a") for _ in range(3)] == pytest.approx([0.005, 0.01, 0.02])
    assert limiter.num_requeues("a") == 3
    # 97 more failures spend the burst of 100; the 101st waits for the 10 qps bucket.
    for i in range(97):
        limiter.when(f"k{i}")
    assert limiter.when("fresh") == pytest.approx(0.1)


def test_default_limiter_exponential_cap() -> None:
    default = default_controller_rate_limiter(clock=FakeClock())
    assert isinstance(default.limiters[0], ItemExponentialFailureRateLimiter)
    assert default.limiters[0].base_delay == 0.005
    assert default.limiters[0].max_delay == 1000.0
    assert isinstance(default.limiters[1], BucketRateLimiter)
    assert (default.limiters[1].bucket.qps, default.limiters[1].bucket.burst) == (10.0, 100)


def test_token_bucket_reserve() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=2.0, burst=1, clock=clock)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)
    assert bucket.reserve() == pytest.approx(1.0)
    clock.advance(1.0)
    assert bucket.reserve() == pytest.approx(0.5)


async def test_token_bucket_acquire_in_virtual_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=10.0, burst=2, clock=clock)
    finished: list[tuple[int, float]] = []

    async def worker(i: int) -> None:
        await bucket.acquire()
        finished.append((i, clock.now() - 1000.0))

    tasks = [asyncio.create_task(worker(i)) for i in range(5)]
    await settle_loop()
    assert [i for i, _ in finished] == [0, 1]  # the burst
    await clock.step(0.15)
    assert [i for i, _ in finished] == [0, 1, 2]
    await clock.step(0.2)
    await asyncio.gather(*tasks)
    assert [i for i, _ in finished] == [0, 1, 2, 3, 4]
    assert [t for _, t in finished] == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])


async def test_token_bucket_acquire_returns_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=4.0, burst=1, clock=clock)
    assert await bucket.acquire() == 0.0
    task = asyncio.create_task(bucket.acquire())
    await clock.step(1.0)
    assert task.result() == pytest.approx(0.25)


async def test_token_bucket_cancelled_newest_acquire_refunds() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=1.0, burst=1, clock=clock)
    bucket.reserve()
    task = asyncio.create_task(bucket.acquire())
    await settle_loop()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bucket.reserve() == pytest.approx(1.0)  # not 2.0: the cancelled token came back


@pytest.mark.parametrize("qps", [pytest.param(0.0, id="zero"), pytest.param(-1.0, id="negative")])
async def test_token_bucket_unlimited(qps: float) -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=qps, burst=0, clock=clock)
    assert all(bucket.reserve() == 0.0 for _ in range(1000))
    assert await bucket.acquire() == 0.0
    assert clock.sleepers == 0


def test_token_bucket_rejects_zero_burst() -> None:
    with pytest.raises(ValueError):
        TokenBucket(qps=1.0, burst=0, clock=FakeClock())


def test_limiters_satisfy_protocol() -> None:
    limiters: list[RateLimiter[Hashable]] = [
        ItemExponentialFailureRateLimiter[Hashable](),
        ItemFastSlowRateLimiter[Hashable](0.1, 1.0, 1),
        BucketRateLimiter(clock=FakeClock()),
        default_controller_rate_limiter(clock=FakeClock()),
    ]
    assert all(limiter.when(("ns", "name")) >= 0 for limiter in limiters)
