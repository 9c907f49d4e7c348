"""Children are applied once per state: not again while the cache has yet to show our own write."""

from __future__ import annotations

import asyncio
import copy

from kaito.controllers.apply import CATCH_UP_S, Applier
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.clock import FakeClock
from kaito.runtime.kinds import CONFIG_MAP
from kaito.runtime.objects import Obj
from kaito_sim.server import SimServer
from tests.runtime.test_informer import GatedClient


def configmap(namespace: str, **data: str) -> Obj:
    meta = {"name": "engine", "namespace": namespace}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def writes(sim: SimServer) -> int:
    return sum(1 for r in sim.requests if r.is_write and "/configmaps/engine" in r.path)


async def test_a_write_the_cache_has_not_shown_yet_is_not_repeated_within_the_catch_up_window(
    sim: SimServer, kclient: Client, namespace: str
) -> None:
    reader = GatedClient(kclient)
    reader.gate.clear()  # the cache lists, then its watch waits: what it shows after that, the test decides
    cache = Cache(reader, default_namespace=namespace)
    store = cache.informer(CONFIG_MAP).store
    stop = asyncio.Event()
    running = asyncio.create_task(cache.run(stop))
    await cache.wait_for_sync()
    clock = FakeClock()
    applier = Applier(kclient, cache, clock=clock)

    assert await applier.ensure(CONFIG_MAP, configmap(namespace, a="1")) is None
    assert writes(sim) == 1
    assert await applier.ensure(CONFIG_MAP, configmap(namespace, a="1")) == CATCH_UP_S  # in flight: trusted
    assert writes(sim) == 1

    clock.advance(CATCH_UP_S)  # the cache never showed it: look again, and write
    assert await applier.ensure(CONFIG_MAP, configmap(namespace, a="1")) is None
    assert writes(sim) == 2

    stored = await kclient.get(CONFIG_MAP, "engine", namespace=namespace)
    store.upsert(copy.deepcopy(stored))  # the cache catches up
    assert await applier.ensure(CONFIG_MAP, configmap(namespace, a="1")) is None
    assert writes(sim) == 2

    assert await applier.ensure(CONFIG_MAP, configmap(namespace, a="2")) is None  # a new state is written at once
    assert writes(sim) == 3
    assert await applier.ensure(CONFIG_MAP, configmap(namespace, a="2")) is not None  # over the same old version
    assert writes(sim) == 3

    changed = copy.deepcopy(stored)
    changed["metadata"]["resourceVersion"] = "999999"  # someone else's change reaches the cache: compare afresh
    store.upsert(changed)
    assert await applier.ensure(CONFIG_MAP, configmap(namespace, a="2")) is None
    assert writes(sim) == 4
    stop.set()
    reader.gate.set()
    await asyncio.wait_for(running, 10)
