"""How fast the autoscaling policy answers a step in load, and how soon an idle set goes to zero, in virtual time.

Run: `python benchmarks/autoscale_bench.py` (options: `--help`). Nothing real runs: a virtual clock moves in ticks
of `--tick` seconds; requests arrive at a constant rate that steps from `--base-rate` to `--step-rate` at
`--step-at` for `--step-for` seconds and then stops; each takes `--service` seconds on a replica that runs up to
`--target` at once (vLLM's max-num-seqs) and keeps the rest waiting, and the gateway holds requests while no
replica is ready. A replica asked for is ready `--provision` + `--model-load` seconds later (a GPU node, then the
model). Every `--period` seconds the controller reads the load and calls `decide`, through the same `ScaleMemory`
the controller uses. The scenario runs twice: from one ready replica serving the base rate, and from zero replicas
with no load until the step.

Printed per policy: the decision latency (step to the first ScaleOut), the time until enough capacity was ready
(ready replicas x target >= the step's concurrency) and until no request waited, the peak of waiting requests and
the longest wait, the time from the last request's end to zero replicas, and the GPU replica-hours. "upstream-keda"
is upstream KAITO's InferenceSet scaler for comparison: at least one replica, one more at most every five minutes
while the load per replica is above the target, one fewer after the scale-down delay.
"""

from __future__ import annotations

import argparse
import bisect
import math
from collections import deque
from dataclasses import dataclass, field

from kaito.controllers.autoscale import Decision, Load, Policy, ScaleMemory, ScaleState, decide
from kaito.runtime.clock import FakeClock


@dataclass
class Cluster:
    """Replicas (by the time each is ready), requests held or waiting (by arrival) and running (by finish)."""

    ready_at: list[float] = field(default_factory=list)
    waiting: deque[float] = field(default_factory=deque)
    running: list[float] = field(default_factory=list)

    def ready(self, now: float) -> int:
        return sum(1 for t in self.ready_at if t <= now)

    def scale(self, replicas: int, now: float, start_s: float) -> None:
        self.ready_at.sort()
        while len(self.ready_at) > replicas:
            self.ready_at.pop()  # the newest, least ready first
        self.ready_at += [now + start_s] * (replicas - len(self.ready_at))

    def load(self, now: float) -> Load:
        held = len(self.waiting) if self.ready(now) == 0 else 0
        engine_waiting = len(self.waiting) - held
        in_flight = len(self.running) + engine_waiting
        return Load(in_flight, held, engine_waiting, len(self.running), None)


@dataclass
class Figures:
    first_scale_out: float | None = None
    capacity_ready: float | None = None
    drained: float | None = None
    peak_waiting: int = 0
    longest_wait: float = 0.0
    last_request_end: float | None = None
    zero_at: float | None = None
    replica_seconds: float = 0.0
    peak_replicas: int = 0


def keda_like(policy: Policy, state: ScaleState, load: Load, *, now: float) -> Decision:
    """Upstream's InferenceSet scaler: at least 1, at most one more per five minutes, one fewer after the delay."""
    floor = max(1, policy.min_replicas)
    per_replica = load.demand / max(state.current, 1)
    last_up = state.last_scale_up if state.last_scale_up is not None else -math.inf
    if state.current < floor or (per_replica > policy.target_in_flight and now - last_up >= 300):
        replicas = min(policy.max_replicas, max(floor, state.current + 1))
        return Decision(replicas, "ScaleOut" if replicas > state.current else "Steady", "")
    calm_from = max(
        (t for t in (state.calm_since, state.last_scale_up, state.last_scale_down) if t is not None), default=None
    )
    if state.current > floor and calm_from is not None and now - calm_from >= policy.scale_down_delay_s:
        return Decision(state.current - 1, "ScaleIn", "")
    return Decision(state.current, "Steady", "")


def run(args: argparse.Namespace, *, policy_name: str, start_replicas: int) -> Figures:
    policy = Policy(
        min_replicas=args.min,
        max_replicas=args.max,
        target_in_flight=args.target,
        scale_down_delay_s=args.scale_down_delay,
        scale_to_zero_after_s=args.scale_to_zero_after,
    )
    rule = decide if policy_name == "kaito" else keda_like
    clock, memory, cluster, figures = FakeClock(0.0), ScaleMemory(), Cluster(), Figures()
    start_s = args.provision + args.model_load
    cluster.ready_at = [-start_s] * start_replicas
    step_end = args.step_at + args.step_for
    needed = math.ceil(args.step_rate * args.service / args.target)
    arrivals, next_decision, end = 0.0, 0.0, step_end + args.service + args.tail
    status: dict[str, object] = {}
    while (now := clock.now()) < end:
        base = args.base_rate if start_replicas else 0.0  # a set at zero stays there until the step
        rate = args.step_rate if args.step_at <= now < step_end else (base if now < args.step_at else 0.0)
        arrivals += rate * args.tick
        while arrivals >= 1:
            arrivals -= 1
            cluster.waiting.append(now)
        cluster.running = [t for t in cluster.running if t > now]
        if cluster.running:
            figures.last_request_end = max(figures.last_request_end or 0.0, max(cluster.running))
        capacity = cluster.ready(now) * args.target
        while cluster.waiting and len(cluster.running) < capacity:
            figures.longest_wait = max(figures.longest_wait, now - cluster.waiting.popleft())
            bisect.insort(cluster.running, now + args.service)
        if now >= next_decision:
            load = cluster.load(now)
            status["readyReplicas"] = cluster.ready(now)
            current = len(cluster.ready_at)
            state = memory.state(policy, load, status=status, annotations={}, current=current, clock=clock)
            decision = rule(policy, state, load, now=now)
            if decision.replicas != current:
                memory.scaled(decision, now=now)
                cluster.scale(decision.replicas, now, start_s)
                scaled_out = decision.reason in ("ScaleOut", "ScaleFromZero")
                if scaled_out and now >= args.step_at and figures.first_scale_out is None:
                    figures.first_scale_out = now - args.step_at
            next_decision = now + args.period
        _observe(figures, cluster, now, args, needed, step_end)
        clock.advance(args.tick)
    return figures


def _observe(figures: Figures, cluster: Cluster, now: float, args: argparse.Namespace, needed: int, end: float) -> None:
    figures.replica_seconds += len(cluster.ready_at) * args.tick
    figures.peak_replicas = max(figures.peak_replicas, len(cluster.ready_at))
    if now < args.step_at:
        return
    figures.peak_waiting = max(figures.peak_waiting, len(cluster.waiting))
    if figures.capacity_ready is None and cluster.ready(now) >= min(needed, args.max):
        figures.capacity_ready = now - args.step_at
    if figures.drained is None and figures.capacity_ready is not None and not cluster.waiting:
        figures.drained = now - args.step_at
    if now > end and not cluster.ready_at and figures.zero_at is None:
        figures.zero_at = now


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}s"


def report(name: str, start: int, figures: Figures) -> None:
    idle = (
        figures.zero_at - figures.last_request_end
        if figures.zero_at is not None and figures.last_request_end is not None
        else None
    )
    print(
        f"{name:<14} from {start}: first scale-out {_seconds(figures.first_scale_out)}, "
        f"capacity ready {_seconds(figures.capacity_ready)}, queue drained {_seconds(figures.drained)}, "
        f"peak waiting {figures.peak_waiting}, longest wait {figures.longest_wait:.0f}s, "
        f"peak replicas {figures.peak_replicas}, idle to zero {_seconds(idle)}, "
        f"replica-hours {figures.replica_seconds / 3600:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--provision", type=float, default=240.0, help="seconds until a new replica's GPU node is Ready")
    add("--model-load", type=float, default=60.0, help="seconds from node Ready to the model served")
    add("--period", type=float, default=5.0, help="seconds between load reads and decisions")
    add("--tick", type=float, default=0.5)
    add("--target", type=int, default=16, help="in-flight requests per replica (max-num-seqs)")
    add("--service", type=float, default=8.0, help="seconds one request takes")
    add("--base-rate", type=float, default=1.0, help="requests per second before the step")
    add("--step-rate", type=float, default=10.0, help="requests per second during the step")
    add("--step-at", type=float, default=601.0, help="seconds; between two decisions, as a real step lands")
    add("--step-for", type=float, default=1800.0)
    add("--tail", type=float, default=1800.0, help="seconds simulated after the load ends")
    add("--min", type=int, default=0)
    add("--max", type=int, default=10)
    add("--scale-down-delay", type=float, default=300.0)
    add("--scale-to-zero-after", type=float, default=600.0)
    args = parser.parse_args()
    needed = math.ceil(args.step_rate * args.service / args.target)
    print(
        f"step {args.base_rate:g} -> {args.step_rate:g} req/s x {args.service:g}s needs {needed} replicas at target "
        f"{args.target}; a replica starts in {args.provision:g}s + {args.model_load:g}s; decisions every "
        f"{args.period:g}s; scaleDownDelay {args.scale_down_delay:g}s, scaleToZeroAfter {args.scale_to_zero_after:g}s"
    )
    for name in ("kaito", "upstream-keda"):
        for start in (1, 0):
            report(name, start, run(args, policy_name=name, start_replicas=start))


if __name__ == "__main__":
    main()
