"""What `kaito gateway` adds: latency and throughput calling a stub engine directly, then through the gateway.

Run with `python benchmarks/gateway_bench.py [--requests 2000] [--concurrency 32] [--replicas 1]`. Three kinds of
process on loopback: stub engines (child processes started here; each answers a small chat completion at once),
the gateway (a child process running kaito's gateway app over a fixed replica list, so no API server is needed),
and the clients in this process. In one run, each of two workloads is measured directly and through the gateway:
  latency     one request at a time: p50/p99 per request; the gateway's added latency is the difference
  throughput  `--concurrency` requests at once: requests/s, and the gateway's share of the direct rate
Direct calls go to the first stub engine. On a small machine the clients, the gateway and the stubs share the
same cores, so the throughput ratio is a lower bound on what a gateway on its own CPU would keep.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "stub",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
}
REQUEST = {"model": "stub", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 1}


def run_stub(port: int, engine_ms: float) -> None:
    async def chat(request: web.Request) -> web.Response:
        await request.read()
        if engine_ms:
            await asyncio.sleep(engine_ms / 1000)
        return web.json_response(ANSWER)

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def run_gateway(port: int, upstreams: Sequence[str]) -> None:
    from kaito.gateway.app import create_app
    from kaito.gateway.discovery import Publish
    from kaito.gateway.gateway import Gateway
    from kaito.gateway.router import Replica

    class Fixed:
        async def run(self, publish: Publish) -> None:
            publish([Replica(f"stub-{i}", url) for i, url in enumerate(upstreams)])
            await asyncio.Event().wait()

    app = create_app(Gateway(Fixed(), demand=None))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, handler_cancellation=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(*argv: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, __file__, *argv], env=env)


async def wait_up(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(400):
        try:
            async with http.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


async def one(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.post(url, json=REQUEST) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    return time.perf_counter() - started


async def latency(http: aiohttp.ClientSession, url: str, requests: int) -> list[float]:
    return [await one(http, url) for _ in range(requests)]


async def throughput(http: aiohttp.ClientSession, url: str, requests: int, concurrency: int) -> float:
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one(http, url)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


def pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] * 1000 if len(samples) > 1 else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench(args: argparse.Namespace) -> None:
    stub_ports = [free_port() for _ in range(args.replicas)]
    stubs = [f"http://127.0.0.1:{port}" for port in stub_ports]
    gateway_port = free_port()
    children = [start("stub", "--port", str(port), "--engine-ms", str(args.engine_ms)) for port in stub_ports]
    gateway = start("gateway", "--port", str(gateway_port), *stubs)
    children.append(gateway)
    direct = f"{stubs[0]}/v1/chat/completions"
    through = f"http://127.0.0.1:{gateway_port}/v1/chat/completions"
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            for stub in stubs:
                await wait_up(http, f"{stub}/health")
            await wait_up(http, f"http://127.0.0.1:{gateway_port}/healthz")
            for url in (direct, through):  # warm both paths' connections and code
                await latency(http, url, min(200, args.requests))
            # Interleaved rounds, so a neighbour's load on this machine falls on both sides alike.
            lat: dict[str, list[float]] = {direct: [], through: []}
            rate: dict[str, list[float]] = {direct: [], through: []}
            rounds = 4
            cpu_before, served = cpu_seconds(gateway.pid), 0
            for _ in range(rounds):
                for url in (direct, through):
                    lat[url] += await latency(http, url, max(1, args.requests // rounds))
                    rate[url].append(await throughput(http, url, max(1, args.requests // rounds), args.concurrency))
                served += 2 * max(1, args.requests // rounds)
            gateway_cpu = cpu_seconds(gateway.pid) - cpu_before
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait()
    print(
        f"gateway bench: {args.requests} requests per path; latency one at a time, throughput {args.concurrency} "
        f"at once; stub answers in {args.engine_ms:g} ms; {args.replicas} stub replica(s) behind the gateway; "
        f"{os.cpu_count()} CPU(s)"
    )
    for label, url in (("direct", direct), ("gateway", through)):
        print(
            f"  {label:8} p50 {pct(lat[url], 50):6.3f} ms  p99 {pct(lat[url], 99):6.3f} ms  "
            f"{statistics.median(rate[url]):8.0f} req/s"
        )
    added50 = pct(lat[through], 50) - pct(lat[direct], 50)
    added99 = pct(lat[through], 99) - pct(lat[direct], 99)
    kept = statistics.median(rate[through]) / statistics.median(rate[direct])
    print(f"  added by the gateway: p50 {added50:.3f} ms, p99 {added99:.3f} ms; throughput kept {kept:.1%}")
    print(f"  the gateway's CPU: {gateway_cpu / served * 1e6:.0f} us per request")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    stub = sub.add_parser("stub")
    stub.add_argument("--port", type=int, required=True)
    stub.add_argument("--engine-ms", type=float, default=0.0)
    gateway = sub.add_parser("gateway")
    gateway.add_argument("--port", type=int, required=True)
    gateway.add_argument("upstreams", nargs="+")
    parser.add_argument("--requests", type=int, default=2000, help="requests per path and workload")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--replicas", type=int, default=1, help="stub engines behind the gateway")
    parser.add_argument(
        "--engine-ms",
        type=float,
        default=0.0,
        help="the stub's time per answer (0: at once, the gateway's CPU ceiling)",
    )
    args = parser.parse_args()
    if args.role == "stub":
        run_stub(args.port, args.engine_ms)
    elif args.role == "gateway":
        run_gateway(args.port, args.upstreams)
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
