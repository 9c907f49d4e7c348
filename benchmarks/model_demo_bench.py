"""`make demo`'s workspace from `kubectl apply` to Ready: its weights pulled from a model image, cold and warm.

Run with `python benchmarks/model_demo_bench.py [--rounds 1] [--provisioning-delay 2]`. Each round starts the
demo's setup (the simulated cluster with process pods, the embedded operator, the simulated Azure with the
demo's provisioning delay) twice: once with `--model-registry` naming a loopback Debian `docker-registry`
holding the stand-in model as the preset's image (the pod's `model-puller` pulls it), once with no registry
(the simulated kubelet hands the stand-in to `kaito serve` directly, as the demo does without a registry).

Figures per setup: cold is `kubectl apply` to WorkspaceSucceeded True (a new node, an empty node cache); warm
is `kubectl delete pod` to the replacement pod Ready (same node, the cache full). "puller" is how long the
model-puller init container ran (its process, as the simulated kubelet saw it start and end; `kaito pull-model`'s
interpreter start included), and "pod" the pod's creation to Ready. The pod state is polled in-process every
10 ms, so each figure is good to about that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from kaito.inference.tinymodel import make_tiny_model
from kaito.modelimages.push import push_model
from kaito_sim.demo.inference import EXAMPLE, NAME, NAMESPACE, demo_image
from kaito_sim.demo.operator import embedded_operator
from kaito_sim.demo.registry import registry
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer

PODS = ("", "pods")
WORKSPACES = ("kaito.sh", "workspaces")
POLL_S = 0.01
WITHIN_S = 180.0


@dataclass
class PodTimes:
    """When (monotonic seconds) the bench first saw each milestone of one pod."""

    created: float
    puller_started: float | None = None
    puller_ended: float | None = None
    ready: float | None = None


@dataclass
class Watcher:
    """Polls the simulated cluster's store and records each pod's milestones and the workspace's readiness."""

    sim: SimServer
    pods: dict[str, PodTimes] = field(default_factory=dict)

    def poll(self) -> None:
        now = time.monotonic()
        for pod in self.sim.cluster.store.items(PODS, NAMESPACE):
            name = pod["metadata"]["name"]
            seen = self.pods.setdefault(name, PodTimes(created=now))
            status = pod.get("status") or {}
            for init in status.get("initContainerStatuses") or []:
                if init.get("name") != "model-puller":
                    continue
                state = init.get("state") or {}
                if seen.puller_started is None and ("running" in state or "terminated" in state):
                    seen.puller_started = now
                if seen.puller_ended is None and "terminated" in state:
                    seen.puller_ended = now
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            if ready and seen.ready is None:
                seen.ready = now

    def workspace_ready(self) -> bool:
        ws = self.sim.cluster.store.get(WORKSPACES, NAMESPACE, NAME) or {}
        conditions = (ws.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "WorkspaceSucceeded" and c.get("status") == "True" for c in conditions)

    async def until(self, done: Callable[[], bool]) -> float:
        """Poll until `done()` is true; the monotonic time it was first seen true."""
        deadline = time.monotonic() + WITHIN_S
        while time.monotonic() < deadline:
            self.poll()
            if done():
                return time.monotonic()
            await asyncio.sleep(POLL_S)
        raise TimeoutError(f"not done within {WITHIN_S:.0f} s")


@dataclass(frozen=True)
class Start:
    """One start: seconds to Ready, the puller's run (None without one) and the pod's creation to Ready."""

    total: float
    puller: float | None
    pod: float


async def kubectl(env: dict[str, str], *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {err.decode().strip()}")


def start_of(pod: PodTimes, began: float, ended: float) -> Start:
    puller = None
    if pod.puller_started is not None and pod.puller_ended is not None:
        puller = pod.puller_ended - pod.puller_started
    return Start(total=ended - began, puller=puller, pod=(pod.ready or ended) - pod.created)


async def cold_and_warm(sim: SimServer, scratch: Path) -> tuple[Start, Start]:
    """Apply the demo's workspace and wait for Ready; then delete its pod and wait for the new one's Ready."""
    env = {**os.environ, "KUBECONFIG": str(sim.kubeconfig_path), "KUBECACHEDIR": str(scratch / "kube-cache")}
    watcher = Watcher(sim)
    began = time.monotonic()
    await kubectl(env, "apply", "-f", str(EXAMPLE))
    ready = await watcher.until(watcher.workspace_ready)
    first = next(name for name, pod in watcher.pods.items() if pod.ready is not None)
    cold = start_of(watcher.pods[first], began, ready)
    began = time.monotonic()
    await kubectl(env, "delete", "pod", first, "--wait=false")
    again = await watcher.until(lambda: any(n != first and p.ready is not None for n, p in watcher.pods.items()))
    second = next(name for name, pod in watcher.pods.items() if name != first and pod.ready is not None)
    warm = start_of(watcher.pods[second], began, again)
    await kubectl(env, "delete", "workspace", NAME, "--timeout=120s")
    return cold, warm


@contextlib.asynccontextmanager
async def setup(scratch: Path, model: Path, *, with_registry: bool, delay: float) -> AsyncIterator[SimServer]:
    async with contextlib.AsyncExitStack() as stack:
        address = None
        if with_registry:
            address = await stack.enter_async_context(registry(scratch / "registry"))
            await asyncio.to_thread(push_model, model, demo_image(address), auth=None, plain_http=True)
        pods = ProcessPods(model_dir=None if with_registry else model)
        sim = await stack.enter_async_context(SimServer(kubeconfig=scratch / "kubeconfig", process_pods=pods))
        await stack.enter_async_context(embedded_operator(sim, provisioning_delay=delay, model_registry=address))
        yield sim


def show(label: str, starts: list[Start]) -> None:
    def median(values: list[float]) -> str:
        return f"{statistics.median(values):6.2f} s" if values else "     -  "

    pullers = [s.puller for s in starts if s.puller is not None]
    print(
        f"{label:<54} apply/delete->Ready {median([s.total for s in starts])}   "
        f"pod created->Ready {median([s.pod for s in starts])}   puller {median(pullers)}",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--provisioning-delay", type=float, default=2.0, help="the simulated Azure's (the demo's: 2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    results: dict[str, list[Start]] = {}
    with tempfile.TemporaryDirectory(prefix="kaito-model-demo-bench-") as tmp:
        model = await asyncio.to_thread(make_tiny_model, Path(tmp) / "model")
        size = sum(f.stat().st_size for f in model.iterdir() if f.is_file())
        print(f"stand-in model: {size / 2**20:.2f} MiB in {len(list(model.iterdir()))} files", flush=True)
        for round_ in range(args.rounds):
            for with_registry in (True, False):
                scratch = Path(tmp) / f"round-{round_}-{'registry' if with_registry else 'direct'}"
                scratch.mkdir()
                async with setup(scratch, model, with_registry=with_registry, delay=args.provisioning_delay) as sim:
                    cold, warm = await cold_and_warm(sim, scratch)
                kind = "model image" if with_registry else "stand-in handed over (no registry)"
                results.setdefault(f"cold, {kind}", []).append(cold)
                results.setdefault(f"warm (pod deleted), {kind}", []).append(warm)
    print(f"\nmedians of {args.rounds} round(s), provisioning delay {args.provisioning_delay:g} s:")
    for label, starts in results.items():
        show(label, starts)


if __name__ == "__main__":
    asyncio.run(main())
