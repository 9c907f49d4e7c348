"""An autoscaled InferenceSet on the simulated cluster: a request's first token from zero, and scale-out after a step.

Run: `python benchmarks/scale_bench.py [--provisioning-delay 3] [--zero-trials 1] [--step-trials 3] [--clients 6]
[--target 2]`.
The simulated cluster runs in this process with `kaito manager` as a child process and process pods (as
`kaito sim --with-manager --process-pods` and `make demo-scale` run them): each replica's `kaito serve` (on a tiny
random model) and the set's two `kaito gateway` pods are real processes, a GPU node comes from the simulated Azure
`--provisioning-delay` seconds after it is asked for, and every request goes through the set's ClusterIP.

(a) From zero: a set at `replicas: 0` (`minReplicas: 0`) gets one streamed chat completion. Printed: the time to its
    first token, split by the child Workspace's own `status.phases` (whole seconds, as the API stamps them) into
    provisioning (planned + nodesProvisioned + nodesReady), model pull (modelPulled; none here: the simulated kubelet
    hands `kaito serve` its model) and engine start (engineStarted + firstReady), and by this script's polls (every
    0.1 s) into the wait for the scale decision (the send to the set's `replicas` becoming 1) and the queue time
    (the child observed Ready to the first token: the gateway noticing the replica, forwarding, the first token).
(b) A step in load: a set with one ready replica (`minReplicas: 1`) gets `--clients` concurrent clients at once.
    Printed: the time from the step to the first ScaleOut (the set's `replicas` rising, polled every 0.1 s; the
    controller reads load every 5 s) and until `ceil(clients / target)` replicas are ready (capped at
    `maxReplicas` 3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import socket
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaito.api.inferenceset import INFERENCESET, LABEL_SET
from kaito.controllers.kinds import WORKSPACE
from kaito.controllers.timeline import parse_time
from kaito.runtime.client import Client
from kaito.runtime.kinds import SERVICE
from kaito_sim.demo.inference import Demo
from kaito_sim.demo.load import run_load, timed_chat
from kaito_sim.demo.scale import scale_cluster

Obj = dict[str, Any]
NAMESPACE = "default"
POLL_S = 0.1
WITHIN_S = 120.0
MAX_REPLICAS = 3
SETTLE_S = 3.0  # after the step's set is ready, before the step


def manifest(name: str, *, replicas: int, min_replicas: int, target: int) -> str:
    return json.dumps(
        {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "InferenceSet",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "replicas": replicas,
                "labelSelector": {"matchLabels": {"apps": name}},
                "autoscaling": {
                    "minReplicas": min_replicas,
                    "maxReplicas": MAX_REPLICAS,
                    "targetInFlightPerReplica": target,
                    "scaleDownDelay": "10m",  # nothing goes away while it is measured
                    "scaleToZeroAfter": "10m",
                },
                "template": {
                    "resource": {"instanceType": "Standard_NC6s_v3"},
                    "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
                },
            },
        }
    )


async def until(check: Callable[[], Awaitable[bool]], what: str) -> float:
    """Polls `check` every POLL_S until true; the monotonic time it was first seen true."""
    deadline = time.monotonic() + WITHIN_S
    while time.monotonic() < deadline:
        if await check():
            return time.monotonic()
        await asyncio.sleep(POLL_S)
    raise SystemExit(f"scale_bench: {what} did not happen within {WITHIN_S:.0f} s")


@dataclass
class Bench:
    demo: Demo
    client: Client

    async def the_set(self, name: str) -> Obj:
        return await self.client.get(INFERENCESET, name, namespace=NAMESPACE)

    async def replicas(self, name: str) -> tuple[int, int]:
        got = await self.the_set(name)
        return int(got["spec"].get("replicas") or 0), int((got.get("status") or {}).get("readyReplicas") or 0)

    async def endpoint(self, name: str) -> str:
        """The set's ClusterIP as `http://IP`, once its gateway answers there."""
        ip = ""

        async def answers() -> bool:
            nonlocal ip
            with contextlib.suppress(Exception):
                ip = (await self.client.get(SERVICE, name, namespace=NAMESPACE))["spec"]["clusterIP"]
            return bool(ip) and await asyncio.to_thread(_reachable, ip)

        await until(answers, f"the gateway of {name} behind its ClusterIP")
        return f"http://{ip}"

    async def remove(self, name: str) -> None:
        await self.demo.kubectl("delete", "inferenceset", name, "--timeout=120s", show=False)


def _reachable(ip: str) -> bool:
    try:
        socket.create_connection((ip, 80), timeout=2).close()
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class FromZero:
    first_token_s: float
    decision_s: float  # the send to replicas 1 (polled)
    provisioning_s: float
    model_s: float | None
    engine_s: float
    queue_s: float  # the child seen Ready (polled) to the first token


def _phases(child: Obj) -> dict[str, float]:
    out = {}
    for phase in (child.get("status") or {}).get("phases") or []:
        start, end = parse_time(phase.get("startedAt")), parse_time(phase.get("endedAt"))
        if start is not None and end is not None:
            out[str(phase["name"])] = (end - start).total_seconds()
    return out


async def from_zero(bench: Bench, name: str, *, target: int) -> FromZero:
    await bench.demo.kubectl(
        "apply", "-f", "-", show=False, stdin=manifest(name, replicas=0, min_replicas=0, target=target)
    )
    url = await bench.endpoint(name)
    sent = time.monotonic()
    request = asyncio.create_task(timed_chat(url, "What is Kubernetes?", max_tokens=8))
    scaled = await until(lambda: _at_least(bench, name, replicas=1), "the scale from zero")
    ready = await until(lambda: _at_least(bench, name, ready=1), "the first replica Ready")
    timed = await request
    if timed.status != 200 or timed.first_token_s is None:
        raise SystemExit(f"scale_bench: the request at zero got {timed.status} and no token")
    children = await bench.client.list(WORKSPACE, namespace=NAMESPACE, label_selector=f"{LABEL_SET}={name}")
    phases = _phases(children.items[0])
    model = phases.get("modelPulled")
    return FromZero(
        first_token_s=timed.first_token_s,
        decision_s=scaled - sent,
        provisioning_s=sum(phases.get(p, 0.0) for p in ("planned", "nodesProvisioned", "nodesReady")),
        model_s=model,
        engine_s=sum(phases.get(p, 0.0) for p in ("engineStarted", "firstReady")),
        queue_s=sent + timed.first_token_s - ready,
    )


async def _at_least(bench: Bench, name: str, *, replicas: int = 0, ready: int = 0) -> bool:
    have, have_ready = await bench.replicas(name)
    return have >= replicas and have_ready >= ready


@dataclass(frozen=True)
class Step:
    decision_s: float  # the step to the first ScaleOut
    ready_s: float  # the step to enough ready replicas
    wanted: int


async def step(bench: Bench, name: str, *, clients: int, target: int) -> Step:
    await bench.demo.kubectl(
        "apply", "-f", "-", show=False, stdin=manifest(name, replicas=1, min_replicas=1, target=target)
    )
    await until(lambda: _at_least(bench, name, ready=1), f"{name}'s first replica Ready")
    url = await bench.endpoint(name)
    await asyncio.sleep(SETTLE_S)  # the step comes at no particular point of the controller's 5 s reading cycle
    wanted = min(MAX_REPLICAS, math.ceil(clients / target))
    stop = asyncio.Event()
    started = time.monotonic()
    load = asyncio.create_task(run_load(url, clients=clients, stop=stop))
    try:
        decided = await until(lambda: _at_least(bench, name, replicas=2), "the first ScaleOut")
        ready = await until(lambda: _at_least(bench, name, ready=wanted), f"{wanted} ready replicas")
    finally:
        stop.set()
        await load
    return Step(decided - started, ready - started, wanted)


def _stats(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:6.2f} s"
    return f"{statistics.median(values):6.2f} s median, {min(values):.2f}-{max(values):.2f} s"


def report(zeros: list[FromZero], steps: list[Step], *, provisioning_delay: float) -> None:
    print(f"\n(a) a request at zero, {len(zeros)} run(s); simulated provisioning delay {provisioning_delay:g} s")
    rows: list[tuple[str, list[float]]] = [
        ("first token, from the send", [z.first_token_s for z in zeros]),
        ("  held until the set scaled to 1 (polled)", [z.decision_s for z in zeros]),
        ("  provisioning: planned+nodesProvisioned+nodesReady", [z.provisioning_s for z in zeros]),
        ("  model pull: modelPulled", [z.model_s for z in zeros if z.model_s is not None]),
        ("  engine start: engineStarted+firstReady", [z.engine_s for z in zeros]),
        ("  queue: replica seen Ready -> first token", [z.queue_s for z in zeros]),
        (
            "  first token - (provisioning+model+engine)",
            [z.first_token_s - z.provisioning_s - (z.model_s or 0.0) - z.engine_s for z in zeros],
        ),
    ]
    for label, values in rows:
        print(f"  {label:<54} {_stats(values) if values else '     none (the model comes with the pod)'}")
    print("  (phases are whole seconds as the API stamps them: each is +-1 s)")
    if steps:
        print(f"\n(b) a step to {steps[0].wanted} replicas' worth of load, {len(steps)} run(s)")
        print(f"  {'step -> first ScaleOut':<54} {_stats([s.decision_s for s in steps])}")
        print(f"  {f'step -> {steps[0].wanted} replicas ready':<54} {_stats([s.ready_s for s in steps])}")


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        scratch = Path(tmp)
        async with scale_cluster(scratch, provisioning_delay=args.provisioning_delay) as sim:
            client = await Client.from_config(kubeconfig=str(sim.kubeconfig_path))
            bench = Bench(Demo(sim, scratch), client)
            zeros, steps = [], []
            try:
                for n in range(args.zero_trials):
                    zeros.append(await from_zero(bench, f"zero-{n}", target=args.target))
                    await bench.remove(f"zero-{n}")
                    print(
                        f"from zero {n + 1}/{args.zero_trials}: first token {zeros[-1].first_token_s:.2f} s", flush=True
                    )
                for n in range(args.step_trials):
                    steps.append(await step(bench, f"step-{n}", clients=args.clients, target=args.target))
                    await bench.remove(f"step-{n}")
                    print(f"step {n + 1}/{args.step_trials}: first ScaleOut {steps[-1].decision_s:.2f} s", flush=True)
            finally:
                await client.close()
    report(zeros, steps, provisioning_delay=args.provisioning_delay)
    print(f"\n({time.monotonic() - started:.0f} s in all, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provisioning-delay", type=float, default=3.0, help="seconds the simulated Azure takes")
    parser.add_argument("--zero-trials", type=int, default=1, help="runs of (a)")
    parser.add_argument("--step-trials", type=int, default=3, help="runs of (b): its reaction varies within 5 s")
    parser.add_argument("--clients", type=int, default=6, help="concurrent clients in the step")
    parser.add_argument("--target", type=int, default=2, help="targetInFlightPerReplica")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
