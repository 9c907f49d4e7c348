"""Informers against the simulated API server: events in order, relist on 410 with tombstones, slow handlers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from kaito.runtime import mutation
from kaito.runtime.client import Client, WatchEvent
from kaito.runtime.informer import Event, EventType, Informer, Selectors
from kaito.runtime.kinds import CONFIG_MAP, Kind
from kaito.runtime.objects import Obj
from kaito_sim.server import SimServer
from tests.runtime.conftest import eventually


def configmap(namespace: str, name: str, **data: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


class GatedClient(Client):
    """A client whose new watches wait for `gate`: lets a test make changes while the informer is away."""

    def __init__(self, inner: Client) -> None:
        super().__init__(inner.api_client, qps=0, burst=0)
        self.gate = asyncio.Event()
        self.gate.set()
        self.watch_calls = 0

    async def watch(self, kind: Kind, **options: object) -> AsyncGenerator[WatchEvent, None]:
        self.watch_calls += 1
        await self.gate.wait()
        async for event in super().watch(kind, **options):  # type: ignore[arg-type]
            yield event


@asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop))
    try:
        await asyncio.wait_for(informer.wait_for_sync(), 10)
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def summary(events: list[Event]) -> list[tuple[str, str]]:
    return [(event.type.value, event.obj["metadata"]["name"]) for event in events]


async def test_informer_sees_creates_updates_deletes_in_order(kclient: Client, namespace: str) -> None:
    await kclient.create(CONFIG_MAP, configmap(namespace, "before", a="1"))
    informer = Informer(kclient, CONFIG_MAP, selectors=Selectors(namespace=namespace))
    events: list[Event] = []
    informer.add_handler(events.append)
    async with running(informer):
        await kclient.create(CONFIG_MAP, configmap(namespace, "x", a="1"))
        await kclient.patch(CONFIG_MAP, "x", {"data": {"a": "2"}}, namespace=namespace)
        await kclient.delete(CONFIG_MAP, "x", namespace=namespace)
        await eventually(lambda: len(events) == 4, message=f"events: {summary(events)}")
    assert summary(events) == [("ADDED", "before"), ("ADDED", "x"), ("MODIFIED", "x"), ("DELETED", "x")]
    assert events[0].initial and not events[1].initial
    modified = events[2]
    assert modified.old is not None and modified.old["data"] == {"a": "1"} and modified.obj["data"] == {"a": "2"}
    assert informer.store.keys() == [f"{namespace}/before"]


async def test_store_reads_are_shared_and_a_mutation_is_detected(kclient: Client, namespace: str) -> None:
    await kclient.create(CONFIG_MAP, configmap(namespace, "c", a="1"))
    informer = Informer(kclient, CONFIG_MAP, selectors=Selectors(namespace=namespace), detect_mutations=True)
    async with running(informer):
        got = informer.store.get(f"{namespace}/c")
        assert got is not None and informer.store.get(f"{namespace}/c") is got
        assert informer.store.check_mutations() == []
        got["data"]["a"] = "changed locally"
        found = informer.store.check_mutations()
    assert [m.key for m in found] == [f"{namespace}/c"]
    assert [m.key for m in mutation.clear()] == [f"{namespace}/c"]


async def test_label_selector_bounds_what_is_cached(kclient: Client, namespace: str) -> None:
    wanted = configmap(namespace, "wanted")
    wanted["metadata"]["labels"] = {"team": "ml"}
    await kclient.create(CONFIG_MAP, wanted)
    await kclient.create(CONFIG_MAP, configmap(namespace, "other"))
    informer = Informer(kclient, CONFIG_MAP, selectors=Selectors(namespace=namespace, label_selector="team=ml"))
    async with running(informer):
        assert informer.store.keys() == [f"{namespace}/wanted"]


async def test_label_selector_watch_keeps_the_store_to_what_matches(kclient: Client, namespace: str) -> None:
    informer = Informer(kclient, CONFIG_MAP, selectors=Selectors(namespace=namespace, label_selector="team"))
    async with running(informer):
        await kclient.create(CONFIG_MAP, configmap(namespace, "plain"))
        await kclient.patch(CONFIG_MAP, "plain", {"metadata": {"labels": {"team": "ml"}}}, namespace=namespace)
        await eventually(lambda: informer.store.keys() == [f"{namespace}/plain"])
        await kclient.patch(CONFIG_MAP, "plain", {"metadata": {"labels": {"team": None}}}, namespace=namespace)
        await eventually(lambda: informer.store.keys() == [], message="an object that stops matching leaves")


async def test_expired_watch_relists_without_losing_or_duplicating(
    sim: SimServer, kclient: Client, namespace: str
) -> None:
    for name in ("keep", "change", "remove"):
        await kclient.create(CONFIG_MAP, configmap(namespace, name, v="1"))
    gated = GatedClient(kclient)
    informer = Informer(gated, CONFIG_MAP, selectors=Selectors(namespace=namespace), relist_backoff=(0.01, 0.05))
    events: list[Event] = []
    informer.add_handler(events.append)
    async with running(informer):
        await eventually(lambda: sim.open_watches == 1)
        # Hold the next watch, end the current one, and change things while the informer is away.
        gated.gate.clear()
        sim.set_history_size(2)
        sim.close_watches()
        await eventually(lambda: gated.watch_calls == 2)
        await kclient.patch(CONFIG_MAP, "change", {"data": {"v": "2"}}, namespace=namespace)
        await kclient.delete(CONFIG_MAP, "remove", namespace=namespace)
        await kclient.create(CONFIG_MAP, configmap(namespace, "new", v="1"))
        for i in range(5):  # push the informer's resourceVersion out of the server's window
            await kclient.create(CONFIG_MAP, configmap("default", f"filler-{namespace}-{i}"))
        lists_before = sum(1 for r in sim.requests if r.method == "GET" and not r.is_watch and "configmaps" in r.path)
        gated.gate.set()
        await eventually(lambda: informer.relists == 1, message="no relist after 410")
        await eventually(lambda: len(events) == 6, message=f"events: {summary(events)}")
        lists_after = sum(1 for r in sim.requests if r.method == "GET" and not r.is_watch and "configmaps" in r.path)
    initial, after = events[:3], events[3:]
    assert all(event.initial for event in initial)
    assert sorted(summary(after)) == [("ADDED", "new"), ("DELETED", "remove"), ("MODIFIED", "change")]
    tombstone = next(event for event in after if event.type is EventType.DELETED)
    assert tombstone.tombstone and tombstone.obj["metadata"]["name"] == "remove"
    assert sorted(informer.store.keys()) == sorted(f"{namespace}/{n}" for n in ("keep", "change", "new"))
    assert lists_after == lists_before + 1


async def test_stream_end_resumes_watch_without_relisting(sim: SimServer, kclient: Client, namespace: str) -> None:
    informer = Informer(kclient, CONFIG_MAP, selectors=Selectors(namespace=namespace), relist_backoff=(0.01, 0.05))
    events: list[Event] = []
    informer.add_handler(events.append)
    async with running(informer):
        await kclient.create(CONFIG_MAP, configmap(namespace, "a"))
        await eventually(lambda: len(events) == 1 and sim.open_watches == 1)
        sim.close_watches()
        await kclient.create(CONFIG_MAP, configmap(namespace, "b"))
        await eventually(lambda: len(events) == 2, message=f"events: {summary(events)}")
    assert summary(events) == [("ADDED", "a"), ("ADDED", "b")]
    assert informer.relists == 0


async def test_slow_handler_does_not_block_others(kclient: Client, namespace: str) -> None:
    informer = Informer(kclient, CONFIG_MAP, selectors=Selectors(namespace=namespace))
    release = asyncio.Event()
    fast: list[Event] = []
    slow: list[Event] = []

    async def slow_handler(event: Event) -> None:
        await release.wait()
        slow.append(event)

    informer.add_handler(slow_handler)
    informer.add_handler(fast.append)
    async with running(informer):
        for name in ("a", "b", "c"):
            await kclient.create(CONFIG_MAP, configmap(namespace, name))
        await eventually(lambda: len(fast) == 3)
        assert slow == []
        release.set()
        await eventually(lambda: len(slow) == 3)
    assert summary(slow) == summary(fast)


async def test_failing_handler_keeps_receiving(kclient: Client, namespace: str) -> None:
    informer = Informer(kclient, CONFIG_MAP, selectors=Selectors(namespace=namespace))
    seen: list[str] = []

    def flaky(event: Event) -> None:
        seen.append(event.obj["metadata"]["name"])
        if len(seen) == 1:
            raise RuntimeError("handler bug")

    informer.add_handler(flaky)
    async with running(informer):
        await kclient.create(CONFIG_MAP, configmap(namespace, "a"))
        await kclient.create(CONFIG_MAP, configmap(namespace, "b"))
        await eventually(lambda: seen == ["a", "b"], message=f"seen: {seen}")


async def test_late_handler_gets_current_objects_replayed(kclient: Client, namespace: str) -> None:
    await kclient.create(CONFIG_MAP, configmap(namespace, "existing"))
    informer = Informer(kclient, CONFIG_MAP, selectors=Selectors(namespace=namespace))
    async with running(informer):
        late: list[Event] = []
        informer.add_handler(late.append)
        await eventually(lambda: len(late) == 1)
        await kclient.create(CONFIG_MAP, configmap(namespace, "after"))
        await eventually(lambda: len(late) == 2)
    assert summary(late) == [("ADDED", "existing"), ("ADDED", "after")]
    assert late[0].initial and not late[1].initial


async def test_large_objects_arrive_through_the_watch(kclient: Client, namespace: str) -> None:
    informer = Informer(kclient, CONFIG_MAP, selectors=Selectors(namespace=namespace))
    events: list[Event] = []
    informer.add_handler(events.append)
    big = "x" * 600_000  # far beyond aiohttp's default line buffer
    async with running(informer):
        await kclient.create(CONFIG_MAP, configmap(namespace, "big", blob=big))
        await eventually(lambda: len(events) == 1)
    assert events[0].obj["data"]["blob"] == big
