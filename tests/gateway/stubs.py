"""Stand-in engines and a fed replica source for the gateway's tests: tiny aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from kaito.gateway.app import create_app
from kaito.gateway.discovery import Publish
from kaito.gateway.gateway import Gateway
from kaito.gateway.router import Replica


@dataclass
class StubEngine:
    """An OpenAI-shaped engine that records what it got; `gate` (when set) keeps each answer until opened."""

    name: str
    gate: asyncio.Event | None = None
    stream_chunks: int = 2
    stream_gate: asyncio.Event | None = None  # when set, a stream writes its first chunk, then waits for it
    received: list[dict[str, object]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        app.router.add_post("/chat", self._chat)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": self.name}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        if body.get("stream"):
            return await self._stream(request)
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.name}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return web.json_response(answer, headers={"X-Replica": self.name})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(self.stream_chunks):
            if i == 1 and self.stream_gate is not None:
                await self.stream_gate.wait()
            word = f"{self.name}-{i}"
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "stub",
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        done = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "stub",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await response.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response

    @property
    def replica(self) -> Replica:
        return Replica(self.name, self.url)


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def engines(*stubs: StubEngine) -> AsyncIterator[Sequence[StubEngine]]:
    async with contextlib.AsyncExitStack() as stack:
        for stub in stubs:
            stub.url = await stack.enter_async_context(serving(stub.app()))
        yield stubs


class FedDiscovery:
    """Replicas as the test says, published when it says."""

    def __init__(self, replicas: Sequence[Replica] = ()) -> None:
        self._publish: Publish | None = None
        self._initial = list(replicas)
        self.running = asyncio.Event()

    async def run(self, publish: Publish) -> None:
        self._publish = publish
        publish(self._initial)
        self.running.set()
        await asyncio.Event().wait()

    def feed(self, replicas: Sequence[Replica]) -> None:
        assert self._publish is not None, "the gateway is not running"
        self._publish(replicas)


@contextlib.asynccontextmanager
async def gateway_at(gateway: Gateway) -> AsyncIterator[str]:
    async with serving(create_app(gateway)) as url:
        yield url


def refusing_url() -> str:
    """A loopback address where nothing listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def until(condition: Callable[[], bool], *, what: str, limit_s: float = 10.0) -> None:
    """Wait for `condition` (an event the test cannot await directly); the limit only ends a hung test."""
    end = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < end, f"never happened: {what}"
        await asyncio.sleep(0.005)


def chat(content: str, *, stream: bool = False) -> dict[str, object]:
    return {"model": "stub", "messages": [{"role": "user", "content": content}], "stream": stream}
