"""How many replicas an InferenceSet should have, decided from its load alone: a pure policy, times on one clock.

`decide` is a function of the policy, what the set is and remembers (`ScaleState`) and its load now. It scales out
at once and in proportion to the load, scales in one replica at a time after a calm delay, goes to zero after an
idle time and comes back on the first held request. Once the gateways' counters tell the arrival rate and the time
a request takes (`Traffic`), scale-out is sized by Little's law, and requests waiting count only as far as the
replicas ready and starting cannot clear them within `drain_s`. Before that, every request in flight or waiting
counts as a slot wanted now, except while the counters are read but tell no duration yet (a set that has never
answered a request): then only the requests on the replicas' slots count, since requests piling up while it waits
measure how long it was waited for, not how many requests it runs at once. `ScaleMemory` builds the `ScaleState`
of one set from the set's own status and annotations, and writes back into the status what a restarted manager
needs (`status.autoscaling`): when the set went idle and how long a request takes, so delays keep counting from the
times the set records.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kaito.api.inferenceset import ANNOTATION_DEMAND, AutoscalingStatus, parse_duration
from kaito.controllers.traffic import GatewayCounts, Traffic, TrafficMeter
from kaito.runtime.clock import Clock, api_time

Reason = Literal["ScaleOut", "ScaleIn", "ScaleToZero", "ScaleFromZero", "Steady"]
SCALE_UP_REASONS = frozenset({"ScaleOut", "ScaleFromZero"})
SCALE_DOWN_REASONS = frozenset({"ScaleIn", "ScaleToZero"})
# The gateway writes the time of its latest held request here while no replica is ready.


@dataclass(frozen=True)
class Policy:
    """`spec.autoscaling` in seconds; the last four are the policy's own constants, rarely worth changing."""

    min_replicas: int
    max_replicas: int
    target_in_flight: int
    scale_down_delay_s: float
    scale_to_zero_after_s: float | None
    high_water: float = 0.8  # a replica above this share of its target asks for one more
    kv_high: float = 0.9  # a KV cache fuller than this asks for one more
    scale_up_cooldown_s: float = 30.0  # after a scale out, only the proportional rule adds replicas
    # A backlog the replicas ready and starting would clear within this adds none. A replica asked for now serves
    # only after a GPU node and a model load (minutes), so a horizon much shorter than that would ask for replicas
    # that arrive after the backlog is gone; ten minutes is about two such starts.
    drain_s: float = 600.0


@dataclass(frozen=True)
class ScaleState:
    """What the set is and when things last happened, in the injected clock's seconds (None: unknown or never)."""

    current: int  # spec.replicas: the replicas ready and those still coming
    ready: int
    last_scale_up: float | None
    last_scale_down: float | None
    last_busy: float | None  # the latest time anything was in flight, queued or waiting
    demand_at: float | None  # the gateway's latest held request while nothing was ready
    calm_since: float | None = None  # since when the load has fitted in one replica fewer (None: not calm)
    traffic: Traffic | None = None  # the arrival rate and duration, once the gateways' counters tell them
    measuring: bool = False  # the gateways' counters are read but tell no traffic yet: a backlog is not sized


@dataclass(frozen=True)
class Readings:
    """How many pods were asked for metrics and which did not answer with them: a partial read is a lower bound."""

    gateways: int = 0
    engines: int = 0
    gateways_unread: tuple[str, ...] = ()
    engines_unread: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.gateways_unread and not self.engines_unread

    def summary(self) -> str:
        """'1 of 2 gateways and 2 of 3 engines unreadable', or '' when every pod answered."""
        parts = [
            f"{len(unread)} of {total} {kind}"
            for kind, unread, total in (
                ("gateways", self.gateways_unread, self.gateways),
                ("engines", self.engines_unread, self.engines),
            )
            if unread
        ]
        return f"{' and '.join(parts)} unreadable" if parts else ""


@dataclass(frozen=True)
class Load:
    """The set's load summed over its gateway pods and engines; KV-cache use is the fullest replica's (0..1)."""

    in_flight: float
    queued: float
    engine_waiting: float
    engine_running: float
    kv_cache_usage: float | None
    readings: Readings = field(default_factory=Readings)
    gateway_counts: Mapping[str, GatewayCounts] = field(default_factory=dict)  # per gateway pod, by address

    @property
    def demand(self) -> float:
        """Requests that want a slot now: the gateway's in flight are the engines' running and waiting (counted
        once, whichever side saw more, so clients that call a replica directly count too), plus those held."""
        return max(self.in_flight, self.engine_running + self.engine_waiting) + self.queued

    @property
    def busy(self) -> bool:
        return self.demand > 0

    @property
    def backlog(self) -> float:
        """Requests that wait for a slot: held at the gateways or waiting in an engine."""
        return self.queued + self.engine_waiting

    @property
    def in_slots(self) -> float:
        """Requests on a replica's slots now: the demand short of the backlog."""
        return max(self.in_flight - self.engine_waiting, self.engine_running)


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: Reason
    message: str


def decide(policy: Policy, state: ScaleState, load: Load, *, now: float) -> Decision:
    """The replicas the set should have now, why, and a message naming the numbers."""
    current = state.current
    if current < policy.min_replicas:
        replicas = min(policy.max_replicas, max(policy.min_replicas, _needed(policy, state, load)))
        return _to(replicas, "ScaleOut", f"{current} replicas is below minReplicas {policy.min_replicas}", current)
    if current > policy.max_replicas:
        why = f"{current} replicas is above maxReplicas {policy.max_replicas}"
        return _to(policy.max_replicas, "ScaleIn", why, current)
    if current == 0:
        return _from_zero(policy, state, load)
    return (
        _scale_out(policy, state, load, now)
        or _to_zero(policy, state, load, now)
        or _scale_in(policy, state, load, now)
        or Decision(current, "Steady", _steady_message(policy, state, load, now))
    )


def _to(replicas: int, reason: Reason, why: str, current: int) -> Decision:
    return Decision(replicas, reason, f"{why}: {current} -> {replicas}")


def wanted(policy: Policy, traffic: Traffic | None, load: Load) -> float:
    """Slots the load wants now. Without traffic: every request in flight, held or waiting.

    With it: the steady concurrency (arrival rate x duration) plus the backlog as if it arrived over `drain_s`.
    N replicas at target T clear a backlog Q within `drain_s` H when Q <= H (N T - rate x duration) / duration,
    which is exactly when this stays within N T: a backlog that the replicas ready and starting will clear in time
    asks for nothing more, and only the rest adds replicas. A waiting request never counts for more than one slot.
    Requests the engines have that no gateway sent (clients calling a replica directly) count a slot each.
    """
    if traffic is None:
        return load.demand
    unsent = max(0.0, load.engine_running + load.engine_waiting - load.in_flight)
    return traffic.concurrency + load.backlog * min(1.0, traffic.duration / policy.drain_s) + unsent


def _needed(policy: Policy, state: ScaleState, load: Load) -> int:
    """Replicas for the load; while measuring, for the requests on the slots alone (a backlog is not a rate yet)."""
    return _slots(policy, load.in_slots if state.measuring else wanted(policy, state.traffic, load))


def _slots(policy: Policy, wanted_slots: float) -> int:
    """Replicas for that many slots; the tolerance keeps exactly N targets, computed in floating point, at N."""
    return math.ceil(wanted_slots / policy.target_in_flight - 1e-9)


def _from_zero(policy: Policy, state: ScaleState, load: Load) -> Decision:
    last_scale = max((t for t in (state.last_scale_up, state.last_scale_down) if t is not None), default=None)
    fresh_demand = state.demand_at is not None and (last_scale is None or state.demand_at > last_scale)
    if not (load.queued > 0 or fresh_demand):
        return Decision(0, "Steady", "no request is held: staying at 0")
    # The requests held at this moment came within one reading: a burst, measured, whatever the set knows.
    replicas = min(policy.max_replicas, max(1, _slots(policy, wanted(policy, state.traffic, load))))
    why = f"{_num(load.queued)} requests held at the gateway" if load.queued > 0 else "a request was held"
    return _to(replicas, "ScaleFromZero", why, 0)


def _scale_out(policy: Policy, state: ScaleState, load: Load, now: float) -> Decision | None:
    current, target = state.current, policy.target_in_flight
    needed = _needed(policy, state, load)
    desired, why = needed, f"exceeds target {target} per replica"
    pressure = _pressure(policy, state, load)
    # Replicas still starting are capacity coming: the proportional rule counts them, the one-more nudge waits.
    settled = state.ready >= current and (
        state.last_scale_up is None or now - state.last_scale_up >= policy.scale_up_cooldown_s
    )
    if pressure and settled and current + 1 > desired:
        desired, why = current + 1, pressure
    desired = min(desired, policy.max_replicas)
    if desired <= current:
        return None
    return _to(desired, "ScaleOut", f"{_describe(load, state.traffic)} over {current} replicas {why}", current)


def _pressure(policy: Policy, state: ScaleState, load: Load) -> str:
    """Why the set needs one more replica before queues grow, or '' when it does not.

    With traffic known, waiting requests press only through `wanted`: a backlog the replicas clear in time does not.
    While measuring, they do not press at all: only the requests on the slots do.
    """
    traffic, current = state.traffic, state.current
    if traffic is None and load.backlog > 0 and not state.measuring:
        return "leaves requests waiting"
    if load.kv_cache_usage is not None and load.kv_cache_usage > policy.kv_high:
        return f"with a KV cache {load.kv_cache_usage:.0%} full (over {policy.kv_high:.0%})"
    level = load.in_slots if state.measuring else wanted(policy, traffic, load)
    # With a rate known, one replica beyond what Little's law asks is all the headroom the nudge adds.
    beyond = traffic is not None and current > _slots(policy, level)
    if level > policy.high_water * policy.target_in_flight * current and not beyond:
        return f"passes {policy.high_water:.0%} of target {policy.target_in_flight} per replica"
    return ""


def _idle_since(state: ScaleState) -> float | None:
    """Idle since the latest sign of use; unknown when the set was never seen busy or idle."""
    if state.last_busy is None:
        return None
    return max(t for t in (state.last_busy, state.demand_at, state.last_scale_up) if t is not None)


def _to_zero(policy: Policy, state: ScaleState, load: Load, now: float) -> Decision | None:
    after = policy.scale_to_zero_after_s
    arriving = state.traffic is not None and state.traffic.rate > 0  # requests may come and go between reads
    if policy.min_replicas > 0 or after is None or load.busy or arriving or not load.readings.complete:
        return None
    idle_since = _idle_since(state)
    if idle_since is None or now - idle_since < after:
        return None
    why = f"nothing in flight, queued or waiting for {now - idle_since:.0f}s (scaleToZeroAfter {after:g}s)"
    return _to(0, "ScaleToZero", why, state.current)


def _calm_from(state: ScaleState) -> float | None:
    if state.calm_since is None:
        return None
    return max(t for t in (state.calm_since, state.last_scale_up, state.last_scale_down) if t is not None)


def _scale_in(policy: Policy, state: ScaleState, load: Load, now: float) -> Decision | None:
    current = state.current
    if current <= max(policy.min_replicas, 1) or not calm(policy, load, current, traffic=state.traffic):
        return None
    calm_from = _calm_from(state)
    if calm_from is None or now - calm_from < policy.scale_down_delay_s:
        return None
    fewer = current - 1
    why = (
        f"{_describe(load, state.traffic)} fits in {fewer} replicas under {policy.high_water:.0%} of target "
        f"{policy.target_in_flight} for {now - calm_from:.0f}s"
    )
    return _to(fewer, "ScaleIn", why, current)


def calm(policy: Policy, load: Load, current: int, *, traffic: Traffic | None = None) -> bool:
    """Whether the load fits in one replica fewer without asking for it back, every pod having answered."""
    fewer = current - 1
    return (
        load.readings.complete
        and load.backlog == 0
        and (load.kv_cache_usage is None or load.kv_cache_usage <= policy.kv_high)
        and max(load.demand, wanted(policy, traffic, load)) <= policy.high_water * policy.target_in_flight * fewer
    )


def _steady_message(policy: Policy, state: ScaleState, load: Load, now: float) -> str:
    current = state.current
    text = f"{_describe(load, state.traffic)} over {current} replicas at target {policy.target_in_flight} per replica"
    if current == policy.max_replicas and _pressure(policy, state, load):
        text += f"; at maxReplicas {policy.max_replicas}"
    elif state.ready < current:
        text += f"; {current - state.ready} replicas still starting"
    elif state.measuring and load.backlog:
        text += "; requests waiting count once a request's duration is measured"
    elif (calm_from := _calm_from(state)) is not None and current > max(policy.min_replicas, 1):
        text += f"; calm for {now - calm_from:.0f}s of scaleDownDelay {policy.scale_down_delay_s:g}s"
    if note := load.readings.summary():
        text += f"; {note}"
    return text


def _describe(load: Load, traffic: Traffic | None) -> str:
    if traffic is not None:
        text = f"{_num(round(traffic.rate, 2))} req/s x {_num(round(traffic.duration, 1))}s"
        return text + (f" + waiting {_num(load.backlog)}" if load.backlog else "")
    if load.engine_running + load.engine_waiting > load.in_flight:
        text = f"engines running {_num(load.engine_running)} + waiting {_num(load.engine_waiting)}"
    else:
        text = f"in flight {_num(load.in_flight)}"
    return text + (f" + queued {_num(load.queued)}" if load.queued else "")


def _num(value: float) -> str:
    return f"{value:g}"


def clock_seconds(text: str | None, clock: Clock) -> float | None:
    """An RFC3339 time written on the set, as the clock's seconds (None when absent or unreadable)."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return clock.now() - (clock.wall() - moment).total_seconds()


def scaled_status(decision: Decision, *, clock: Clock) -> dict[str, Any]:
    """The status fields a scaling decision writes: when, why and to what."""
    return {
        "lastScaleTime": api_time(clock.wall()),
        "lastScaleReason": decision.reason,
        "desiredReplicas": decision.replicas,
    }


DURATION_CHANGE = 0.1  # a learned duration is written again once it moves by more than this share


def format_duration(seconds: float) -> str:
    """A Go duration as the set's status writes one: `8.2s`, or `350ms` below a second (never below 1ms)."""
    return f"{seconds:.1f}s" if seconds >= 1 else f"{max(1, round(seconds * 1000))}ms"


@dataclass
class ScaleMemory:
    """What the manager remembers of one set between decisions; the rest comes from the set itself each time.

    `recall` starts one from the set's `status.autoscaling`: the time it went idle and the duration learned before.
    A set whose status says nothing of idleness (it was busy, or the manager stopped before writing it) counts as
    busy now: waiting out the idle time once more is cheaper than releasing GPUs that were in use.
    """

    last_busy: float | None = None
    last_busy_at: str | None = None  # last_busy as the wall time written in the status
    busy: bool = True  # at the latest observation
    calm_since: float | None = None
    calm_at: int | None = None  # the replica count the calm was measured against
    last_scale_up: float | None = None
    last_scale_down: float | None = None
    meter: TrafficMeter = field(default_factory=TrafficMeter)
    written_duration: float | None = None  # the duration in the status, rewritten only when it moves

    @classmethod
    def recall(cls, status: Mapping[str, Any], *, clock: Clock) -> ScaleMemory:
        """A memory for a set this manager has not seen yet, from what its status recorded."""
        record = status.get("autoscaling") or {}
        idle_text = record.get("idleSince")
        idle_since = clock_seconds(idle_text, clock)
        duration = _duration(record.get("observedRequestDuration"))
        memory = cls(meter=TrafficMeter(duration=duration), written_duration=duration)
        if idle_since is not None:
            memory.last_busy, memory.last_busy_at, memory.busy = idle_since, idle_text, False
        return memory

    def state(
        self,
        policy: Policy,
        load: Load,
        *,
        status: Mapping[str, Any],
        annotations: Mapping[str, str],
        current: int,
        clock: Clock,
    ) -> ScaleState:
        """Observe the load now and return the set's ScaleState for `decide`."""
        now = clock.now()
        waiting = load.backlog > 0
        traffic = self.meter.observe(load.gateway_counts, now=now, waiting=waiting, running=load.engine_running)
        arrived = bool(load.gateway_counts) and (self.meter.rate or 0.0) > 0  # even if each came and went unseen
        # Replicas still starting are capacity someone asked for: the idle time counts once all are ready.
        starting = int(status.get("readyReplicas") or 0) < current
        self.busy = self.last_busy is None or load.busy or arrived or starting or not load.readings.complete
        if self.busy:
            self.last_busy, self.last_busy_at = now, api_time(clock.wall())
        if not calm(policy, load, current, traffic=traffic):
            self.calm_since = None
        elif self.calm_since is None or self.calm_at != current:
            self.calm_since, self.calm_at = now, current
        up, down = self.last_scale_up, self.last_scale_down
        recorded = clock_seconds(status.get("lastScaleTime"), clock)
        reason = status.get("lastScaleReason")
        if recorded is not None and reason in SCALE_UP_REASONS:
            up = _latest(up, recorded)
        if recorded is not None and reason in SCALE_DOWN_REASONS:
            down = _latest(down, recorded)
        return ScaleState(
            current=current,
            ready=int(status.get("readyReplicas") or 0),
            last_scale_up=up,
            last_scale_down=down,
            last_busy=self.last_busy,
            demand_at=clock_seconds(annotations.get(ANNOTATION_DEMAND), clock),
            calm_since=self.calm_since,
            traffic=traffic,
            measuring=bool(load.gateway_counts) and traffic is None,
        )

    def scaled(self, decision: Decision, *, now: float) -> None:
        """Remember a decision that was written, in case the next read of the set predates it."""
        if decision.reason in SCALE_UP_REASONS:
            self.last_scale_up = now
        elif decision.reason in SCALE_DOWN_REASONS:
            self.last_scale_down = now

    def record(self, *, target_in_flight: int) -> AutoscalingStatus:
        """What the set's status should keep now. The duration is rewritten only when it has moved by more than
        `DURATION_CHANGE`, so a steady set's status is not written on every reading."""
        learned = self.meter.duration
        if learned is not None and (
            self.written_duration is None
            or abs(learned - self.written_duration) > DURATION_CHANGE * self.written_duration
        ):
            self.written_duration = learned
        duration = None if self.written_duration is None else format_duration(self.written_duration)
        return AutoscalingStatus(
            idle_since=None if self.busy else self.last_busy_at,
            observed_request_duration=duration,
            target_in_flight_per_replica=target_in_flight,
        )


def _duration(text: Any) -> float | None:
    """A learned duration read back from the status; None when absent, unreadable or not positive."""
    if not isinstance(text, str):
        return None
    try:
        seconds = parse_duration(text)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _latest(a: float | None, b: float) -> float:
    return b if a is None else max(a, b)
