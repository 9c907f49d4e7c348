"""The hold queue in virtual time: bounded, released first come first, deadlines."""

from __future__ import annotations

import asyncio

import pytest

from kaito.gateway.holding import HoldQueue, HoldTimeout, QueueFull
from kaito.runtime.clock import FakeClock, settle_loop


async def test_released_in_arrival_order() -> None:
    clock = FakeClock()
    queue = HoldQueue(max_queue=5, clock=clock)
    order: list[int] = []

    async def held(i: int) -> None:
        await queue.wait(queue.admit(), deadline=clock.now() + 60)
        order.append(i)

    tasks = [asyncio.create_task(held(i)) for i in range(4)]
    await settle_loop()
    assert len(queue) == 4
    assert queue.release() == 4
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert len(queue) == 0


async def test_full_queue_refuses() -> None:
    queue = HoldQueue(max_queue=1, clock=FakeClock())
    queue.admit()
    with pytest.raises(QueueFull):
        queue.admit()


async def test_deadline_ends_the_wait_and_frees_the_place() -> None:
    clock = FakeClock()
    queue = HoldQueue(max_queue=1, clock=clock)
    waiting = asyncio.create_task(queue.wait(queue.admit(), deadline=clock.now() + 30))
    await clock.step(29)
    assert not waiting.done()
    await clock.step(1)
    with pytest.raises(HoldTimeout):
        await waiting
    assert len(queue) == 0
    queue.admit()  # the place is free again
