"""Controllers on a manager against the simulated cluster: the example controller, retries, requeues, sharing."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from kaito.runtime import errors
from kaito.runtime.builder import Builder
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.clock import FakeClock
from kaito.runtime.controller import Controller
from kaito.runtime.handler import generation_changed
from kaito.runtime.kinds import CONFIG_MAP, DEPLOYMENT
from kaito.runtime.manager import Manager, ManagerOptions
from kaito.runtime.metrics import RuntimeMetrics
from kaito.runtime.objects import Obj, ObjectKey
from kaito.runtime.ratelimit import ItemExponentialFailureRateLimiter
from kaito.runtime.reconcile import Result, TerminalError
from kaito_sim.server import SimServer
from tests.runtime.conftest import eventually
from tests.runtime.example_controller import COPY_LABEL, setup


def configmap(namespace: str, name: str, *, labels: dict[str, str] | None = None, **data: str) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace, "labels": labels or {}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def options(namespace: str) -> ManagerOptions:
    return ManagerOptions(metrics_address=None, health_address=None, namespace=namespace)


@asynccontextmanager
async def running(manager: Manager) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        await asyncio.wait_for(manager.elected.wait(), 10)
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def sample(manager: Manager, metric: str, **labels: str) -> float:
    """A sample from the manager's own metrics, which no other test records into."""
    return manager.metrics.registry.get_sample_value(metric, labels) or 0.0


async def test_example_controller_copies_and_repairs(kclient: Client, namespace: str) -> None:
    manager = Manager(kclient, options=options(namespace), metrics=RuntimeMetrics())
    copier, _ = setup(manager)
    async with running(manager):
        await kclient.create(CONFIG_MAP, configmap(namespace, "app", labels={COPY_LABEL: "yes"}, greeting="hi"))

        async def copy_data() -> dict[str, str] | None:
            copy = await errors.ignore_not_found(kclient.get(CONFIG_MAP, "app-copy", namespace=namespace))
            return None if copy is None else dict(copy.get("data") or {})

        await until(copy_data, {"greeting": "hi"})
        await kclient.patch(CONFIG_MAP, "app", {"data": {"greeting": "hello"}}, namespace=namespace)
        await until(copy_data, {"greeting": "hello"})
        # Someone edits the copy by hand: the owner watch brings the source back to reconcile it.
        await kclient.patch(CONFIG_MAP, "app-copy", {"data": {"greeting": "tampered"}}, namespace=namespace)
        await until(copy_data, {"greeting": "hello"})
        await kclient.patch(CONFIG_MAP, "app", {"metadata": {"labels": {COPY_LABEL: None}}}, namespace=namespace)
        await until(copy_data, None)
        await kclient.create(CONFIG_MAP, configmap(namespace, "unlabelled", x="1"))
        await asyncio.sleep(0.3)
    assert ObjectKey(namespace, "unlabelled") not in copier.reconciled
    assert sample(manager, "controller_runtime_reconcile_total", controller="configmap-copier", result="success") >= 4


async def until(read: Callable[[], Awaitable[object]], expected: object, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (value := await read()) != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"expected {expected!r}, still {value!r}")
        await asyncio.sleep(0.02)


async def test_failing_reconcile_retries_with_growing_delays(kclient: Client, namespace: str) -> None:
    clock = FakeClock()
    manager = Manager(kclient, options=options(namespace), clock=clock, metrics=RuntimeMetrics())
    attempts: list[float] = []

    async def reconcile(key: ObjectKey) -> Result:
        attempts.append(clock.now())
        if len(attempts) <= 4:
            raise errors.ServerError(500, reason="InternalError", message="flaky")
        return Result()

    Builder(manager, "retry-growing").for_(CONFIG_MAP).complete(reconcile)
    async with running(manager):
        await kclient.create(CONFIG_MAP, configmap(namespace, "a"))
        await eventually(lambda: len(attempts) == 1)
        for _ in range(10):
            await clock.step(0.1)
    gaps = [round(b - a, 4) for a, b in itertools.pairwise(attempts)]
    assert gaps == [0.005, 0.01, 0.02, 0.04]
    assert sample(manager, "controller_runtime_reconcile_errors_total", controller="retry-growing") == 4
    assert sample(manager, "controller_runtime_reconcile_total", controller="retry-growing", result="success") == 1
    assert sample(manager, "workqueue_retries_total", name="retry-growing") == 4


async def test_requeue_after_fires_after_the_delay(kclient: Client, namespace: str) -> None:
    clock = FakeClock()
    manager = Manager(kclient, options=options(namespace), clock=clock, metrics=RuntimeMetrics())
    attempts: list[float] = []

    async def reconcile(key: ObjectKey) -> Result:
        attempts.append(clock.now())
        return Result(requeue_after=30.0)

    Builder(manager, "requeue-after").for_(CONFIG_MAP).complete(reconcile)
    async with running(manager):
        await kclient.create(CONFIG_MAP, configmap(namespace, "a"))
        await eventually(lambda: len(attempts) == 1)
        await clock.step(29.9)
        assert len(attempts) == 1
        await clock.step(0.2)
        await eventually(lambda: len(attempts) == 2)
    assert attempts[1] - attempts[0] == pytest.approx(30.0)
    assert (
        sample(manager, "controller_runtime_reconcile_total", controller="requeue-after", result="requeue_after") >= 2
    )


async def test_terminal_error_is_counted_not_retried(kclient: Client, namespace: str) -> None:
    clock = FakeClock()
    manager = Manager(kclient, options=options(namespace), clock=clock, metrics=RuntimeMetrics())
    attempts: list[ObjectKey] = []

    async def reconcile(key: ObjectKey) -> Result:
        attempts.append(key)
        raise TerminalError("spec.model: unknown preset")

    Builder(manager, "terminal").for_(CONFIG_MAP).complete(reconcile)
    async with running(manager):
        await kclient.create(CONFIG_MAP, configmap(namespace, "a"))
        await eventually(lambda: len(attempts) == 1)
        await clock.step(2000)
        await asyncio.sleep(0.1)
    assert len(attempts) == 1
    assert sample(manager, "controller_runtime_terminal_reconcile_errors_total", controller="terminal") == 1


async def test_conflict_is_a_quiet_requeue_and_a_panic_keeps_the_worker(kclient: Client, namespace: str) -> None:
    manager = Manager(kclient, options=options(namespace), metrics=RuntimeMetrics())
    seen: list[str] = []

    async def reconcile(key: ObjectKey) -> Result:
        seen.append(key.name)
        if key.name == "conflicted" and seen.count("conflicted") == 1:
            raise errors.Conflict(409, reason="Conflict", message="the object has been modified")
        if key.name == "buggy" and seen.count("buggy") == 1:
            raise KeyError("spec")
        return Result()

    Builder(manager, "conflicts").for_(CONFIG_MAP).complete(reconcile)
    async with running(manager):
        for name in ("conflicted", "buggy", "fine"):
            await kclient.create(CONFIG_MAP, configmap(namespace, name))
        await eventually(lambda: seen.count("conflicted") == 2 and seen.count("buggy") == 2 and "fine" in seen)
    assert sample(manager, "controller_runtime_reconcile_errors_total", controller="conflicts") == 1
    assert sample(manager, "controller_runtime_reconcile_panics_total", controller="conflicts") == 1
    assert sample(manager, "controller_runtime_reconcile_total", controller="conflicts", result="requeue") == 1


async def test_workers_run_concurrently_but_never_on_one_key(kclient: Client, namespace: str) -> None:
    manager = Manager(kclient, options=options(namespace), metrics=RuntimeMetrics())
    active: set[str] = set()
    peak = 0
    overlaps: list[str] = []
    release = asyncio.Event()

    async def reconcile(key: ObjectKey) -> Result:
        nonlocal peak
        if key.name in active:
            overlaps.append(key.name)
        active.add(key.name)
        peak = max(peak, len(active))
        await release.wait()
        active.discard(key.name)
        return Result()

    Builder(manager, "concurrent").for_(CONFIG_MAP).with_options(max_concurrent_reconciles=3).complete(reconcile)
    async with running(manager):
        for i in range(5):
            await kclient.create(CONFIG_MAP, configmap(namespace, f"c{i}"))
        await eventually(lambda: peak == 3)
        assert sample(manager, "controller_runtime_active_workers", controller="concurrent") == 3
        await kclient.patch(CONFIG_MAP, "c0", {"data": {"x": "1"}}, namespace=namespace)
        await asyncio.sleep(0.2)
        release.set()
        await eventually(lambda: not active and manager.controllers[0].queue.processing_count == 0)
    assert overlaps == []
    assert sample(manager, "controller_runtime_max_concurrent_reconciles", controller="concurrent") == 3


async def test_two_controllers_share_one_informer(sim: SimServer, kclient: Client, namespace: str) -> None:
    manager = Manager(kclient, options=options(namespace))
    first: list[ObjectKey] = []
    second: list[ObjectKey] = []

    async def record_first(key: ObjectKey) -> None:
        first.append(key)

    async def record_second(key: ObjectKey) -> None:
        second.append(key)

    Builder(manager, "share-a").for_(CONFIG_MAP).complete(record_first)
    Builder(manager, "share-b").for_(CONFIG_MAP).complete(record_second)
    async with running(manager):
        await kclient.create(CONFIG_MAP, configmap(namespace, "shared"))
        await eventually(lambda: bool(first) and bool(second))
    watches = [r for r in sim.requests if r.is_watch and r.path.endswith("/configmaps")]
    assert len(watches) == 1
    assert first == second == [ObjectKey(namespace, "shared")]


async def test_generation_predicate_ignores_status_only_changes(kclient: Client, namespace: str) -> None:
    manager = Manager(kclient, options=options(namespace))
    seen: list[ObjectKey] = []

    async def reconcile(key: ObjectKey) -> None:
        seen.append(key)

    Builder(manager, "spec-only").for_(DEPLOYMENT, generation_changed).complete(reconcile)
    deployment: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }
    async with running(manager):
        await kclient.create(DEPLOYMENT, deployment)
        await eventually(lambda: len(seen) == 1)
        await kclient.patch_status(DEPLOYMENT, "web", {"status": {"observedGeneration": 1}}, namespace=namespace)
        await asyncio.sleep(0.3)
        assert len(seen) == 1
        await kclient.patch(DEPLOYMENT, "web", {"spec": {"replicas": 3}}, namespace=namespace)
        await eventually(lambda: len(seen) == 2)


async def test_custom_rate_limiter(kclient: Client, namespace: str) -> None:
    clock = FakeClock()
    manager = Manager(kclient, options=options(namespace), clock=clock)
    attempts: list[float] = []

    async def reconcile(key: ObjectKey) -> Result:
        attempts.append(clock.now())
        return Result(requeue=True) if len(attempts) < 3 else Result()

    limiter: ItemExponentialFailureRateLimiter[ObjectKey] = ItemExponentialFailureRateLimiter(1.0, 60.0)
    Builder(manager, "custom-limiter").for_(CONFIG_MAP).with_options(rate_limiter=limiter).complete(reconcile)
    async with running(manager):
        await kclient.create(CONFIG_MAP, configmap(namespace, "a"))
        await eventually(lambda: len(attempts) == 1)
        await clock.step(5)
        await eventually(lambda: len(attempts) == 3)
    assert [round(b - a, 3) for a, b in itertools.pairwise(attempts)] == [1.0, 2.0]


async def test_a_worker_hands_the_loop_back_between_reconciles(kclient: Client) -> None:
    """Reconciles that never suspend must not hold the loop for a whole queue (probes and leases starve)."""
    done: list[ObjectKey] = []
    seen_by_others: list[int] = []

    async def reconcile(key: ObjectKey) -> Result:
        done.append(key)  # reads only: nothing here suspends
        return Result()

    controller = Controller("busy", reconcile, cache=Cache(kclient), metrics=RuntimeMetrics())
    for index in range(50):
        controller.queue.add(ObjectKey("ns", f"k{index}"))
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    while len(done) < 50:
        seen_by_others.append(len(done))
        await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(set(seen_by_others)) > 25, f"the loop came back only at {sorted(set(seen_by_others))}"
