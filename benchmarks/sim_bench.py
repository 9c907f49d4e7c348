"""Benchmark of `kaito sim`: start-up, write throughput, watch fan-out latency, memory per stored object, and a burst.

Run with `make bench` (or `python benchmarks/sim_bench.py --objects 10000`). Prints one line per figure.
The server runs in its own process (as `kaito sim`), the load generator in this one. The burst runs the
simulated cluster and the operator on this process's loop, as `kaito sim --with-manager` does, applies
`--workspaces` Workspaces with kubectl, and reports how long that loop stalled meanwhile (a ticker task's
lateness) and how long `/version` took over fresh TLS connections from another thread (kubectl's view:
it gives up a TLS handshake after 10 s). `--burst-only` skips the other figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import http.client
import os
import ssl
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from kaito_sim.apiserver.cluster import WriteOptions
from kaito_sim.apiserver.writes import Writer
from kaito_sim.server import SimServer

CRD: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "examples/sim/modelcard-crd.yaml").read_text()
)
CARDS = "/apis/demo.kaito.sh/v1/namespaces/default/modelcards"


def card(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "demo.kaito.sh/v1",
        "kind": "ModelCard",
        "metadata": {"name": name, "labels": {"b": "1"}},
        "spec": {"model": "phi-4", "gpus": 1},
    }


async def start_process(tmp: Path) -> tuple[asyncio.subprocess.Process, str, ssl.SSLContext, str, float]:
    kubeconfig = tmp / "kubeconfig"
    began = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kaito.cli",
        "sim",
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = (await proc.stdout.readline()).decode()
    elapsed = time.perf_counter() - began
    url = line.split("serving ")[1].split()[0]
    config = yaml.safe_load(kubeconfig.read_text())
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    return proc, url, ssl.create_default_context(cadata=ca), config["users"][0]["user"]["token"], elapsed


async def in_process_startup(rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        async with SimServer():
            times.append(time.perf_counter() - began)
    return statistics.median(times)


async def writes_per_second(http: aiohttp.ClientSession, count: int, concurrency: int) -> tuple[float, float]:
    sem = asyncio.Semaphore(concurrency)

    async def one(method: str, path: str, **kwargs: Any) -> None:
        async with sem, http.request(method, path, **kwargs) as resp:
            assert resp.status in (200, 201), await resp.text()
            await resp.read()

    began = time.perf_counter()
    await asyncio.gather(*(one("POST", CARDS, json=card(f"w{i}")) for i in range(count)))
    creates = count / (time.perf_counter() - began)
    status = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    headers = {"Content-Type": "application/merge-patch+json"}
    began = time.perf_counter()
    await asyncio.gather(*(one("PATCH", f"{CARDS}/w{i}/status", json=status, headers=headers) for i in range(count)))
    patches = count / (time.perf_counter() - began)
    return creates, patches


async def watch_fanout(http: aiohttp.ClientSession, watchers: int, events: int) -> tuple[float, float]:
    rv = (await (await http.get(CARDS, params={"limit": "1"})).json())["metadata"]["resourceVersion"]
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def watcher(ready: asyncio.Event) -> None:
        params = {"watch": "true", "resourceVersion": rv, "labelSelector": "fan=out", "timeoutSeconds": "60"}
        async with http.get(CARDS, params=params) as resp:
            ready.set()
            seen = 0
            async for line in resp.content:
                name = yaml.safe_load(line)["object"]["metadata"]["name"]
                latencies.append(time.perf_counter() - sent[name])
                seen += 1
                if seen == events:
                    return

    readies = [asyncio.Event() for _ in range(watchers)]
    tasks = [asyncio.create_task(watcher(r)) for r in readies]
    await asyncio.gather(*(r.wait() for r in readies))
    await asyncio.sleep(0.2)
    for i in range(events):
        body = card(f"f{i}")
        body["metadata"]["labels"] = {"fan": "out"}
        sent[body["metadata"]["name"]] = time.perf_counter()
        async with http.post(CARDS, json=body) as resp:
            await resp.read()
        await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


async def memory_per_object(count: int) -> float:
    async with SimServer() as sim:
        writer = Writer(sim.cluster)
        rt = next(rt for rt in sim.cluster.registry if rt.plural == "customresourcedefinitions")
        await writer.create(rt, "", dict(CRD), WriteOptions(field_manager="bench"))
        card_rt = next(rt for rt in sim.cluster.registry if rt.plural == "modelcards")
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            await writer.create(card_rt, "default", card(f"m{i}"), WriteOptions(field_manager="bench"))
        sim.set_history_size(1)  # count stored objects, not the watch history that references them
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return (after - before) / count


def workspace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": "default"},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": name}}},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
    }


def succeeded(ws: dict[str, Any]) -> bool:
    conditions = (ws.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "WorkspaceSucceeded" and c.get("status") == "True" for c in conditions)


@dataclass
class Probe:
    """`/version` over a fresh TLS connection every 50 ms from its own thread, as repeated kubectl calls make."""

    url: str
    ca_pem: str
    stop: threading.Event = field(default_factory=threading.Event)
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(self) -> None:
        host, port = self.url.removeprefix("https://").rsplit(":", 1)
        context = ssl.create_default_context(cadata=self.ca_pem)
        while not self.stop.is_set():
            began = time.perf_counter()
            conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
            try:
                conn.request("GET", "/version")
                conn.getresponse().read()
                self.seconds.append(time.perf_counter() - began)
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()
            time.sleep(0.05)


async def ticker(lateness: list[float], period: float = 0.01) -> None:
    """How late each wake-up of a task sleeping `period` comes: the loop's stalls, as any request sees them."""
    while True:
        began = time.perf_counter()
        await asyncio.sleep(period)
        lateness.append(time.perf_counter() - began - period)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


async def burst_with_operator(count: int) -> None:
    from kaito_sim.demo.operator import embedded_operator

    lateness: list[float] = []
    tick = asyncio.create_task(ticker(lateness))
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "workspaces.yaml"
        manifest.write_text(yaml.safe_dump_all([workspace(f"ws-{i:04d}") for i in range(count)]))
        async with SimServer() as sim, embedded_operator(sim, provisioning_delay=0.0):
            rt = next(rt for rt in sim.cluster.registry if rt.plural == "workspaces")
            probe = Probe(sim.url, sim.ca_pem.decode())
            thread = threading.Thread(target=probe.run, name="probe")
            thread.start()
            await asyncio.sleep(1.0)
            lateness.clear()
            probe.seconds.clear()
            began = time.perf_counter()
            kubectl = await asyncio.create_subprocess_exec(
                *("kubectl", "--kubeconfig", str(sim.kubeconfig_path), "apply", "-f", str(manifest)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await kubectl.communicate()
            applied = time.perf_counter() - began
            done = 0
            while time.perf_counter() - began < 1800:
                done = sum(1 for ws in sim.cluster.store.items(rt.storage_key) if succeeded(ws))
                if done == count:
                    break
                await asyncio.sleep(0.5)
            ready = time.perf_counter() - began
            probe.stop.set()
            await asyncio.to_thread(thread.join)
    tick.cancel()
    print(
        f"burst: kubectl apply of {count} workspaces took {applied:.1f}s (exit {kubectl.returncode}"
        f"{': ' + err.decode().strip()[-200:] if kubectl.returncode else ''}); {done} Ready after {ready:.1f}s "
        "(operator embedded, provisioning delay 0)"
    )
    print(
        f"burst: loop lateness p50 {_p(lateness, 0.5) * 1000:.1f} ms, p99 {_p(lateness, 0.99) * 1000:.0f} ms, "
        f"max {max(lateness, default=0) * 1000:.0f} ms"
    )
    print(
        f"burst: /version over new TLS connections ({len(probe.seconds)} answered): p50 "
        f"{_p(probe.seconds, 0.5) * 1000:.0f} ms, p99 {_p(probe.seconds, 0.99) * 1000:.0f} ms, max "
        f"{max(probe.seconds, default=0) * 1000:.0f} ms; failed {len(probe.failures)}"
        f"{' (' + probe.failures[0] + ')' if probe.failures else ''}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workspaces", type=int, default=200, help="workspaces in the burst (0 skips it)")
    parser.add_argument("--burst-only", action="store_true", help="only the burst with the operator embedded")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    if args.workspaces and args.burst_only:
        await burst_with_operator(args.workspaces)
        return
    print(f"startup in-process (median of 5): {await in_process_startup(5) * 1000:.0f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, context, token, spawn = await start_process(Path(tmp))
        print(f"startup as `kaito sim` process (spawn to serving line): {spawn * 1000:.0f} ms")
        try:
            headers = {"Authorization": f"Bearer {token}"}
            connector = aiohttp.TCPConnector(ssl=context, limit=args.concurrency + 16)
            async with aiohttp.ClientSession(base_url=url, headers=headers, connector=connector) as http:
                async with http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD) as resp:
                    assert resp.status == 201, await resp.text()
                creates, patches = await writes_per_second(http, args.writes, args.concurrency)
                print(f"custom resource creates: {creates:.0f}/s ({args.writes} objects, {args.concurrency} in flight)")
                print(f"status merge-patches: {patches:.0f}/s")
                p50, p99 = await watch_fanout(http, 10, 200)
                print(f"watch fan-out to 10 watchers (200 events): p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
        finally:
            proc.terminate()
            await proc.wait()
    per_object = await memory_per_object(args.objects)
    print(f"memory per stored custom resource at {args.objects} objects: {per_object / 1024:.1f} KiB")
    if args.workspaces:
        await burst_with_operator(args.workspaces)


if __name__ == "__main__":
    asyncio.run(main())
