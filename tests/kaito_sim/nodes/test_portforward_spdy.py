"""The kubelet's side of SPDY port-forwarding, driven frame by frame as kubectl drives it, against a local echo port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kaito_sim.apiserver import spdy
from kaito_sim.nodes.portforward_spdy import SpdySession
from kaito_sim.nodes.tcpforward import ForwardError

UNREACHABLE = 9  # the fake dial refuses this port


class Echo:
    """A local TCP server that echoes until its peer half-closes or sends `quit`; it counts closed connections."""

    def __init__(self) -> None:
        self.closed = asyncio.Queue[str]()
        self.server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (data := await reader.read(1024)) and data != b"quit":
            writer.write(data)
            await writer.drain()
        writer.close()
        await self.closed.put("eof" if not data else "quit")

    async def dial(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if port == UNREACHABLE:
            raise ForwardError(f"error forwarding port {port} to pod p, uid u: connect: connection refused")
        assert self.server is not None
        return await asyncio.open_connection(*self.server.sockets[0].getsockname()[:2])


class Client:
    """kubectl's end: frames it sends go in, frames the session sends come out decoded."""

    def __init__(self) -> None:
        self.framer = spdy.Framer()
        self.outgoing = asyncio.Queue[bytes | None]()
        self.received = asyncio.Queue[spdy.Frame]()

    def send(self, *frames: spdy.Frame) -> None:
        for frame in frames:
            self.outgoing.put_nowait(self.framer.encode(frame))

    async def incoming(self) -> AsyncIterator[bytes]:
        while (chunk := await self.outgoing.get()) is not None:
            yield chunk

    async def deliver(self, data: bytes) -> None:
        for frame in self.framer.feed(data):
            await self.received.put(frame)

    async def next(self) -> spdy.Frame:
        return await asyncio.wait_for(self.received.get(), 10)

    async def frames(self, count: int) -> list[spdy.Frame]:
        return [await self.next() for _ in range(count)]


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    echo = Echo()
    echo.server = await asyncio.start_server(echo.serve, "127.0.0.1", 0)
    async with echo.server:
        yield echo


@pytest.fixture
async def client(echo: Echo) -> AsyncIterator[Client]:
    client = Client()
    session = asyncio.create_task(SpdySession(client.deliver, dial=echo.dial).run(client.incoming()))
    yield client
    client.outgoing.put_nowait(None)
    await asyncio.wait_for(session, 10)


def stream(stream_id: int, kind: str, request: str, port: int = 5000) -> spdy.SynStream:
    return spdy.SynStream(stream_id, {"streamtype": kind, "port": str(port), "requestid": request})


async def test_streams_pair_by_request_id_and_carry_bytes_both_ways(client: Client, echo: Echo) -> None:
    client.send(stream(1, "error", "0"), stream(5, "error", "1"), stream(7, "data", "1"), stream(3, "data", "0"))
    assert await client.frames(4) == [spdy.SynReply(1), spdy.SynReply(5), spdy.SynReply(7), spdy.SynReply(3)]
    client.send(spdy.Data(1, fin=True), spdy.Data(5, fin=True))  # kubectl never writes on the error stream
    client.send(spdy.Data(3, b"to zero"), spdy.Data(7, b"to one"))
    assert set(await client.frames(2)) == {spdy.Data(3, b"to zero"), spdy.Data(7, b"to one")}
    client.send(spdy.Data(3, fin=True))  # kubectl's local connection ended: a half-close reaches the pod ...
    assert await asyncio.wait_for(echo.closed.get(), 10) == "eof"
    assert await client.frames(2) == [spdy.Data(1, fin=True), spdy.Data(3, fin=True)]  # ... whose close comes back
    client.send(spdy.Data(7, b"quit"))  # the pod closes the other connection on its own
    assert await asyncio.wait_for(echo.closed.get(), 10) == "quit"
    assert await client.frames(2) == [spdy.Data(5, fin=True), spdy.Data(7, fin=True)]


async def test_an_unreachable_port_is_reported_on_the_error_stream(client: Client) -> None:
    client.send(stream(1, "error", "0", UNREACHABLE), stream(3, "data", "0", UNREACHABLE))
    assert await client.frames(5) == [
        spdy.SynReply(1),
        spdy.SynReply(3),
        spdy.Data(1, b"error forwarding port 9 to pod p, uid u: connect: connection refused"),
        spdy.Data(1, fin=True),
        spdy.Data(3, fin=True),
    ]


async def test_a_reset_stops_forwarding_and_bad_streams_are_reset(client: Client, echo: Echo) -> None:
    client.send(spdy.SynStream(1, {"streamtype": "error"}), spdy.SynStream(3, {"port": "80", "streamtype": "x"}))
    assert await client.frames(2) == [spdy.RstStream(1, spdy.CANCEL), spdy.RstStream(3, spdy.CANCEL)]
    client.send(spdy.Ping(1))
    assert await client.next() == spdy.Ping(1)
    client.send(stream(5, "error", "0"), stream(7, "data", "0"), spdy.Data(7, b"hi"))
    assert await client.frames(3) == [spdy.SynReply(5), spdy.SynReply(7), spdy.Data(7, b"hi")]
    client.send(spdy.RstStream(7, spdy.CANCEL))
    assert await asyncio.wait_for(echo.closed.get(), 10) == "eof"  # the pod's connection was closed
    assert await client.next() == spdy.Data(5, fin=True)  # the error stream ends; the reset data stream stays quiet


async def test_a_second_data_stream_for_one_request_is_refused(client: Client) -> None:
    client.send(stream(1, "data", "0"), stream(3, "data", "0"))
    assert await client.frames(2) == [spdy.SynReply(1), spdy.RstStream(3, spdy.PROTOCOL_ERROR)]
