"""An informer: list, then watch from the list's resourceVersion, keeping a `Store` current and telling handlers.

A 410 Gone (the server's event window moved past us) or a broken stream leads to a relist after a
jittered backoff; the relist is diffed against the store, so handlers see each real change once and
deletes that happened while we were away arrive as tombstones. Every handler has its own buffer and
task, so a slow handler delays only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import aiohttp

from kaito.runtime import errors
from kaito.runtime.clock import REAL_CLOCK, Clock, sleep_until_stopped
from kaito.runtime.kinds import Kind
from kaito.runtime.mutation import MutationDetector
from kaito.runtime.objects import Obj, key_of, resource_version
from kaito.runtime.store import IndexFunc, Store
from kaito.runtime.tasks import Backoff

if TYPE_CHECKING:
    from kaito.runtime.client import Client, WatchEvent

log = logging.getLogger(__name__)
Transform = Callable[[Obj], Obj]  # edits an object as it arrives, before the cache and handlers see it


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Event:
    """What a handler receives. Objects are shared with the cache: handlers must not mutate them."""

    type: EventType
    obj: Obj
    old: Obj | None = None
    initial: bool = False  # part of the first list (or a replay for a late handler)
    tombstone: bool = False  # a delete inferred on relist; `obj` is the last state we saw


Handler = Callable[[Event], Awaitable[None] | None]


@dataclass(frozen=True)
class Selectors:
    """Server-side filters for one informer, to bound what it lists, watches and keeps."""

    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None


class _Listener:
    """One handler's ordered, unbounded buffer and the task draining it."""

    def __init__(self, handler: Handler, name: str) -> None:
        self.handler = handler
        self.name = name
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._drain(), name=self.name)

    async def _drain(self) -> None:
        while (event := await self.queue.get()) is not None:
            try:
                result = self.handler(event)
                if result is not None:
                    await result
            except Exception:
                log.exception("event handler %s failed on %s %s", self.name, event.type, key_of(event.obj))

    async def stop(self) -> None:
        self.queue.put_nowait(None)
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class Informer:
    """Keeps one kind's `Store` in step with the server and fans events out to handlers."""

    def __init__(
        self,
        client: Client,
        kind: Kind,
        *,
        selectors: Selectors | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        detect_mutations: bool = False,
        clock: Clock = REAL_CLOCK,
        relist_backoff: tuple[float, float] = (0.8, 30.0),
        watch_timeout: tuple[int, int] = (300, 600),
        page_size: int = 500,
        transform: Transform | None = None,
    ) -> None:
        """`transform` edits each object as it arrives, before the store and the handlers see it (it owns the
        object then: decoded from the wire for this informer alone)."""
        self.client = client
        self.kind = kind
        self._transform = transform
        self.selectors = selectors or Selectors()
        detector = MutationDetector(f"{kind.plural}.{kind.group}".rstrip(".")) if detect_mutations else None
        self.store = Store(indexers, detector=detector)
        self.clock = clock
        self._backoff = Backoff(initial=relist_backoff[0], cap=relist_backoff[1])
        self._watch_timeout = watch_timeout
        self._page_size = page_size
        self._listeners: list[_Listener] = []
        self._synced = asyncio.Event()
        self._running = False
        self.last_resource_version = ""
        self.relists = 0

    # ----- handlers and sync

    def add_handler(self, handler: Handler, *, name: str | None = None) -> None:
        """Subscribe; a handler added after the first list is first replayed the current objects as adds."""
        listener = _Listener(handler, name or f"informer-{self.kind.plural}-handler-{len(self._listeners)}")
        if self._synced.is_set():
            for obj in self.store.snapshot().values():
                listener.queue.put_nowait(Event(EventType.ADDED, obj, initial=True))
        self._listeners.append(listener)
        if self._running:
            listener.start()

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    # ----- the loop

    async def run(self, stop: asyncio.Event) -> None:
        """List and watch until `stop` is set; never returns early on API errors (they are retried)."""
        self._running = True
        for listener in self._listeners:
            if listener.task is None:
                listener.start()
        try:
            while not stop.is_set():
                try:
                    await self._list()
                    await self._watch_until_expired(stop)
                    continue
                except errors.Gone:
                    log.info(
                        "informer %s: resourceVersion %s expired, relisting",
                        self.kind.plural,
                        self.last_resource_version,
                    )
                except (TimeoutError, errors.ApiError, aiohttp.ClientError, OSError) as exc:
                    log.warning("informer %s: %s; retrying", self.kind.plural, exc)
                if await sleep_until_stopped(self.clock, self._backoff.next(), stop):
                    break
        finally:
            self._running = False
            for listener in self._listeners:
                await listener.stop()
                listener.task = None

    async def _list(self) -> None:
        sel = self.selectors
        result = await self.client.list_all(
            self.kind,
            namespace=sel.namespace,
            label_selector=sel.label_selector,
            field_selector=sel.field_selector,
            page_size=self._page_size,
        )
        transform = self._transform
        items = result.items if transform is None else [transform(obj) for obj in result.items]
        initial = not self._synced.is_set()
        if initial:
            for obj in items:
                self.store.upsert(obj)
                self._dispatch(Event(EventType.ADDED, obj, initial=True))
        else:
            self._apply_relist(items)
        self.relists += 0 if initial else 1
        self.last_resource_version = result.resource_version
        self._synced.set()

    def _apply_relist(self, items: list[Obj]) -> None:
        previous = self.store.snapshot()
        for tombstone in self.store.replace(items):
            self._dispatch(Event(EventType.DELETED, tombstone.obj, tombstone=True))
        for obj in items:
            old = previous.get(key_of(obj))
            if old is None:
                self._dispatch(Event(EventType.ADDED, obj))
            elif resource_version(old) != resource_version(obj):
                self._dispatch(Event(EventType.MODIFIED, obj, old=old))

    async def _watch_until_expired(self, stop: asyncio.Event) -> None:
        """Re-watch from the last seen version whenever a stream ends; only Gone (or an error) leaves."""
        while not stop.is_set():
            if await self._watch_once(stop):
                self._backoff.reset()
            elif await sleep_until_stopped(self.clock, self._backoff.next(), stop):
                # A stream that ends before delivering anything must not become a tight reconnect loop.
                return

    async def _watch_once(self, stop: asyncio.Event) -> bool:
        """One watch stream until it ends or `stop`; True when it delivered at least one event."""
        sel = self.selectors
        stream = self.client.watch(
            self.kind,
            namespace=sel.namespace,
            resource_version=self.last_resource_version,
            label_selector=sel.label_selector,
            field_selector=sel.field_selector,
            allow_bookmarks=True,
            timeout_seconds=random.randint(*self._watch_timeout),
        )
        consumer = asyncio.ensure_future(self._consume(stream))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            consumer.cancel()
            raise
        finally:
            stopper.cancel()
        if not consumer.done():  # stopping
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            return True
        return consumer.result()

    async def _consume(self, stream: AsyncGenerator[WatchEvent, None]) -> bool:
        events = 0
        async with contextlib.aclosing(stream):
            async for watch_event in stream:
                self._apply_watch_event(watch_event.type, watch_event.object)
                events += 1
        return events > 0

    def _apply_watch_event(self, event_type: str, obj: Obj) -> None:
        rv = resource_version(obj)
        if event_type == "BOOKMARK":
            self.last_resource_version = rv or self.last_resource_version
            return
        if self._transform is not None:
            obj = self._transform(obj)
        key = key_of(obj)
        if event_type == "DELETED":
            old = self.store.delete(key)
            self._dispatch(Event(EventType.DELETED, obj, old=old))
        else:
            old = self.store.upsert(obj)
            kind = EventType.ADDED if old is None else EventType.MODIFIED
            self._dispatch(Event(kind, obj, old=old))
        self.last_resource_version = rv or self.last_resource_version

    def _dispatch(self, event: Event) -> None:
        for listener in self._listeners:
            listener.queue.put_nowait(event)
