"""What `kaito serve`'s vLLM relay costs: the same clients calling a stand-in vLLM directly, then through the relay.

Run with `python benchmarks/relay_bench.py [--streams 64] [--tokens 256] [--interval-ms 10]`. Three processes on
loopback, as in an inference pod: a stand-in for vLLM's OpenAI server (started by this script; it answers at once
and emits one token per stream every `--interval-ms`, all streams on the same tick, the way a GPU batch steps),
`kaito serve --engine vllm --engine-url <stand-in>` (the real VllmEngine relay), and the clients in this process.
`--interval-ms 0` streams as fast as the stand-in can write: the relay's CPU ceiling rather than a GPU's pace.

Two workloads, each measured directly and through the relay in this one run: streamed chat completions
(`--streams` at once, `--tokens` chunks each) and whole (non-streamed) completions of `--short-tokens` tokens.
Printed: chunks/s, requests/s, time to first chunk and per-request latency (p50/p99), and the relay process's CPU
per 1,000 chunks (from /proc, so it holds on a busy machine where wall-clock rates do not).

In the pod the controller builds, `kaito serve --openai-direct` gives vLLM the serving port, so OpenAI clients get
the `direct` figures; the `relay` ones are what a client pays that calls `kaito serve`'s own port (or --engine-url).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

MODEL = "standin"
ROOT = Path(__file__).resolve().parents[1]


# --- the stand-in vLLM server (runs as a child process: `relay_bench.py standin --port N`) ---


class Ticker:
    """One decoding step every `interval` seconds for every stream at once; `interval` 0 never waits."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._step: asyncio.Future[None] | None = None

    async def step(self) -> None:
        if not self.interval:
            return
        if self._step is None:
            loop = asyncio.get_running_loop()
            self._step = loop.create_future()
            loop.call_later(self.interval, self._tick)
        await self._step

    def _tick(self) -> None:
        step, self._step = self._step, None
        if step is not None:
            step.set_result(None)


def standin_app(ticker: Ticker) -> web.Application:
    """vLLM's OpenAI routes as vLLM shapes them, generating the word " tok" per token."""

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="")

    async def models(_: web.Request) -> web.Response:
        card = {"id": MODEL, "object": "model", "max_model_len": 8192}
        return web.json_response({"object": "list", "data": [card]})

    async def generate(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        chat = "messages" in body
        tokens = int(body.get("max_tokens") or 16)
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        kind = "chat.completion.chunk" if chat else "text_completion"
        head = {"id": ident, "object": kind, "created": int(time.time()), "model": body["model"]}
        usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
        if not body.get("stream"):
            for _ in range(tokens):
                await ticker.step()
            choice = {"index": 0, "text": " tok" * tokens, "logprobs": None, "finish_reason": "length"}
            return web.json_response(head | {"object": "text_completion", "choices": [choice], "usage": usage})

        def frame(delta: dict[str, Any] | str, finish: str | None = None) -> bytes:
            choice: dict[str, Any] = {"index": 0}
            choice |= {"delta": delta} if chat else {"text": delta}
            event = head | {"choices": [choice | {"logprobs": None, "finish_reason": finish}]}
            return b"data: " + json.dumps(event).encode() + b"\n\n"

        token = frame({"content": " tok"} if chat else " tok")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(tokens):
            await ticker.step()
            if chat and not i:
                await response.write(frame({"role": "assistant", "content": ""}))
            await response.write(token)
        await response.write(frame({"content": ""} if chat else "", "length"))
        if (body.get("stream_options") or {}).get("include_usage"):
            last = head | {"choices": [], "usage": usage}
            await response.write(b"data: " + json.dumps(last).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", generate)
    app.router.add_post("/v1/chat/completions", generate)
    return app


def run_standin(port: int, interval_ms: float) -> None:
    web.run_app(standin_app(Ticker(interval_ms / 1000)), host="127.0.0.1", port=port, print=None, access_log=None)


# --- the clients ---


@dataclass
class Sample:
    first: float  # seconds from sending the request to its first chunk (the whole answer when not streamed)
    total: float
    chunks: int


@dataclass
class Figures:
    samples: list[Sample]
    elapsed: float
    cpu: float  # relay process CPU seconds over the phase (0 when calling the stand-in directly)

    @property
    def chunks(self) -> int:
        return sum(s.chunks for s in self.samples)

    def pct(self, what: str, q: float) -> float:
        values: list[float] = sorted(getattr(s, what) for s in self.samples)
        return values[min(len(values) - 1, int(len(values) * q))] * 1000

    def line(self, label: str) -> str:
        rate = f"{self.chunks / self.elapsed:8.0f} chunks/s {len(self.samples) / self.elapsed:7.1f} req/s"
        first = f"first p50 {self.pct('first', 0.5):7.2f} p99 {self.pct('first', 0.99):7.2f} ms"
        total = f"request p50 {self.pct('total', 0.5):8.2f} p99 {self.pct('total', 0.99):8.2f} ms"
        cpu = f"  relay CPU {self.cpu * 1e6 / max(1, self.chunks):6.1f} ms/1k chunks" if self.cpu else ""
        return f"  {label:7} {rate}  {first}  {total}{cpu}"


Call = Callable[[aiohttp.ClientSession, str], Awaitable[Sample]]


def stream_call(tokens: int) -> Call:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": tokens, "stream": True}

    async def call(http: aiohttp.ClientSession, url: str) -> Sample:
        began = time.perf_counter()
        first, chunks = 0.0, 0
        async with http.post(f"{url}/v1/chat/completions", json=body) as resp:
            assert resp.status == 200, await resp.text()
            async for line in resp.content:
                if line.startswith(b"data: {"):
                    chunks += 1
                    first = first or time.perf_counter() - began
        assert chunks >= tokens, chunks
        return Sample(first, time.perf_counter() - began, chunks)

    return call


def whole_call(tokens: int) -> Call:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": tokens}

    async def call(http: aiohttp.ClientSession, url: str) -> Sample:
        began = time.perf_counter()
        async with http.post(f"{url}/v1/completions", json=body) as resp:
            assert resp.status == 200, await resp.text()
            answer = await resp.json()
        assert answer["usage"]["completion_tokens"] == tokens
        elapsed = time.perf_counter() - began
        return Sample(elapsed, elapsed, 1)

    return call


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str, call: Call, *, requests: int, concurrency: int, relay_pid: int | None) -> Figures:
    samples: list[Sample] = []
    queue = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as http:

        async def worker() -> None:
            for _ in queue:
                samples.append(await call(http, url))

        cpu = cpu_seconds(relay_pid) if relay_pid else 0.0
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(relay_pid) - cpu if relay_pid else 0.0
    return Figures(samples, elapsed, cpu)


# --- the run ---


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until_healthy(url: str, process: subprocess.Popen[bytes], *, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
            try:
                async with http.get(f"{url}/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not healthy within {within}s")


def ratio_line(direct: Figures, relay: Figures) -> str:
    throughput = (relay.chunks / relay.elapsed) / (direct.chunks / direct.elapsed)
    points = [("first p50", "first", 0.5), ("first p99", "first", 0.99)]
    points += [("request p50", "total", 0.5), ("request p99", "total", 0.99)]
    added = {name: relay.pct(what, q) - direct.pct(what, q) for name, what, q in points}
    extra = "  ".join(f"{name} {value:+.2f} ms" for name, value in added.items())
    return f"  relay/direct throughput {throughput:6.1%}   added: {extra}"


async def bench(args: argparse.Namespace, standin_url: str, relay_url: str, relay_pid: int) -> None:
    workloads = [
        (f"streamed chat, {args.streams} streams x {args.tokens} chunks", stream_call(args.tokens), args.streams),
        (f"whole completions of {args.short_tokens} tokens", whole_call(args.short_tokens), args.streams),
    ][slice(1 if args.only == "whole" else 0, 1 if args.only == "stream" else 2)]
    for url in (standin_url, relay_url):  # warm up both paths: connections, first-request imports
        await measure(url, stream_call(4), requests=args.streams, concurrency=args.streams, relay_pid=None)
    for title, call, concurrency in workloads:
        requests = concurrency * args.rounds
        print(f"{title}: {requests} requests, {concurrency} at a time")
        direct = await measure(standin_url, call, requests=requests, concurrency=concurrency, relay_pid=None)
        print(direct.line("direct"), flush=True)
        relay = await measure(relay_url, call, requests=requests, concurrency=concurrency, relay_pid=relay_pid)
        print(relay.line("relay"), flush=True)
        print(ratio_line(direct, relay), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?", choices=["standin"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, default=64, help="concurrent requests")
    parser.add_argument("--tokens", type=int, default=256, help="chunks per streamed request")
    parser.add_argument("--short-tokens", type=int, default=16, help="tokens per whole (non-streamed) completion")
    parser.add_argument("--rounds", type=int, default=3, help="requests per workload = streams x rounds")
    parser.add_argument("--only", choices=["stream", "whole"], help="run one of the two workloads")
    parser.add_argument("--interval-ms", type=float, default=10.0, help="the stand-in's decoding step; 0: no pacing")
    args = parser.parse_args()
    if args.role == "standin":
        run_standin(args.port, args.interval_ms)
        return
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    standin_port, relay_port = free_port(), free_port()
    standin_url, relay_url = f"http://127.0.0.1:{standin_port}", f"http://127.0.0.1:{relay_port}"
    standin_cmd = [sys.executable, __file__, "standin", "--port", str(standin_port)]
    standin = subprocess.Popen([*standin_cmd, "--interval-ms", str(args.interval_ms)], env=env)
    relay_cmd = [sys.executable, "-m", "kaito.cli", "serve", "--engine", "vllm", "--engine-url", standin_url]
    relay_cmd += ["--model", MODEL, "--host", "127.0.0.1", "--port", str(relay_port), "--max-model-len", "8192"]
    relay = subprocess.Popen(relay_cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        print(f"stand-in step {args.interval_ms:g} ms; {os.cpu_count()} CPUs; relay: {' '.join(relay_cmd[2:])}")
        asyncio.run(until_healthy(standin_url, standin))
        asyncio.run(until_healthy(relay_url, relay))
        asyncio.run(bench(args, standin_url, relay_url, relay.pid))
    finally:
        for process in (relay, standin):
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
