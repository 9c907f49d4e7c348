"""Work queue invariants, one test each: dedup, single holder, no lost update, delays, shutdown, metrics."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kaito.runtime.clock import FakeClock, settle_loop
from kaito.runtime.metrics import RuntimeMetrics
from kaito.runtime.ratelimit import ItemExponentialFailureRateLimiter
from kaito.runtime.workqueue import DelayingQueue, RateLimitingQueue, ShutDown, WorkQueue


def drain(queue: WorkQueue[str]) -> list[str]:
    items: list[str] = []
    while (item := queue.get_nowait()) is not None:
        items.append(item)
    return items


def test_add_dedups() -> None:
    queue = WorkQueue[str]()
    for item in ("a", "b", "a", "a", "b"):
        queue.add(item)
    assert len(queue) == 2
    assert drain(queue) == ["a", "b"]


def test_fifo_order() -> None:
    queue = WorkQueue[str]()
    for item in ("c", "a", "b"):
        queue.add(item)
    assert drain(queue) == ["c", "a", "b"]


def test_add_while_processing_requeues_after_done() -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    assert queue.get_nowait() == "a"
    queue.add("a")
    assert len(queue) == 0  # not before done(): the worker still holds it
    assert queue.get_nowait() is None
    queue.done("a")
    assert len(queue) == 1
    assert queue.get_nowait() == "a"


def test_collapse_while_processing() -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    queue.get_nowait()
    for _ in range(5):
        queue.add("a")
    queue.done("a")
    assert drain(queue) == ["a"]


def test_never_two_holders() -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    queue.add("b")
    assert queue.get_nowait() == "a"
    queue.add("a")
    assert queue.get_nowait() == "b"
    assert queue.get_nowait() is None
    assert queue.is_processing("a")
    assert queue.processing_count == 2


def test_done_without_dirty_forgets() -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    queue.get_nowait()
    queue.done("a")
    assert not queue.is_processing("a")
    assert len(queue) == 0
    assert queue.get_nowait() is None


def test_done_of_unknown_item_is_ignored() -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    queue.done("a")  # queued, not processing: must not queue a second copy
    assert drain(queue) == ["a"]


def test_shutdown_drops_adds() -> None:
    queue = DelayingQueue[str](clock=FakeClock())
    queue.add("a")
    queue.shut_down()
    queue.add("b")
    queue.add_after("c", 0)
    assert queue.shutting_down
    assert drain_until_shutdown(queue) == ["a"]


def drain_until_shutdown(queue: WorkQueue[str]) -> list[str]:
    items: list[str] = []
    with pytest.raises(ShutDown):
        while True:
            item = queue.get_nowait()
            assert item is not None
            items.append(item)
    return items


async def test_shutdown_hands_out_remaining_then_raises() -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    queue.add("b")
    queue.shut_down()
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    with pytest.raises(ShutDown):
        await queue.get()


def test_shutdown_requeues_item_dirtied_before_shutdown() -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    queue.get_nowait()
    queue.add("a")
    queue.shut_down()
    queue.done("a")
    assert drain_until_shutdown(queue) == ["a"]


async def test_blocked_get_wakes_on_shutdown() -> None:
    queue = WorkQueue[str]()
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await settle_loop()
    assert not any(task.done() for task in getters)
    queue.shut_down()
    results = await asyncio.wait_for(asyncio.gather(*getters, return_exceptions=True), 1.0)
    assert all(isinstance(result, ShutDown) for result in results)


async def test_shutdown_with_drain_waits_for_processing() -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    queue.add("b")
    first, second = await queue.get(), await queue.get()
    drain_task = asyncio.create_task(queue.shut_down_with_drain())
    await settle_loop()
    assert queue.shutting_down
    queue.done(first)
    await settle_loop()
    assert not drain_task.done()
    queue.done(second)
    await asyncio.wait_for(drain_task, 1.0)


async def test_shutdown_with_drain_returns_at_once_when_idle() -> None:
    queue = WorkQueue[str]()
    await asyncio.wait_for(queue.shut_down_with_drain(), 1.0)
    assert queue.shutting_down


def test_add_after_earliest_wins() -> None:
    clock = FakeClock()
    queue = DelayingQueue[str](clock=clock)
    queue.add_after("a", 10.0)
    queue.add_after("a", 2.0)
    assert queue.ready_at("a") == clock.now() + 2.0
    clock.advance(2.0)
    assert queue.get_nowait() == "a"
    assert queue.waiting_count == 0


def test_add_after_later_does_not_push_back() -> None:
    clock = FakeClock()
    queue = DelayingQueue[str](clock=clock)
    queue.add_after("a", 2.0)
    queue.add_after("a", 10.0)
    clock.advance(1.999)
    assert len(queue) == 0
    clock.advance(0.001)
    assert drain(queue) == ["a"]
    clock.advance(10.0)
    assert len(queue) == 0  # the later request was folded into the earlier one


def test_add_after_zero_is_immediate() -> None:
    queue = DelayingQueue[str](clock=FakeClock())
    queue.add_after("a", 0)
    queue.add_after("b", -1.0)
    assert drain(queue) == ["a", "b"]


def test_delayed_items_come_out_in_deadline_order() -> None:
    clock = FakeClock()
    queue = DelayingQueue[str](clock=clock)
    queue.add_after("late", 3.0)
    queue.add_after("early", 1.0)
    queue.add_after("mid", 2.0)
    clock.advance(5.0)
    queue.add("now")
    assert drain(queue) == ["early", "mid", "late", "now"]


def test_shutdown_drops_delayed_items() -> None:
    clock = FakeClock()
    queue = DelayingQueue[str](clock=clock)
    queue.add_after("a", 1.0)
    queue.shut_down()
    clock.advance(2.0)
    with pytest.raises(ShutDown):
        queue.get_nowait()


async def test_get_wakes_when_delay_elapses() -> None:
    clock = FakeClock()
    queue = DelayingQueue[str](clock=clock)
    queue.add_after("a", 5.0)
    getter = asyncio.create_task(queue.get())
    await clock.step(4.9)
    assert not getter.done()
    await clock.step(0.1)
    assert getter.done()
    assert getter.result() == "a"


async def test_get_wakes_for_earlier_delay_added_while_waiting() -> None:
    clock = FakeClock()
    queue = DelayingQueue[str](clock=clock)
    queue.add_after("late", 60.0)
    getter = asyncio.create_task(queue.get())
    await settle_loop()
    queue.add_after("soon", 1.0)
    await clock.step(1.0)
    assert getter.done()
    assert getter.result() == "soon"


async def test_get_wakes_on_add() -> None:
    queue = WorkQueue[str]()
    getter = asyncio.create_task(queue.get())
    await settle_loop()
    assert not getter.done()
    queue.add("a")
    assert await asyncio.wait_for(getter, 1.0) == "a"


async def test_rate_limited_backoff_grows() -> None:
    clock = FakeClock()
    queue = RateLimitingQueue[str](clock=clock)
    start = clock.now()
    expected = [0.005, 0.01, 0.02, 0.04]
    for delay in expected:
        queue.add_rate_limited("a")
        getter = asyncio.create_task(queue.get())
        await clock.step(delay * 0.99)
        assert not getter.done()
        await clock.step(delay * 0.02)
        assert getter.result() == "a"
        queue.done("a")
    assert queue.num_requeues("a") == 4
    assert clock.now() - start == pytest.approx(sum(expected) * 1.01)


def test_forget_resets_backoff() -> None:
    clock = FakeClock()
    queue = RateLimitingQueue[str](ItemExponentialFailureRateLimiter(1.0, 100.0), clock=clock)
    for _ in range(3):
        queue.add_rate_limited("a")
    assert queue.num_requeues("a") == 3
    queue.forget("a")
    assert queue.num_requeues("a") == 0
    queue.add_rate_limited("b")
    queue.forget("b")
    queue.add_rate_limited("b")
    assert queue.ready_at("b") == clock.now() + 1.0


async def test_concurrent_getters_each_item_once() -> None:
    queue = WorkQueue[int]()
    seen: list[int] = []
    holding: set[int] = set()

    async def worker() -> None:
        while True:
            try:
                item = await queue.get()
            except ShutDown:
                return
            assert item not in holding
            holding.add(item)
            await asyncio.sleep(0)
            holding.discard(item)
            seen.append(item)
            queue.done(item)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    await settle_loop()
    for item in range(50):
        queue.add(item)
        queue.add(item % 5)
    await settle_loop(200)
    queue.shut_down()
    await asyncio.wait_for(asyncio.gather(*workers), 1.0)
    assert set(seen) == set(range(50))
    assert queue.processing_count == 0


def sample(metrics: RuntimeMetrics, metric: str, name: str) -> float | None:
    return metrics.registry.get_sample_value(metric, {"name": name})


def test_metrics_depth_and_adds() -> None:
    name = f"q-{uuid.uuid4().hex[:8]}"
    m = RuntimeMetrics()
    queue = WorkQueue[str](name=name, clock=FakeClock(), metrics=m)
    assert sample(m, "workqueue_depth", name) == 0
    queue.add("a")
    queue.add("b")
    queue.add("a")  # dedup'd: neither a new add nor a new depth
    assert sample(m, "workqueue_depth", name) == 2
    assert sample(m, "workqueue_adds_total", name) == 2
    queue.get_nowait()
    assert sample(m, "workqueue_depth", name) == 1


def test_metrics_durations() -> None:
    name = f"q-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    m = RuntimeMetrics()
    queue = WorkQueue[str](name=name, clock=clock, metrics=m)
    queue.add("a")
    clock.advance(3.0)
    queue.get_nowait()
    assert sample(m, "workqueue_queue_duration_seconds_sum", name) == pytest.approx(3.0)
    clock.advance(2.0)
    queue.update_unfinished_work()
    assert sample(m, "workqueue_unfinished_work_seconds", name) == pytest.approx(2.0)
    assert sample(m, "workqueue_longest_running_processor_seconds", name) == pytest.approx(2.0)
    queue.done("a")
    assert sample(m, "workqueue_work_duration_seconds_sum", name) == pytest.approx(2.0)
    assert sample(m, "workqueue_work_duration_seconds_count", name) == 1
    assert sample(m, "workqueue_unfinished_work_seconds", name) == 0


def test_metrics_retries() -> None:
    name = f"q-{uuid.uuid4().hex[:8]}"
    m = RuntimeMetrics()
    queue = RateLimitingQueue[str](name=name, clock=FakeClock(), metrics=m)
    queue.add_rate_limited("a")
    queue.add_rate_limited("a")
    assert sample(m, "workqueue_retries_total", name) == 2


def test_unnamed_queue_has_no_metrics() -> None:
    m = RuntimeMetrics()
    queue = WorkQueue[str](metrics=m)
    queue.add("a")
    assert sample(m, "workqueue_depth", "") is None
