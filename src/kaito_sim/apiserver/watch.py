"""Watch streams: newline-delimited events from a resourceVersion, bookmarks, timeouts and 410 Expired."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.conversion import as_version
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.reads import Filter
from kaito_sim.apiserver.resources import ResourceType
from kaito_sim.apiserver.store import CLOSE, WatchEvent

Render = Callable[[JsonObj, bool], JsonObj]  # (object, first event?) -> what the event carries
EncodedLines = OrderedDict[tuple[int, str, str], bytes]
YIELD_EVERY = 100  # initial events sent between turns of the loop, so a large replay never holds it
ENCODED_KEPT = 1024  # recent changes whose encoded lines are kept for the other watchers


@dataclass
class WatchRequest:
    rt: ResourceType
    namespace: str | None
    flt: Filter
    resource_version: str
    timeout_seconds: float
    bookmarks: bool
    render: Render | None  # None: the object itself


def _start_rv(cluster: Cluster, rv: str) -> int | None:
    """The resourceVersion to stream after, or None to begin with synthetic ADDED events."""
    if rv in ("", "0"):
        return None
    try:
        value = int(rv)
    except ValueError as exc:
        raise errors.bad_request(f'invalid resource version "{rv}"') from exc
    if value < cluster.store.compacted_rv:
        raise errors.expired(f"too old resource version: {value} ({cluster.store.compacted_rv + 1})")
    return value


class _Stream:
    def __init__(self, resp: web.StreamResponse, req: WatchRequest, *, encoded: EncodedLines) -> None:
        self.resp, self.req, self.first = resp, req, True
        self.encoded = encoded

    async def send(self, kind: str, obj: JsonObj, *, shared: bool = False) -> None:
        """Write one event; a `shared` one (a stored change, sent as is) is encoded once for every watcher."""
        version = self.req.rt.group_version
        if self.req.render is not None:
            payload = self.req.render(as_version(obj, version), self.first)
            self.first = False
            await self.resp.write(_line(kind, payload))
            return
        if not shared:
            await self.resp.write(_line(kind, as_version(obj, version)))
            return
        cache, key = self.encoded, (int(obj["metadata"]["resourceVersion"]), kind, version)
        line = cache.get(key)
        if line is None:
            line = cache[key] = _line(kind, as_version(obj, version))
            if len(cache) > ENCODED_KEPT:
                cache.popitem(last=False)
        await self.resp.write(line)

    async def bookmark(self, rv: int) -> None:
        obj = {
            "kind": self.req.rt.kind,
            "apiVersion": self.req.rt.group_version,
            "metadata": {"resourceVersion": str(rv)},
        }
        await self.resp.write(json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n")

    def _visible(self, obj: JsonObj | None) -> bool:
        if obj is None:
            return False
        ns = self.req.namespace
        return (ns is None or obj["metadata"].get("namespace", "") == ns) and self.req.flt.matches(obj)

    async def deliver(self, event: WatchEvent, *, stored: bool = True) -> None:
        """Send what `event` means to this watcher; `stored`: a change the store recorded (not a listing's ADDED)."""
        now, before = self._visible(event.obj), self._visible(event.old)
        if event.type == "DELETED":
            if now or before:
                await self.send("DELETED", event.obj, shared=stored)
        elif now and before:
            await self.send("MODIFIED", event.obj, shared=stored)
        elif now:
            await self.send("ADDED", event.obj, shared=stored)
        elif before and event.old is not None:
            # Left the selection: clients see the last state they matched, at the new resourceVersion.
            meta = {**event.old["metadata"], "resourceVersion": event.obj["metadata"]["resourceVersion"]}
            await self.send("DELETED", {**event.old, "metadata": meta})


def _line(kind: str, payload: JsonObj) -> bytes:
    return json.dumps({"type": kind, "object": payload}, separators=(",", ":")).encode() + b"\n"


async def serve_watch(
    request: web.Request, cluster: Cluster, req: WatchRequest, *, bookmark_interval: float
) -> web.StreamResponse:
    try:
        start = _start_rv(cluster, req.resource_version)
    except errors.ApiError as exc:
        if exc.code != 410:
            raise
        return await _expired(request, exc)
    store = cluster.store
    sub = store.subscribe(req.rt.storage_key)
    # Taken with no await since subscribing, so nothing falls between the snapshot and the queue.
    if start is None:
        initial = [
            WatchEvent(store.rv, "ADDED", req.rt.storage_key, obj, None)
            for obj in store.items(req.rt.storage_key, req.namespace if req.rt.namespaced else None)
        ]
    else:
        initial = list(store.events_since(start, req.rt.storage_key))
    resp = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        stream = _Stream(resp, req, encoded=store.encoded)
        for sent, event in enumerate(initial, 1):
            await stream.deliver(event, stored=start is not None)
            if sent % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        await _pump(stream, sub.queue, store_rv=lambda: store.rv, req=req, interval=bookmark_interval)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        sub.close()
    return resp


async def _pump(
    stream: _Stream,
    queue: asyncio.Queue[WatchEvent],
    *,
    store_rv: Callable[[], int],
    req: WatchRequest,
    interval: float,
) -> None:
    deadline = time.monotonic() + req.timeout_seconds
    next_bookmark = time.monotonic() + interval
    while True:
        now = time.monotonic()
        if now >= deadline:
            return
        wait = min(deadline, next_bookmark if req.bookmarks else deadline) - now
        try:
            event = await asyncio.wait_for(queue.get(), timeout=max(wait, 0.001))
        except TimeoutError:
            if req.bookmarks and time.monotonic() >= next_bookmark and queue.empty():
                await stream.bookmark(store_rv())
                next_bookmark = time.monotonic() + interval
            continue
        if event.type == CLOSE:
            return
        await stream.deliver(event)


async def _expired(request: web.Request, exc: errors.ApiError) -> web.StreamResponse:
    """A watch from a compacted resourceVersion: one ERROR event carrying a 410 Status, then close."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(json.dumps({"type": "ERROR", "object": exc.status()}, separators=(",", ":")).encode() + b"\n")
    await resp.write_eof()
    return resp
