"""How fast the autoscaling policy answers a step in load, how far it overshoots, and how soon an idle set goes to zero.

Run: `python benchmarks/autoscale_bench.py` (options: `--help`). Nothing real runs: a virtual clock moves in ticks
of `--tick` seconds; requests arrive at constant rates; each takes `--service` seconds on a replica that runs up to
`--target` at once (vLLM's max-num-seqs) and keeps the rest waiting, and the gateway holds requests while no
replica is ready. A replica asked for is ready `--provision` + `--model-load` seconds later (a GPU node, then the
model). Every `--period` seconds the controller reads the load and calls `decide`, through the same `ScaleMemory`
the controller uses. The gateway's counters are modelled too: requests arrived, and requests answered with the
seconds from being sent to a replica to the answer (an engine's queue included, time held excluded).

Scenarios: "step from 1" (one replica serves `--base-rate`, which steps to `--step-rate` at `--step-at` for
`--step-for` seconds and then stops); "step from 0" (a new set at zero, nothing until the step); "wake at R"
(a set that served `--base-rate` for `--served` seconds, went to zero when idle, and is woken by `--wake-rate`
for `--step-for` seconds); "new set at R" (the same wake for a set that never answered a request); "restart, wake
at R" (the wake, with the manager restarted while the set is at zero: a new memory recalled from the set's status);
"restart when idle" (a set that served `--base-rate` and went idle, the manager restarted halfway through its idle
time). The controller's status writes are modelled: the scale time and reason, and `status.autoscaling`.

Rules: "before" is `decide` without the gateway's counters (how it sized before it knew rates: every request in
flight or waiting a slot wanted now, which is also what it does until it has a rate and a duration); "after" is
`decide` with them (Little's law); "upstream-keda" is upstream KAITO's InferenceSet scaler for comparison: at least
one replica, one more at most every five minutes while the load per replica is above the target, one fewer after
the scale-down delay. In the restart scenarios, "after" recalls the set's status and "status lost" starts the new
manager with an empty memory, as one did before the status kept what autoscaling learned.

Printed per scenario and rule: the decision latency (load start to the first ScaleOut), the time until enough
capacity was ready (ready replicas x target >= the load's concurrency) and until no request waited, the peak of
waiting requests and the longest wait, the peak replicas, the time from the last request's end to zero replicas,
and the GPU replica-hours of the whole run.
"""

from __future__ import annotations

import argparse
import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kaito.controllers.autoscale import Decision, Load, Policy, ScaleMemory, ScaleState, decide, scaled_status
from kaito.controllers.traffic import GatewayCounts
from kaito.runtime.clock import FakeClock

Rule = Callable[..., Decision]


@dataclass
class Cluster:
    """Replicas (by the time each is ready), requests held (by arrival), waiting in an engine (arrival, sent) and
    running (finish, seconds since sent), and the gateway's counters."""

    ready_at: list[float] = field(default_factory=list)
    held: deque[float] = field(default_factory=deque)
    waiting: deque[tuple[float, float]] = field(default_factory=deque)
    running: list[tuple[float, float]] = field(default_factory=list)
    arrived: int = 0
    answered: int = 0
    answered_seconds: float = 0.0

    def ready(self, now: float) -> int:
        return sum(1 for t in self.ready_at if t <= now)

    def scale(self, replicas: int, now: float, start_s: float) -> None:
        self.ready_at.sort()
        while len(self.ready_at) > replicas:
            self.ready_at.pop()  # the newest, least ready first
        self.ready_at += [now + start_s] * (replicas - len(self.ready_at))

    def arrive(self, now: float) -> None:
        self.arrived += 1
        self.held.append(now)

    def serve(self, now: float, *, target: int, service: float) -> float:
        """Send held requests once a replica is ready, finish and start what the slots allow; the longest wait."""
        if self.ready(now):
            self.waiting += ((arrival, now) for arrival in self.held)
            self.held.clear()
        while self.running and self.running[0][0] <= now:
            _, seconds = self.running.pop(0)
            self.answered += 1
            self.answered_seconds += seconds
        longest = 0.0
        while self.waiting and len(self.running) < self.ready(now) * target:
            arrival, sent = self.waiting.popleft()
            longest = max(longest, now - arrival)
            bisect.insort(self.running, (now + service, now + service - sent))
        return longest

    def load(self, *, counters: bool) -> Load:
        engine_waiting, running = len(self.waiting), len(self.running)
        counts = {"gateway": GatewayCounts(self.arrived, self.answered, self.answered_seconds)} if counters else {}
        return Load(running + engine_waiting, len(self.held), engine_waiting, running, None, gateway_counts=counts)

    def pending(self) -> int:
        return len(self.held) + len(self.waiting)


@dataclass(frozen=True)
class Scenario:
    name: str
    start_replicas: int
    phases: tuple[tuple[float, float], ...]  # (from, requests per second), in order; the last rate holds to the end
    measure_from: float  # when the load being answered starts
    concurrency: float  # the load's requests at once in a steady state
    end: float
    restart_at: float | None = None  # when the manager restarts, recalling its memory from the set's status


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


def run(args: argparse.Namespace, scenario: Scenario, *, rule_name: str) -> Figures:
    policy = Policy(
        min_replicas=args.min,
        max_replicas=args.max,
        target_in_flight=args.target,
        scale_down_delay_s=args.scale_down_delay,
        scale_to_zero_after_s=args.scale_to_zero_after,
    )
    rule: Rule = keda_like if rule_name == "upstream-keda" else decide
    counters = rule_name in ("after", "status lost")
    clock, memory, cluster, figures = FakeClock(0.0), ScaleMemory(), Cluster(), Figures()
    start_s = args.provision + args.model_load
    cluster.ready_at = [-start_s] * scenario.start_replicas
    needed = min(math.ceil(scenario.concurrency / args.target), args.max)
    arrivals, next_decision = 0.0, 0.0
    status: dict[str, object] = {}
    restart_at = scenario.restart_at
    while (now := clock.now()) < scenario.end:
        if restart_at is not None and now >= restart_at:
            memory = ScaleMemory() if rule_name == "status lost" else ScaleMemory.recall(status, clock=clock)
            restart_at = None
        arrivals += _rate(scenario, now) * args.tick
        while arrivals >= 1:
            arrivals -= 1
            cluster.arrive(now)
        longest = cluster.serve(now, target=args.target, service=args.service)
        if now >= scenario.measure_from:
            figures.longest_wait = max(figures.longest_wait, longest)
        if cluster.running:
            figures.last_request_end = max(figures.last_request_end or 0.0, cluster.running[-1][0])
        if now >= next_decision:
            load = cluster.load(counters=counters)
            status["readyReplicas"] = cluster.ready(now)
            current = len(cluster.ready_at)
            state = memory.state(policy, load, status=status, annotations={}, current=current, clock=clock)
            decision = rule(policy, state, load, now=now)
            status["autoscaling"] = memory.record(target_in_flight=policy.target_in_flight).to_wire()
            if decision.replicas != current:
                memory.scaled(decision, now=now)
                status.update(scaled_status(decision, clock=clock))
                cluster.scale(decision.replicas, now, start_s)
                scaled_out = decision.reason in ("ScaleOut", "ScaleFromZero")
                if scaled_out and now >= scenario.measure_from and figures.first_scale_out is None:
                    figures.first_scale_out = now - scenario.measure_from
            next_decision = now + args.period
        _observe(figures, cluster, now, args.tick, scenario, needed)
        clock.advance(args.tick)
    return figures


def _rate(scenario: Scenario, now: float) -> float:
    rate = 0.0
    for begins, phase_rate in scenario.phases:
        if now >= begins:
            rate = phase_rate
    return rate


def _observe(figures: Figures, cluster: Cluster, now: float, tick: float, scenario: Scenario, needed: int) -> None:
    figures.replica_seconds += len(cluster.ready_at) * tick
    figures.peak_replicas = max(figures.peak_replicas, len(cluster.ready_at))
    if now < scenario.measure_from:
        return
    since = now - scenario.measure_from
    figures.peak_waiting = max(figures.peak_waiting, cluster.pending())
    if figures.capacity_ready is None and cluster.ready(now) >= needed:
        figures.capacity_ready = since
    if figures.drained is None and figures.capacity_ready is not None and not cluster.pending():
        figures.drained = since
    load_ended = now >= scenario.phases[-1][0]
    if load_ended and not cluster.ready_at and figures.zero_at is None:
        figures.zero_at = now


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}s"


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    step_end = args.step_at + args.step_for
    step = args.step_rate * args.service
    # Woken well after the idle time has taken the set to zero.
    wake_at = args.served + args.scale_to_zero_after + args.scale_down_delay + args.provision + args.model_load
    wake_end = wake_at + args.step_for
    wake = args.wake_rate * args.service
    wake_rate = f"{args.wake_rate:g} req/s"
    return [
        Scenario(
            "step from 1",
            1,
            ((0.0, args.base_rate), (args.step_at, args.step_rate), (step_end, 0.0)),
            args.step_at,
            step,
            step_end + args.tail,
        ),
        Scenario(
            "step from 0",
            0,
            ((args.step_at, args.step_rate), (step_end, 0.0)),
            args.step_at,
            step,
            step_end + args.tail,
        ),
        Scenario(
            f"wake at {wake_rate}",
            1,
            ((0.0, args.base_rate), (args.served, 0.0), (wake_at, args.wake_rate), (wake_end, 0.0)),
            wake_at,
            wake,
            wake_end + args.tail,
        ),
        Scenario(
            f"new set at {wake_rate}",
            0,
            ((wake_at, args.wake_rate), (wake_end, 0.0)),
            wake_at,
            wake,
            wake_end + args.tail,
        ),
        Scenario(
            f"restart, wake {wake_rate}",
            1,
            ((0.0, args.base_rate), (args.served, 0.0), (wake_at, args.wake_rate), (wake_end, 0.0)),
            wake_at,
            wake,
            wake_end + args.tail,
            restart_at=wake_at - args.period / 2,
        ),
        Scenario(
            "restart when idle",
            1,
            ((0.0, args.base_rate), (args.served, 0.0)),
            args.served,
            args.base_rate * args.service,
            args.served + args.tail,
            restart_at=args.served + args.scale_to_zero_after / 2,
        ),
    ]


def report(scenario: Scenario, rule: str, figures: Figures) -> None:
    idle = (
        figures.zero_at - figures.last_request_end
        if figures.zero_at is not None and figures.last_request_end is not None
        else None
    )
    print(
        f"{scenario.name:<20} {rule:<14} first scale-out {_seconds(figures.first_scale_out)}, "
        f"peak replicas {figures.peak_replicas}, capacity ready {_seconds(figures.capacity_ready)}, "
        f"queue drained {_seconds(figures.drained)}, peak waiting {figures.peak_waiting}, "
        f"longest wait {figures.longest_wait:.0f}s, idle to zero {_seconds(idle)}, "
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
    add("--base-rate", type=float, default=1.0, help="requests per second before the step, and before going idle")
    add("--step-rate", type=float, default=10.0, help="requests per second during the step")
    add("--step-at", type=float, default=601.0, help="seconds; between two decisions, as a real step lands")
    add("--step-for", type=float, default=1800.0, help="seconds the step, or the load that wakes a set, lasts")
    add("--served", type=float, default=600.0, help="seconds a set woken from zero served before it went idle")
    add("--wake-rate", type=float, default=1.0, help="requests per second that wake a set at zero")
    add("--tail", type=float, default=1800.0, help="seconds simulated after the load ends")
    add("--min", type=int, default=0)
    add("--max", type=int, default=10)
    add("--scale-down-delay", type=float, default=300.0)
    add("--scale-to-zero-after", type=float, default=600.0)
    args = parser.parse_args()
    print(
        f"{args.service:g}s per request, target {args.target} per replica, maxReplicas {args.max}; "
        f"step {args.base_rate:g} -> {args.step_rate:g} req/s needs "
        f"{math.ceil(args.step_rate * args.service / args.target)} replicas, a wake at {args.wake_rate:g} req/s "
        f"{math.ceil(args.wake_rate * args.service / args.target)}; a replica starts in {args.provision:g}s + "
        f"{args.model_load:g}s; decisions every {args.period:g}s; scaleDownDelay {args.scale_down_delay:g}s, "
        f"scaleToZeroAfter {args.scale_to_zero_after:g}s"
    )
    for scenario in scenarios(args):
        rules = ("after", "status lost") if scenario.restart_at is not None else ("before", "after", "upstream-keda")
        for rule in rules:
            report(scenario, rule, run(args, scenario, rule_name=rule))


if __name__ == "__main__":
    main()
