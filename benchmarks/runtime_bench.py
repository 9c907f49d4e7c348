"""Benchmark of the controller runtime: informer ingest rate, cache memory, work-queue speed, idle API traffic.

Run with `make bench` (or `python benchmarks/runtime_bench.py --objects 10000 --idle-seconds 60`). Prints one
line per figure. Ingest is measured against `kaito sim` in its own process; the idle-traffic figure uses an
in-process sim so it can count exactly what the server received.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from kaito.runtime import errors
from kaito.runtime.builder import Builder
from kaito.runtime.client import Client, WatchEvent
from kaito.runtime.informer import Event, Informer, Selectors
from kaito.runtime.kinds import CONFIG_MAP, NAMESPACE, Kind
from kaito.runtime.manager import Manager, ManagerOptions
from kaito.runtime.objects import Obj, ObjectKey
from kaito.runtime.reconcile import Result
from kaito.runtime.workqueue import WorkQueue
from kaito_sim.server import SimServer

BENCH_NS = "bench"


class HeldWatchClient(Client):
    """Watches wait for `gate`, so a backlog of events can pile up and then be ingested in one go."""

    gate: asyncio.Event

    async def watch(self, kind: Kind, **options: Any) -> AsyncGenerator[WatchEvent, None]:
        await self.gate.wait()
        async for event in super().watch(kind, **options):
            yield event


def configmap(name: str, namespace: str = BENCH_NS) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench", "tier": "cache"}},
        "data": {"model": "phi-4-mini-instruct", "replicas": "1", "note": "x" * 64},
    }


async def create_many(client: Client, count: int, *, prefix: str, concurrency: int = 16) -> None:
    names = iter(range(count))

    async def worker() -> None:
        for i in names:
            await client.create(CONFIG_MAP, configmap(f"{prefix}-{i}"))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def start_sim_process(tmp: Path, history: int) -> tuple[asyncio.subprocess.Process, Path]:
    kubeconfig = tmp / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kaito.cli",
        "sim",
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        "--watch-history",
        str(history),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    await proc.stdout.readline()
    return proc, kubeconfig


async def ingest_rate(kubeconfig: Path, count: int) -> tuple[float, float]:
    """(watch events/s, listed objects/s) for one informer taking in `count` ConfigMaps."""
    client = await HeldWatchClient.from_config(kubeconfig=kubeconfig, qps=0, burst=0)
    assert isinstance(client, HeldWatchClient)
    client.gate = asyncio.Event()
    async with client:
        await errors.ignore_already_exists(client.create(NAMESPACE, {"metadata": {"name": BENCH_NS}}))
        informer = Informer(client, CONFIG_MAP, selectors=Selectors(namespace=BENCH_NS))
        seen = 0
        all_seen = asyncio.Event()

        def count_event(event: Event) -> None:
            nonlocal seen
            seen += 1
            if seen == count:
                all_seen.set()

        informer.add_handler(count_event)
        stop = asyncio.Event()
        task = asyncio.create_task(informer.run(stop))
        await informer.wait_for_sync()
        await create_many(client, count, prefix="w")
        began = time.perf_counter()
        client.gate.set()
        await asyncio.wait_for(all_seen.wait(), 300)
        watch_rate = count / (time.perf_counter() - began)
        stop.set()
        await task

        relister = Informer(client, CONFIG_MAP, selectors=Selectors(namespace=BENCH_NS))
        began = time.perf_counter()
        relist_stop = asyncio.Event()
        relist_task = asyncio.create_task(relister.run(relist_stop))
        await relister.wait_for_sync()
        list_rate = count / (time.perf_counter() - began)
        relist_stop.set()
        await relist_task
    return watch_rate, list_rate


async def cache_bytes_per_object(kubeconfig: Path, count: int) -> float:
    async with await Client.from_config(kubeconfig=kubeconfig, qps=0, burst=0) as client:
        informer = Informer(client, CONFIG_MAP, selectors=Selectors(namespace=BENCH_NS))
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        stop = asyncio.Event()
        task = asyncio.create_task(informer.run(stop))
        await informer.wait_for_sync()
        await asyncio.sleep(0.2)  # let the (handler-less) informer settle into its watch
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(informer.store) == count, len(informer.store)
        stop.set()
        await task
    return (after - before) / count


def queue_ops_per_second(cycles: int, keys: int) -> float:
    """add + get + done cycles per second on a named (metered) queue with `keys` distinct keys."""
    queue: WorkQueue[str] = WorkQueue(name="bench")
    names = [f"ns/obj-{i}" for i in range(keys)]
    began = time.perf_counter()
    for i in range(cycles):
        queue.add(names[i % keys])
        item = queue.get_nowait()
        assert item is not None
        queue.done(item)
    return cycles / (time.perf_counter() - began)


def copier(manager: Manager, sources: int) -> asyncio.Event:
    """Wire a controller that keeps `<name>-copy` equal to each source; the event is set once all are copied."""
    client = manager.client
    copied: set[str] = set()
    all_copied = asyncio.Event()

    async def reconcile(key: ObjectKey) -> Result:
        if key.name.endswith("-copy"):
            return Result()
        source = manager.cache.get(CONFIG_MAP, key.name, namespace=key.namespace)
        copy = manager.cache.find(CONFIG_MAP, f"{key.name}-copy", namespace=key.namespace)
        if copy is None or copy.get("data") != source.get("data"):
            body = configmap(f"{key.name}-copy")
            body["data"] = source.get("data")
            await client.apply(CONFIG_MAP, body, field_manager="bench", force=True)
        copied.add(key.name)
        if len(copied) == sources:
            all_copied.set()
        return Result()

    Builder(manager, "idle-bench").for_(CONFIG_MAP).complete(reconcile)
    return all_copied


async def idle_requests(seconds: float, sources: int) -> Counter[str]:
    """What a controller with `sources` objects asks of the server while nothing changes for `seconds`."""
    sim = SimServer(bookmark_interval=5.0)
    async with sim, await Client.from_config(kubeconfig=sim.kubeconfig_path) as client:
        await client.create(NAMESPACE, {"metadata": {"name": BENCH_NS}})
        options = ManagerOptions(metrics_address=None, health_address=None, namespace=BENCH_NS)
        manager = Manager(client, options=options)
        all_copied = copier(manager, sources)
        for i in range(sources):
            await client.create(CONFIG_MAP, configmap(f"src-{i}"))
        stop = asyncio.Event()
        task = asyncio.create_task(manager.run(stop))
        await asyncio.wait_for(all_copied.wait(), 60)
        await asyncio.sleep(2)  # the copies' own events come back through the watch
        start = len(sim.requests)
        await asyncio.sleep(seconds)
        window = sim.requests[start:]
        stop.set()
        await task
    counts: Counter[str] = Counter()
    for record in window:
        counts["watch" if record.is_watch else ("write" if record.is_write else "read")] += 1
    return counts


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--queue-cycles", type=int, default=200_000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    print(f"work queue: {queue_ops_per_second(args.queue_cycles, 1000):,.0f} add+get+done cycles/s (metered)")
    with tempfile.TemporaryDirectory() as tmp:
        proc, kubeconfig = await start_sim_process(Path(tmp), history=args.objects * 2)
        try:
            watch_rate, list_rate = await ingest_rate(kubeconfig, args.objects)
            print(f"informer ingest over watch: {watch_rate:,.0f} events/s ({args.objects} events)")
            print(f"informer initial list: {list_rate:,.0f} objects/s ({args.objects} objects, pages of 500)")
            per_object = await cache_bytes_per_object(kubeconfig, args.objects)
            print(f"cache memory per object at {args.objects} ConfigMaps: {per_object / 1024:.2f} KiB")
        finally:
            proc.terminate()
            await proc.wait()
    counts = await idle_requests(args.idle_seconds, 100)
    print(
        f"idle controller over {args.idle_seconds:.0f}s (100 objects + 100 owned): "
        f"{counts['write']} writes, {counts['read']} reads, {counts['watch']} watch requests"
    )


if __name__ == "__main__":
    asyncio.run(main())
