"""`make demo-scale`: an autoscaled InferenceSet scales out under load, goes to zero when idle, and answers from zero.

On the embedded simulated cluster with `kaito manager` as its own process and process pods (as
`kaito sim --with-manager --process-pods` runs them): the set's gateway and each replica's `kaito serve` are real
processes, each replica's GPU node comes from the simulated Azure after a provisioning delay. The demo applies a
set with `minReplicas: 0`, sends a bounded load of concurrent chat completions through the set's ClusterIP (the
simulated kube-proxy, port 80) and shows `kubectl get inferenceset,workspaces,nodes` as it changes: replicas and
GPU nodes come, then go once the load stops, and one request sent at zero is held, a GPU node is provisioned, and
it is answered. Everything shown comes from kubectl and from real HTTP answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from kaito.api.inferenceset import LABEL_GATEWAY, LABEL_SET
from kaito_sim.demo.inference import Demo
from kaito_sim.demo.load import LoadReport, run_load, timed_chat
from kaito_sim.demo.manager_process import manager_process
from kaito_sim.demo.registry import DemoFailed, free_port
from kaito_sim.demo.tablewatch import TableWatch
from kaito_sim.nodes.kubeproxy import UNPRIVILEGED_PORT_START
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer

NAME = "chat"
NAMESPACE = "default"
CLIENTS = 6  # concurrent chat completions in the load: 3 replicas' worth at the target below
TARGET = 2  # targetInFlightPerReplica
MAX_REPLICAS = 3
IDLE = "10s"  # scaleDownDelay and scaleToZeroAfter
PROVISIONING_DELAY_S = 3.0
SERVE_S, LOAD_MAX_S = 6.0, 60.0  # the load goes on SERVE_S after every replica is ready
WITHIN_S = 90.0  # for each wait: the set Ready, at zero
WATCHED = "inferenceset,workspaces,nodes"
SET: dict[str, Any] = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "InferenceSet",
    "metadata": {"name": NAME, "namespace": NAMESPACE},
    "spec": {
        "replicas": 1,
        "labelSelector": {"matchLabels": {"apps": NAME}},
        "autoscaling": {
            "minReplicas": 0,
            "maxReplicas": MAX_REPLICAS,
            "targetInFlightPerReplica": TARGET,
            "scaleDownDelay": IDLE,
            "scaleToZeroAfter": IDLE,
        },
        "template": {
            "resource": {"instanceType": "Standard_NC6s_v3"},
            "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
        },
    },
}


@contextlib.asynccontextmanager
async def scale_cluster(scratch: Path, *, provisioning_delay: float) -> AsyncIterator[SimServer]:
    """The simulated cluster with process pods (replicas and gateways run for real) and `kaito manager` beside it."""
    pods = ProcessPods(images=("kaito-runtime", "kaito-manager"), nodes_dir=scratch / "nodes")
    async with (
        SimServer(kubeconfig=scratch / "kubeconfig", process_pods=pods) as sim,
        manager_process(
            sim,
            provisioning_delay=provisioning_delay,
            metrics_address="127.0.0.1:0",
            health_address="127.0.0.1:0",
            log_path=scratch / "manager.log",
        ),
    ):
        yield sim


class ScaleDemo:
    """The demo's kubectl, its view of the set, and the set's endpoint."""

    def __init__(self, demo: Demo, *, origin: float) -> None:
        self.demo, self.origin = demo, origin
        self.watch = TableWatch(lambda: demo.kubectl("get", WATCHED, show=False), WATCHED, origin)

    def elapsed(self) -> str:
        return f"[{time.monotonic() - self.origin:3.0f}s]"

    async def set_status(self) -> tuple[int, int]:
        """The set's (spec.replicas, status.readyReplicas)."""
        got = json.loads(await self.demo.kubectl("get", "inferenceset", NAME, "-o", "json", show=False))
        return int(got["spec"].get("replicas") or 0), int((got.get("status") or {}).get("readyReplicas") or 0)

    async def gpu_nodes(self) -> list[str]:
        """The nodes that are not the cluster's system pool: the GPU nodes the set's replicas brought."""
        names = (await self.demo.kubectl("get", "nodes", "-o", "name", show=False)).split()
        return [n for n in names if "aks-system" not in n]

    async def children(self) -> list[str]:
        selector = f"{LABEL_SET}={NAME}"
        return (await self.demo.kubectl("get", "workspaces", "-l", selector, "-o", "name", show=False)).split()

    async def until(self, check: Callable[[], Any], what: str, *, within: float = WITHIN_S) -> None:
        """Polls the async `check` each second until it is true; DemoFailed after `within` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await check():
                return
            await asyncio.sleep(1.0)
        raise DemoFailed(f"{what} did not happen within {within:.0f} s; see `kubectl describe inferenceset {NAME}`")

    async def cluster_ip(self) -> str:
        """The set's Service's ClusterIP; "" until the operator has made the Service."""
        args = ("get", "svc", "--field-selector", f"metadata.name={NAME}", "-o", "jsonpath={.items[*].spec.clusterIP}")
        return (await self.demo.kubectl(*args, show=False)).strip()

    async def scaled_out(self) -> bool:
        replicas, ready = await self.set_status()
        return replicas > 1 and ready == replicas

    async def at_zero(self) -> bool:
        replicas, _ = await self.set_status()
        return replicas == 0 and not await self.children() and not await self.gpu_nodes()

    @contextlib.asynccontextmanager
    async def endpoint(self) -> AsyncIterator[str]:
        """The set's Service as `http://HOST:PORT`: its ClusterIP, port 80 (the simulated kube-proxy) or, where this
        user may not listen below 1024, `kubectl port-forward svc/NAME`."""
        await self.until(self.cluster_ip, f"the Service {NAME}")
        ip = await self.cluster_ip()
        print(f"\n{self.elapsed()} the set's endpoint: Service {NAME}, ClusterIP {ip}, port 80", flush=True)
        if may_listen_on_port_80():
            await self.until(lambda: asyncio.to_thread(_reachable, ip, 80), "the gateway behind the ClusterIP")
            yield f"http://{ip}"
            return
        print(
            "(ports below 1024 need root here, so the simulated kube-proxy cannot listen on port 80: kubectl "
            "port-forward reaches the Service instead)",
            flush=True,
        )
        await self.until(self.gateway_ready, "a Ready gateway pod")
        port = free_port()
        print(f"\n$ kubectl port-forward svc/{NAME} {port}:80 &", flush=True)
        proc = await asyncio.create_subprocess_exec(
            "kubectl", "port-forward", f"svc/{NAME}", f"{port}:80", env=self.demo.env, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            try:
                async with asyncio.timeout(30):
                    print((await proc.stdout.readline()).decode(), end="", flush=True)
            except TimeoutError as exc:
                raise DemoFailed(f"kubectl port-forward svc/{NAME} did not start within 30 s") from exc
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            await proc.wait()

    async def gateway_ready(self) -> bool:
        selector = f"{LABEL_GATEWAY}={NAME}"
        args = ("get", "pods", "-l", selector, "-o", "jsonpath={.items[*].status.containerStatuses[*].ready}")
        return "true" in (await self.demo.kubectl(*args, show=False)).split()


def may_listen_on_port_80() -> bool:
    """Whether the simulated kube-proxy can open ClusterIP:80 here (root, or a lowered unprivileged port start)."""
    if os.geteuid() == 0:
        return True
    try:
        return int(UNPRIVILEGED_PORT_START.read_text()) <= 80
    except (OSError, ValueError):
        return False


def _reachable(ip: str, port: int) -> bool:
    try:
        socket.create_connection((ip, port), timeout=2).close()
    except OSError:
        return False
    return True


async def load_until_scaled_out(view: ScaleDemo, url: str) -> LoadReport:
    """The bounded load: `CLIENTS` clients until the scaled-out replicas have all served for `SERVE_S` seconds (at
    most `LOAD_MAX_S` seconds in all)."""
    print(
        f"\n{view.elapsed()} load: {CLIENTS} clients, each sending chat completions one after another to {url} "
        f"(target {TARGET} in flight per replica); until a replica is ready the gateway holds them",
        flush=True,
    )
    stop, report = asyncio.Event(), LoadReport()
    task = asyncio.create_task(run_load(url, clients=CLIENTS, stop=stop, report=report))
    started, scaled_at = time.monotonic(), None
    try:
        while time.monotonic() - started < LOAD_MAX_S and not task.done():
            await asyncio.sleep(2.0)
            print(f"{view.elapsed()} load: {report.summary()}", flush=True)
            if scaled_at is None and await view.scaled_out():
                scaled_at = time.monotonic()
            if scaled_at is not None and time.monotonic() - scaled_at >= SERVE_S:
                break
    finally:
        stop.set()
        await task
    print(f"{view.elapsed()} load stopped: {report.summary()}", flush=True)
    if scaled_at is None:
        raise DemoFailed(f"the set did not scale out within {LOAD_MAX_S:.0f} s of load")
    return report


async def scenario(view: ScaleDemo) -> None:
    demo = view.demo
    await demo.kubectl("get", "nodes")
    manifest = yaml.safe_dump(SET, sort_keys=False)
    print(f"\n$ kubectl apply -f - <<EOF\n{manifest}EOF", flush=True)
    await demo.kubectl("apply", "-f", "-", stdin=manifest, show=False)
    print(f"\nwatching `kubectl get {WATCHED}` (rows that changed, AGE left out):", flush=True)
    async with view.watch.running():
        async with view.endpoint() as url:
            await load_until_scaled_out(view, url)
            await demo.kubectl("get", WATCHED)
            print(f"\n{view.elapsed()} idle: the set goes to zero after scaleToZeroAfter {IDLE}", flush=True)
            await view.until(view.at_zero, "the set going to zero with its GPU nodes")
            await view.watch.poll()
            await demo.kubectl("get", WATCHED)
            print(f"\n{view.elapsed()} one request at zero, to {url}: the gateway holds it and asks for a replica")
            timed = await timed_chat(url, "What is Kubernetes?", max_tokens=8)
        if timed.status != 200 or timed.first_token_s is None:
            raise DemoFailed(f"the request at zero was answered {timed.status} with no token")
        print(
            f"{view.elapsed()} answered 200: first token after {timed.first_token_s:.1f} s, whole answer after "
            f"{timed.done_s:.1f} s ({len(timed.text)} characters of random tokens from the tiny stand-in model)",
            flush=True,
        )
    await demo.kubectl("get", WATCHED)
    await demo.kubectl(
        "get", "events", "--field-selector", f"involvedObject.name={NAME}", "--sort-by=.metadata.creationTimestamp"
    )
    await demo.kubectl("delete", "inferenceset", NAME, "--timeout=60s")
    await view.until(lambda: _none(view.gpu_nodes()), "the deleted set's GPU node to go")
    await demo.kubectl("get", "nodeclaims,nodes")


async def _none(listing: Awaitable[list[str]]) -> bool:
    return not await listing


async def run_demo_scale(*, provisioning_delay: float = PROVISIONING_DELAY_S) -> int:
    """The demo; 0 when every step did what it shows."""
    if shutil.which("kubectl") is None:
        print("kaito demo-scale needs kubectl on PATH")
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kaito-demo-scale-") as tmp:
        scratch = Path(tmp)
        try:
            async with scale_cluster(scratch, provisioning_delay=provisioning_delay) as sim:
                print(
                    f"kaito sim: serving {sim.url} with `kaito manager` and a simulated Azure (GPU nodes in "
                    f"{provisioning_delay:g} s); replicas and gateways run as local processes, each replica's "
                    "`kaito serve` on a tiny random model (no GPU)",
                    flush=True,
                )
                await scenario(ScaleDemo(Demo(sim, scratch), origin=started))
        except DemoFailed as exc:
            print(f"\nkaito demo-scale: {exc}", file=sys.stderr)
            log = scratch / "manager.log"
            if log.is_file():
                print("".join(log.read_text().splitlines(keepends=True)[-20:]), file=sys.stderr)
            return 1
    print(f"\nkaito demo-scale: done in {time.monotonic() - started:.0f} s")
    return 0
