"""Benchmark of the operator on the simulated AKS cluster: many workspaces at once, then an idle minute.

Run: `python benchmarks/operator_bench.py --workspaces 200 --idle-seconds 60` (add `--unrelated-pods 5000
--unrelated-nodes 500` for a busy cluster whose objects kaito must not pay for). The API server and ARM
simulators run in this process; `kaito manager` runs as its own process, so its peak RSS is its own.
Requests are counted at the simulated API server, attributed by User-Agent. From the first apply to all
Ready, `benchmarks/healthz_probe.py` (its own process) probes the manager's `/healthz` every 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from kaito.controllers.kinds import WORKSPACE
from kaito.runtime.client import Client
from kaito.runtime.kinds import NAMESPACE, NODE, POD
from kaito_sim.aks import SimulatedAks
from kaito_sim.apiserver.http import RequestRecord
from kaito_sim.demo.operator import install_crds
from kaito_sim.server import SimServer

NS = "bench"
OTHER_NS = "elsewhere"
DEFAULT_QPS, DEFAULT_BURST = 50.0, 100  # `kaito manager --kube-api-qps/--kube-api-burst` defaults
MANAGER_AGENT = "kaito-runtime"
PROBE_INTERVAL = 0.1
PROBE_SCRIPT = Path(__file__).with_name("healthz_probe.py")


def workspace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": NS},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": name}}},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
    }


def ready(ws: dict[str, Any]) -> bool:
    conditions = (ws.get("status") or {}).get("conditions") or []
    return any(c["type"] == "WorkspaceSucceeded" and c["status"] == "True" for c in conditions)


def status_mib(pid: int, field: str) -> float:
    """A memory line of /proc/PID/status (VmHWM: peak RSS, VmRSS: RSS now) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid: int) -> float:
    return status_mib(pid, "VmHWM")


def free_port() -> int:
    """A port nothing listens on now, for a server whose address must be known before it starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class HealthProber:
    """`healthz_probe.py` in its own process: its latencies are not skewed by this process's busy loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies_ms: list[float] = []
        self.failures: Counter[str] = Counter()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", str(PROBE_SCRIPT), self.url, "--interval", str(PROBE_INTERVAL),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._proc.stdout is not None
        await self._proc.stdout.readline()  # "ready"
        self._reader = asyncio.create_task(self._read(self._proc.stdout))

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            millis, outcome = line.decode().split()
            self.latencies_ms.append(float(millis))
            if outcome != "200":
                self.failures[outcome] += 1

    async def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            await self._proc.wait()
        if self._reader is not None:
            await self._reader

    def summary(self) -> str:
        lat = self.latencies_ms
        if not lat:
            return "no probes answered"
        failed = sum(self.failures.values())
        detail = f" ({', '.join(f'{k}: {v}' for k, v in self.failures.most_common())})" if failed else ""
        return (
            f"{len(lat)} probes, p50 {percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms, "
            f"max {max(lat):.1f} ms, {failed} failures{detail}"
        )


async def wait_until_ok(url: str, *, deadline: float) -> None:
    """Poll `url` until it answers 200 (the manager's /readyz: servers up and caches synced)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.perf_counter() > deadline:
                raise SystemExit(f"the manager never answered {url}")
            await asyncio.sleep(0.1)


def write_target(record: RequestRecord) -> str:
    """`VERB resource[/status]` of one write, from its path (`.../<resource>[/<name>[/status]]`)."""
    parts = record.path.strip("/").split("/")
    if parts[-1] == "status":
        return f"{record.method} {parts[-3]}/status"
    return f"{record.method} {parts[-1] if record.method == 'POST' else parts[-2]}"


def breakdown(records: list[RequestRecord]) -> Counter[str]:
    """Manager writes by verb and resource, for finding waste."""
    return Counter(write_target(r) for r in records if r.user_agent.startswith(MANAGER_AGENT) and r.is_write)


def manager_requests(records: list[RequestRecord]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for record in records:
        if record.user_agent.startswith(MANAGER_AGENT):
            counts["total"] += 1
            counts["writes" if record.is_write else ("watches" if record.is_watch else "reads")] += 1
    return counts


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def add_unrelated(client: Client, *, pods: int, nodes: int) -> None:
    """Objects kaito has no business with, as a busy cluster has: pods no scheduler here binds, plain nodes."""
    await client.create(NAMESPACE, {"metadata": {"name": OTHER_NS}})
    pod_spec = {"schedulerName": "someone-else", "containers": [{"name": "app", "image": "nginx:1.27"}]}
    for start in range(0, pods, 100):
        await asyncio.gather(
            *(
                client.create(
                    POD,
                    {
                        "metadata": {"name": f"app-{i:05d}", "namespace": OTHER_NS, "labels": {"app": "web"}},
                        "spec": pod_spec,
                    },
                )
                for i in range(start, min(start + 100, pods))
            )
        )
    for start in range(0, nodes, 100):
        await asyncio.gather(
            *(
                client.create(NODE, {"metadata": {"name": f"other-{i:04d}", "labels": {"pool": "cpu"}}})
                for i in range(start, min(start + 100, nodes))
            )
        )


async def start_manager(
    sim: SimServer, aks: SimulatedAks, tmp: Path, *, health_port: int
) -> asyncio.subprocess.Process:
    target = aks.azure
    args = [
        *("--kubeconfig", str(sim.kubeconfig_path), "--cloud", "sim", "--no-leader-elect"),
        *("--arm-url", target.url, "--arm-ca", target.ca_path, "--arm-token", target.token),
        *("--subscription-id", target.subscription_id, "--resource-group", target.resource_group),
        *("--cluster-name", target.cluster, "--metrics-bind-address", "127.0.0.1:0"),
        *("--health-probe-bind-address", f"127.0.0.1:{health_port}", "--webhook-bind-address", "127.0.0.1:0"),
    ]
    log = open(tmp / "manager.log", "w")  # noqa: SIM115, ASYNC230
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "kaito.cli", "manager", *args, stderr=log)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspaces", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--breakdown", action="store_true", help="also print the manager's writes by kind")
    parser.add_argument("--unrelated-pods", type=int, default=0, help="pods in the cluster that are not kaito's")
    parser.add_argument("--unrelated-nodes", type=int, default=0, help="nodes in the cluster that are not kaito's")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        sim = SimServer(history_size=200_000, bookmark_interval=5.0)
        async with sim, SimulatedAks(sim, provisioning_delay=0.0) as aks:
            client = await Client.from_config(kubeconfig=str(sim.kubeconfig_path), user_agent="kaito-bench")
            await install_crds(client, "kaito-system")
            await client.create(NAMESPACE, {"metadata": {"name": NS}})
            await add_unrelated(client, pods=args.unrelated_pods, nodes=args.unrelated_nodes)
            health_port = free_port()
            proc = await start_manager(sim, aks, Path(tmp), health_port=health_port)
            health = f"http://127.0.0.1:{health_port}"
            await wait_until_ok(f"{health}/readyz", deadline=time.perf_counter() + 120)
            await asyncio.sleep(3)  # let the manager settle after its caches synced, before the load arrives
            prober = HealthProber(f"{health}/healthz")
            await prober.start()
            cpu_before = cpu_seconds(proc.pid)
            first = len(sim.requests)
            began = time.perf_counter()
            names = [f"ws-{i:04d}" for i in range(args.workspaces)]
            await asyncio.gather(*(client.create(WORKSPACE, workspace(n)) for n in names))
            created = time.perf_counter() - began
            while True:
                listed = await client.list(WORKSPACE, namespace=NS)
                done = sum(1 for ws in listed.items if ready(ws))
                if done == len(names):
                    break
                if time.perf_counter() - began > 1800:
                    print(f"gave up: {done} of {len(names)} ready")
                    break
                await asyncio.sleep(0.5)
            elapsed = time.perf_counter() - began
            cpu = cpu_seconds(proc.pid) - cpu_before
            await prober.stop()
            busy = manager_requests(sim.requests[first:])
            rss = peak_rss_mib(proc.pid or 0)
            rss_ready = status_mib(proc.pid, "VmRSS")
            await asyncio.sleep(5)  # let the last events of the rush land before the idle window opens
            idle_start = len(sim.requests)
            await asyncio.sleep(args.idle_seconds)
            idle = manager_requests(sim.requests[idle_start:])
            rss_idle = status_mib(proc.pid, "VmRSS")
            if args.breakdown:
                busy_writes = breakdown(sim.requests[first:idle_start]).most_common()
                print("writes per workspace while busy:", {k: round(v / args.workspaces, 2) for k, v in busy_writes})
                print("writes while idle:", [(r.method, r.path) for r in sim.requests[idle_start:] if r.is_write][:10])
            proc.terminate()
            await proc.wait()
            await client.close()
    n = args.workspaces
    print(
        f"cluster: {args.unrelated_pods} unrelated pods, {args.unrelated_nodes} unrelated nodes; "
        f"manager client QPS {DEFAULT_QPS:g} (burst {DEFAULT_BURST}), its defaults"
    )
    print(f"manager CPU from first apply to all Ready: {cpu:.2f}s ({cpu / n * 1000:.0f} ms per workspace)")
    print(f"{n} workspaces created in {created:.1f}s; all WORKSPACEREADY after {elapsed:.1f}s (provisioning delay 0)")
    print(
        f"manager API requests: {busy['total']} ({busy['total'] / n:.1f} per workspace), "
        f"writes {busy['writes']} ({busy['writes'] / n:.1f} per workspace), reads {busy['reads']}, "
        f"watches {busy['watches']}"
    )
    print(f"manager writes per workspace, apply to Ready (Events included): {busy['writes'] / n:.1f}")
    print(f"manager peak RSS: {rss:.0f} MiB")
    print(f"manager RSS now (VmRSS): {rss_ready:.0f} MiB at all Ready, {rss_idle:.0f} MiB after the idle window")
    print(f"manager /healthz every {PROBE_INTERVAL * 1000:.0f} ms, first apply to all Ready: {prober.summary()}")
    print(
        f"idle {args.idle_seconds:.0f}s afterwards: {idle['total']} requests, {idle['writes']} writes, "
        f"{idle['reads']} reads, {idle['watches']} watch requests"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
