"""Cached reads are shared, so a reconciler that mutates one is caught; label indexes keep reads narrow."""

from __future__ import annotations

import asyncio

from kaito.runtime import mutation
from kaito.runtime.builder import Builder
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.kinds import CONFIG_MAP
from kaito.runtime.manager import Manager, ManagerOptions
from kaito.runtime.metrics import RuntimeMetrics
from kaito.runtime.objects import ObjectKey, deep_copy
from kaito.runtime.reconcile import Result
from tests.runtime.conftest import eventually
from tests.runtime.test_controller import configmap, running, sample

PANICS = "controller_runtime_reconcile_panics_total"


def options(namespace: str) -> ManagerOptions:
    return ManagerOptions(metrics_address=None, health_address=None, namespace=namespace, detect_mutations=True)


async def test_a_reconciler_that_mutates_what_it_read_fails_and_is_reported(kclient: Client, namespace: str) -> None:
    manager = Manager(kclient, options=options(namespace), metrics=RuntimeMetrics())
    seen: list[ObjectKey] = []

    async def reconcile(key: ObjectKey) -> Result:
        seen.append(key)
        source = manager.cache.get(CONFIG_MAP, key.name, namespace=key.namespace)
        source["data"]["touched"] = "yes"  # the bug under test: writing into the shared cached object
        return Result()

    Builder(manager, "mutator").for_(CONFIG_MAP).complete(reconcile)
    async with running(manager):
        await kclient.create(CONFIG_MAP, configmap(namespace, "victim", a="1"))
        await eventually(lambda: sample(manager, PANICS, controller="mutator") >= 1)
    found = mutation.clear()
    assert {(m.store, m.key) for m in found} == {("configmaps", f"{namespace}/victim")}
    assert ObjectKey(namespace, "victim") in seen


async def test_a_reconciler_that_copies_before_changing_passes(kclient: Client, namespace: str) -> None:
    manager = Manager(kclient, options=options(namespace), metrics=RuntimeMetrics())
    done = asyncio.Event()

    async def reconcile(key: ObjectKey) -> Result:
        source = deep_copy(manager.cache.get(CONFIG_MAP, key.name, namespace=key.namespace))
        source["data"]["touched"] = "yes"
        done.set()
        return Result()

    Builder(manager, "copier").for_(CONFIG_MAP).complete(reconcile)
    async with running(manager):
        await kclient.create(CONFIG_MAP, configmap(namespace, "fine", a="1"))
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(0.05)
    assert sample(manager, PANICS, controller="copier") == 0
    assert mutation.detected() == []


async def test_cache_list_uses_a_label_index_and_counts_what_it_visits(kclient: Client, namespace: str) -> None:
    for i in range(20):
        await kclient.create(CONFIG_MAP, configmap(namespace, f"noise-{i}", labels={"app": f"n{i}"}))
    await kclient.create(CONFIG_MAP, configmap(namespace, "wanted", labels={"app": "web", "tier": "gpu"}))
    cache = Cache(kclient, default_namespace=namespace)
    cache.add_label_index(CONFIG_MAP, "app")
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    try:
        await cache.wait_for_sync()
        before = cache.objects_visited
        found = cache.list(CONFIG_MAP, namespace=namespace, labels={"app": "web", "tier": "gpu"})
        assert [o["metadata"]["name"] for o in found] == ["wanted"]
        assert cache.objects_visited - before == 1
        unindexed = cache.list(CONFIG_MAP, namespace=namespace, labels={"tier": "gpu"})
        assert [o["metadata"]["name"] for o in unindexed] == ["wanted"]
        assert cache.objects_visited - before == 1 + 21  # no index covers `tier`: the namespace is scanned
    finally:
        stop.set()
        await task


async def test_cached_objects_leave_out_managed_fields_which_the_server_keeps(kclient: Client, namespace: str) -> None:
    manager = Manager(kclient, options=options(namespace), metrics=RuntimeMetrics())
    informer = manager.cache.informer(CONFIG_MAP)
    await kclient.create(CONFIG_MAP, configmap(namespace, "listed", a="1"))  # arrives in the first list
    async with running(manager):
        await informer.wait_for_sync()
        await kclient.create(CONFIG_MAP, configmap(namespace, "watched", a="1"))  # arrives by watch
        await kclient.patch(CONFIG_MAP, "listed", {"data": {"a": "2"}}, namespace=namespace)

        def cached(name: str) -> bool:
            found = manager.cache.find(CONFIG_MAP, name, namespace=namespace)
            return found is not None and found["data"]["a"] == ("2" if name == "listed" else "1")

        await eventually(lambda: cached("listed") and cached("watched"))
        for name in ("listed", "watched"):
            assert "managedFields" not in manager.cache.get(CONFIG_MAP, name, namespace=namespace)["metadata"]
            assert (await kclient.get(CONFIG_MAP, name, namespace=namespace))["metadata"]["managedFields"]
