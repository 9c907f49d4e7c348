"""What `kaito gateway` adds: latency and throughput calling a stub engine directly, then through the gateway.

Run with `python benchmarks/gateway_bench.py [--requests 2000] [--concurrency 32] [--replicas 1] [--gateways 1]
[--layout shared]`.
Three kinds of process on loopback: stub engines (child processes started here; each answers a small chat completion
at once), the gateway (a child process running kaito's gateway app over a fixed replica list, so no API server is
needed), and the clients in this process. In one run, each of two workloads is measured directly and through the
gateway:
  latency     one request at a time: p50/p99 per request; the gateway's added latency is the difference
  throughput  `--concurrency` requests at once: requests/s, and the gateway's share of the direct rate
Direct calls go to the first stub engine. Each path also reports the CPU each process spent per request (from
/proc): the client, the stubs and, through the gateway, the gateway itself.

`--layout` says where the processes run (`both` measures one layout after the other, same processes, one run):
  shared  (the default) every process may run on every CPU. On a small machine the clients, the gateway and the
          stubs then share the same cores, so the gateway's CPU is taken from the client and the stub: the
          throughput ratio is a lower bound on what a gateway on its own CPU would keep.
  pinned  the gateway alone on the last CPU; the client and the stubs on the others, on both paths (on 2 CPUs:
          gateway on CPU 1, client and stub on CPU 0, directly or not). The client and the stub get the same CPU
          whether the gateway is in the path or not, and the gateway takes none of it, as in production, where the
          gateway is its own Deployment with its own CPU and the engine its own. The throughput ratio then answers
          what a gateway with its own CPU keeps of the direct rate: 100% while its CPU per request is below the
          client's and stub's together, less once its single core is the bottleneck. Only this run's processes
          are pinned: other work on the machine may still run on any CPU.
`--gateways N` runs N gateways, as a set's Deployment runs two pods behind its Service: the clients spread their
requests over them in turn, and the pinned layout gives each a CPU of its own (N + 1 CPUs at least).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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


async def latency(http: aiohttp.ClientSession, urls: Sequence[str], requests: int) -> list[float]:
    """One request at a time, to each of `urls` in turn."""
    return [await one(http, urls[n % len(urls)]) for n in range(requests)]


async def throughput(http: aiohttp.ClientSession, urls: Sequence[str], requests: int, concurrency: int) -> float:
    """`concurrency` clients, spread over `urls` in turn, each sending its next request as its last is answered."""
    left = requests

    async def worker(url: str) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one(http, url)

    started = time.perf_counter()
    await asyncio.gather(*(worker(urls[n % len(urls)]) for n in range(concurrency)))
    return requests / (time.perf_counter() - started)


def pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] * 1000 if len(samples) > 1 else 0.0


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, all its threads: the run time the scheduler counts, in nanoseconds, per thread.

    Not /proc/PID/stat: its user and system times are sampled at each clock tick (10 ms), which charges a
    process that wakes briefly on a timer (a stub answering after `--engine-ms`) far more than it ran.
    """
    if pid == os.getpid():
        return time.process_time()
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


@dataclass
class Tally:
    """One path's samples in one layout: latencies, throughput rounds, CPU seconds by process, requests sent."""

    latencies: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    requests: int = 0


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process `pid` onto `cpus` (sched_setaffinity with a pid moves only that one thread)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


def place(layout: str, processes: dict[str, list[int]], cpus: set[int]) -> str:
    """Puts the processes of each role on their CPUs for `layout`; returns the layout in words."""
    if layout == "shared":
        for pids in processes.values():
            for pid in pids:
                pin(pid, cpus)
        return f"shared: client, stub(s) and gateway all on CPUs {_cpus(cpus)}"
    gateways = processes["gateway"]
    own = sorted(cpus)[-len(gateways) :]
    rest = cpus - set(own)
    for role, pids in processes.items():
        if role != "gateway":
            for pid in pids:
                pin(pid, rest)
    for pid, cpu in zip(gateways, own, strict=True):
        pin(pid, {cpu})
    alone = f"gateway alone on CPU {own[0]}" if len(own) == 1 else f"each gateway alone on one of CPUs {_cpus(own)}"
    return f"pinned: {alone}; client and stub(s) on CPU {_cpus(rest)}, directly and through the gateway"


def _cpus(cpus: Iterable[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def cpu_by_role(processes: dict[str, list[int]]) -> dict[str, float]:
    return {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in processes.items()}


async def measure(
    http: aiohttp.ClientSession,
    paths: dict[str, list[str]],
    processes: dict[str, list[int]],
    args: argparse.Namespace,
) -> dict[str, Tally]:
    for urls in paths.values():  # warm both paths' connections and code
        await latency(http, urls, min(200, args.requests))
    # Interleaved rounds, so a neighbour's load on this machine falls on both sides alike.
    tallies = {label: Tally() for label in paths}
    rounds = 4
    size = max(1, args.requests // rounds)
    for _ in range(rounds):
        for label, urls in paths.items():
            tally = tallies[label]
            before = cpu_by_role(processes)
            tally.latencies += await latency(http, urls, size)
            tally.rates.append(await throughput(http, urls, size, args.concurrency))
            after = cpu_by_role(processes)
            for role in processes:
                tally.cpu[role] = tally.cpu.get(role, 0.0) + after[role] - before[role]
            tally.requests += 2 * size
    return tallies


def report(where: str, tallies: dict[str, Tally]) -> None:
    print(f" layout {where}")
    for label, tally in tallies.items():
        print(
            f"  {label:8} p50 {pct(tally.latencies, 50):6.3f} ms  p99 {pct(tally.latencies, 99):6.3f} ms  "
            f"{statistics.median(tally.rates):8.0f} req/s"
        )
    direct, through = tallies["direct"], tallies["gateway"]
    added50 = pct(through.latencies, 50) - pct(direct.latencies, 50)
    added99 = pct(through.latencies, 99) - pct(direct.latencies, 99)
    kept = statistics.median(through.rates) / statistics.median(direct.rates)
    print(f"  added by the gateway: p50 {added50:.3f} ms, p99 {added99:.3f} ms; throughput kept {kept:.1%}")
    for label, tally in tallies.items():
        roles = ("client", "stub", "gateway") if label == "gateway" else ("client", "stub")
        spent = ", ".join(f"{role} {tally.cpu[role] / tally.requests * 1e6:.0f}" for role in roles)
        print(f"  CPU per request, {label} path (us): {spent}")
    print(f"  the gateways' CPU: {through.cpu['gateway'] / through.requests * 1e6:.0f} us per request")


async def bench(args: argparse.Namespace) -> None:
    cpus = os.sched_getaffinity(0)
    layouts = ["shared", "pinned"] if args.layout == "both" else [args.layout]
    if "pinned" in layouts and len(cpus) < args.gateways + 1:
        raise SystemExit(
            f"--layout {args.layout} with {args.gateways} gateway(s) needs {args.gateways + 1} CPUs or more; "
            f"this process may use {len(cpus)}"
        )
    stub_ports = [free_port() for _ in range(args.replicas)]
    stubs = [f"http://127.0.0.1:{port}" for port in stub_ports]
    gateway_ports = [free_port() for _ in range(args.gateways)]
    stub_processes = [start("stub", "--port", str(port), "--engine-ms", str(args.engine_ms)) for port in stub_ports]
    gateways = [start("gateway", "--port", str(port), *stubs) for port in gateway_ports]
    children = stub_processes + gateways
    processes = {
        "client": [os.getpid()],
        "stub": [child.pid for child in stub_processes],
        "gateway": [child.pid for child in gateways],
    }
    paths = {
        "direct": [f"{stubs[0]}/v1/chat/completions"],
        "gateway": [f"http://127.0.0.1:{port}/v1/chat/completions" for port in gateway_ports],
    }
    measured: list[tuple[str, dict[str, Tally]]] = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            for stub in stubs:
                await wait_up(http, f"{stub}/health")
            for port in gateway_ports:
                await wait_up(http, f"http://127.0.0.1:{port}/healthz")
            for layout in layouts:
                where = place(layout, processes, cpus)
                measured.append((where, await measure(http, paths, processes, args)))
    finally:
        pin(os.getpid(), cpus)
        for child in children:
            child.terminate()
        for child in children:
            child.wait()
    print(
        f"gateway bench: {args.requests} requests per path; latency one at a time, throughput {args.concurrency} "
        f"at once; stub answers in {args.engine_ms:g} ms; {args.replicas} stub replica(s) behind "
        f"{args.gateways} gateway(s); "
        f"{len(cpus)} CPU(s)"
    )
    for where, tallies in measured:
        report(where, tallies)


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
    parser.add_argument("--gateways", type=int, default=1, help="gateways, the clients spreading requests over them")
    parser.add_argument(
        "--engine-ms",
        type=float,
        default=0.0,
        help="the stub's time per answer (0: at once, the gateway's CPU ceiling)",
    )
    parser.add_argument(
        "--layout",
        choices=("shared", "pinned", "both"),
        default="shared",
        help="processes on all CPUs, or the gateway on a CPU of its own (see the module docstring)",
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
