"""The kubelet's side of a SPDY port-forward connection: stream pairs by request id, each forwarded to a pod port.

kubectl opens two streams per local connection, both with headers `port` and `requestID`: `streamType: error`
first, then `streamType: data`. Each gets a SYN_REPLY; once both are there the pair is forwarded: the data
stream carries the bytes, and the error stream carries a message if the port could not be reached, then
closes (kubectl reads it to its end before it lets the local connection go). A stream with bad headers is
reset, as client-go's SPDY server resets it. The pod closing its side ends the data stream (FIN); kubectl
closing its side half-closes towards the pod; a reset stops the forwarding at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from kaito_sim.apiserver import spdy
from kaito_sim.nodes.tcpforward import Dial, ForwardError, Inbound, inbound_queue, pump

log = logging.getLogger(__name__)
SendBytes = Callable[[bytes], Awaitable[None]]


@dataclass(eq=False)
class _Pair:
    request_id: str
    port: int
    data_id: int = 0
    error_id: int = 0
    inbound: Inbound = field(default_factory=inbound_queue)
    reset: asyncio.Event = field(default_factory=asyncio.Event)
    finished: set[int] = field(default_factory=set)  # stream ids this side has closed or the client has reset
    over: bool = False  # forwarding has ended: what the client still sends is dropped

    def end(self) -> None:
        """Stop taking the client's bytes; emptying the queue frees a reader waiting for room in it."""
        self.over = True
        while not self.inbound.empty():
            self.inbound.get_nowait()


def _stream_headers(headers: spdy.Headers) -> tuple[int, str] | None:
    """(port, stream type) when the headers name a port and a stream type the kubelet accepts."""
    port, kind = headers.get("port", ""), headers.get("streamtype", "")
    if not port.isdigit() or not 0 < int(port) < 65536 or kind not in ("data", "error"):
        return None
    return int(port), kind


class SpdySession:
    """One upgraded connection's SPDY streams, forwarded through `dial`; `send` writes bytes to the client."""

    def __init__(self, send: SendBytes, *, dial: Dial) -> None:
        self._send_bytes, self._dial = send, dial
        self._framer = spdy.Framer()
        self._lock = asyncio.Lock()  # header compression is one context: frames go out in the order encoded
        self._pending: dict[str, _Pair] = {}
        self._streams: dict[int, _Pair] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def run(self, incoming: AsyncIterator[bytes]) -> None:
        """Serve until the client's bytes end; then stop every forwarding still running."""
        try:
            async for chunk in incoming:
                for frame in self._framer.feed(chunk):
                    await self._on(frame)
        except spdy.SpdyError as exc:
            log.info("port-forward connection closed on a protocol error: %s", exc)
            await self._send(spdy.GoAway(max(self._streams, default=0), 1))
        finally:
            self._closed = True
            for pair in list(self._streams.values()):
                pair.reset.set()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send(self, frame: spdy.Frame) -> None:
        async with self._lock:
            if self._closed:
                return
            try:
                await self._send_bytes(self._framer.encode(frame))
            except ConnectionError:
                self._closed = True

    async def _on(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.SynStream):
            await self._open(frame)
        elif isinstance(frame, spdy.Data):
            pair = self._streams.get(frame.stream_id)
            if pair is not None and frame.stream_id == pair.data_id and not pair.over:
                if frame.data:
                    await pair.inbound.put(frame.data)
                if frame.fin:
                    await pair.inbound.put(None)
        elif isinstance(frame, spdy.RstStream):
            pair = self._streams.pop(frame.stream_id, None)
            if pair is not None:
                pair.finished.add(frame.stream_id)
                pair.reset.set()
        elif isinstance(frame, spdy.Ping):
            await self._send(frame)  # the client's pings come back; this side sends none of its own
        # SETTINGS, WINDOW_UPDATE, HEADERS and GOAWAY need nothing: the connection ends when the client's bytes do.

    async def _open(self, frame: spdy.SynStream) -> None:
        parsed = _stream_headers(frame.headers)
        if parsed is None:
            await self._send(spdy.RstStream(frame.stream_id, spdy.CANCEL))
            return
        port, kind = parsed
        # Clients older than request ids pair streams by id: error N, data N+2 (as the kubelet guesses).
        request_id = frame.headers.get("requestid") or str(frame.stream_id - (2 if kind == "data" else 0))
        pair = self._pending.setdefault(request_id, _Pair(request_id, port))
        if (pair.data_id if kind == "data" else pair.error_id) or pair.port != port:
            await self._send(spdy.RstStream(frame.stream_id, spdy.PROTOCOL_ERROR))
            return
        if kind == "data":
            pair.data_id = frame.stream_id
        else:
            pair.error_id = frame.stream_id
        self._streams[frame.stream_id] = pair
        await self._send(spdy.SynReply(frame.stream_id))
        if pair.data_id and pair.error_id:
            del self._pending[request_id]
            task = asyncio.create_task(self._forward(pair), name=f"portforward-{port}-{request_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _forward(self, pair: _Pair) -> None:
        error = ""
        try:
            reader, writer = await self._dial(pair.port)
        except ForwardError as exc:
            error = str(exc)
        else:
            await pump(reader, writer, inbound=pair.inbound, send=lambda b: self._data(pair, b), stop=pair.reset)
        pair.end()
        if error:
            await self._send(spdy.Data(pair.error_id, error.encode()))
        for stream_id in (pair.error_id, pair.data_id):  # the kubelet closes the error stream first
            if stream_id not in pair.finished:
                pair.finished.add(stream_id)
                await self._send(spdy.Data(stream_id, fin=True))
            self._streams.pop(stream_id, None)

    async def _data(self, pair: _Pair, chunk: bytes) -> None:
        if pair.data_id not in pair.finished:
            await self._send(spdy.Data(pair.data_id, chunk))
