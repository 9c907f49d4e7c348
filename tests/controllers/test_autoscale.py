"""The autoscaling policy: what it decides for a set's load, the invariants it keeps, and the times it remembers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaito.api.inferenceset import ANNOTATION_DEMAND
from kaito.controllers.autoscale import (
    Decision,
    Load,
    Policy,
    Readings,
    ScaleMemory,
    ScaleState,
    clock_seconds,
    decide,
    scaled_status,
    wanted,
)
from kaito.controllers.traffic import GatewayCounts, Traffic
from kaito.runtime.clock import FakeClock, api_time

NOW = 10_000.0
POLICY = Policy(min_replicas=1, max_replicas=8, target_in_flight=6, scale_down_delay_s=300, scale_to_zero_after_s=None)
TO_ZERO = Policy(min_replicas=0, max_replicas=8, target_in_flight=6, scale_down_delay_s=300, scale_to_zero_after_s=600)


def load(
    in_flight: float = 0,
    queued: float = 0,
    *,
    waiting: float = 0,
    running: float = 0,
    kv: float | None = None,
    readings: Readings | None = None,
) -> Load:
    return Load(in_flight, queued, waiting, running, kv, readings or Readings())


def state(
    current: int,
    *,
    ready: int | None = None,
    up: float | None = None,
    down: float | None = None,
    busy: float | None = NOW,
    demand: float | None = None,
    calm: float | None = None,
    traffic: Traffic | None = None,
) -> ScaleState:
    return ScaleState(current, current if ready is None else ready, up, down, busy, demand, calm, traffic)


CASES = [
    pytest.param(POLICY, state(2), load(14, 3), 3, "ScaleOut", id="in-flight-and-queued-over-target"),
    pytest.param(POLICY, state(2), load(10), 3, "ScaleOut", id="past-80-percent-asks-one-more"),
    pytest.param(POLICY, state(2), load(9), 2, "Steady", id="at-75-percent-holds"),
    pytest.param(POLICY, state(2), load(2, kv=0.95), 3, "ScaleOut", id="kv-cache-nearly-full"),
    pytest.param(POLICY, state(2), load(6, waiting=1), 3, "ScaleOut", id="engine-waiting"),
    pytest.param(POLICY, state(2), load(0, running=12, waiting=3), 3, "ScaleOut", id="engines-busy-past-the-gateway"),
    pytest.param(POLICY, state(1), load(60), 8, "ScaleOut", id="step-clamped-to-max"),
    pytest.param(POLICY, state(1), load(40), 7, "ScaleOut", id="step-in-one-decision"),
    pytest.param(POLICY, state(3, ready=2), load(12, 2), 3, "Steady", id="starting-replica-is-capacity-coming"),
    pytest.param(POLICY, state(2, up=NOW - 10), load(10), 2, "Steady", id="nudge-waits-for-cooldown"),
    pytest.param(POLICY, state(2, up=NOW - 10), load(30), 5, "ScaleOut", id="proportional-ignores-cooldown"),
    pytest.param(POLICY, state(8), load(100, 40), 8, "Steady", id="at-max"),
    pytest.param(POLICY, state(3, calm=NOW - 400), load(4), 2, "ScaleIn", id="calm-past-delay-removes-one"),
    pytest.param(POLICY, state(6, calm=NOW - 400), load(0), 5, "ScaleIn", id="idle-still-one-at-a-time"),
    pytest.param(POLICY, state(3, calm=NOW - 100), load(4), 3, "Steady", id="calm-not-long-enough"),
    pytest.param(POLICY, state(3, calm=NOW - 400, down=NOW - 60), load(4), 3, "Steady", id="delay-after-scale-in"),
    pytest.param(POLICY, state(3, calm=NOW - 400), load(10), 3, "Steady", id="would-not-fit-in-fewer"),
    pytest.param(POLICY, state(1, calm=NOW - 4000), load(0), 1, "Steady", id="min-is-the-floor"),
    pytest.param(POLICY, state(0), load(0), 1, "ScaleOut", id="below-min"),
    pytest.param(POLICY, state(0), load(0, 20), 4, "ScaleOut", id="below-min-with-load-takes-what-is-needed"),
    pytest.param(POLICY, state(11), load(0), 8, "ScaleIn", id="above-max"),
    pytest.param(TO_ZERO, state(2, busy=NOW - 700), load(0), 0, "ScaleToZero", id="idle-past-scale-to-zero-after"),
    pytest.param(TO_ZERO, state(2, busy=NOW - 500), load(0), 2, "Steady", id="idle-not-long-enough"),
    pytest.param(TO_ZERO, state(1, busy=NOW - 700, up=NOW - 100), load(0), 1, "Steady", id="just-woken"),
    pytest.param(TO_ZERO, state(1, busy=NOW - 700), load(0, running=1), 1, "Steady", id="engine-still-running"),
    pytest.param(TO_ZERO, state(0, down=NOW - 50, demand=NOW - 1), load(0), 1, "ScaleFromZero", id="fresh-demand"),
    pytest.param(TO_ZERO, state(0, down=NOW - 50, demand=NOW - 90), load(0), 0, "Steady", id="stale-demand"),
    pytest.param(TO_ZERO, state(0, down=NOW - 50), load(0, 20), 4, "ScaleFromZero", id="queued-at-zero"),
    pytest.param(TO_ZERO, state(0), load(0), 0, "Steady", id="zero-stays-zero"),
]


@pytest.mark.parametrize(("policy", "scale", "now_load", "replicas", "reason"), CASES)
def test_decide(policy: Policy, scale: ScaleState, now_load: Load, replicas: int, reason: str) -> None:
    decision = decide(policy, scale, now_load, now=NOW)
    assert (decision.replicas, decision.reason) == (replicas, reason), decision.message


def test_messages_name_the_numbers() -> None:
    assert decide(POLICY, state(2), load(14, 3), now=NOW) == Decision(
        3, "ScaleOut", "in flight 14 + queued 3 over 2 replicas exceeds target 6 per replica: 2 -> 3"
    )
    assert "KV cache 95% full" in decide(POLICY, state(2), load(2, kv=0.95), now=NOW).message
    assert decide(POLICY, state(3, calm=NOW - 400), load(4), now=NOW).message == (
        "in flight 4 fits in 2 replicas under 80% of target 6 for 400s: 3 -> 2"
    )
    assert decide(TO_ZERO, state(2, busy=NOW - 700), load(0), now=NOW).message == (
        "nothing in flight, queued or waiting for 700s (scaleToZeroAfter 600s): 2 -> 0"
    )
    assert decide(TO_ZERO, state(0), load(0, 2), now=NOW).message == "2 requests held at the gateway: 0 -> 1"
    steady = decide(POLICY, state(3, calm=NOW - 100), load(4), now=NOW).message
    assert steady == "in flight 4 over 3 replicas at target 6 per replica; calm for 100s of scaleDownDelay 300s"


def test_a_partial_read_neither_scales_in_nor_to_zero_and_says_so() -> None:
    partial = Readings(gateways=2, engines=3, engines_unread=("http://a/metrics", "http://b/metrics"))
    scale_in = decide(POLICY, state(3, calm=NOW - 400), load(4, readings=partial), now=NOW)
    assert (scale_in.replicas, scale_in.reason) == (3, "Steady")
    assert scale_in.message.endswith("; 2 of 3 engines unreadable")
    to_zero = decide(TO_ZERO, state(2, busy=NOW - 700), load(0, readings=partial), now=NOW)
    assert (to_zero.replicas, to_zero.reason) == (2, "Steady")
    scale_out = decide(POLICY, state(2), load(30, readings=partial), now=NOW)  # what was read is a lower bound
    assert (scale_out.replicas, scale_out.reason) == (5, "ScaleOut")


# With the arrival rate and duration known (target 6 per replica, drainS 600).

RATE_CASES = [
    pytest.param(state(1, traffic=Traffic(9, 3)), load(6, 10), 5, "ScaleOut", id="rate-sizes-the-step-at-once"),
    pytest.param(
        state(5, ready=1, traffic=Traffic(9, 3)), load(6, 200), 5, "Steady", id="backlog-starting-replicas-will-clear"
    ),
    pytest.param(state(5, ready=1, traffic=Traffic(9, 3)), load(6, 800), 6, "ScaleOut", id="backlog-beyond-drain-s"),
    pytest.param(
        state(2, traffic=Traffic(9, 3)), load(206, waiting=200, running=6), 5, "ScaleOut", id="engine-waiting-counts"
    ),
    pytest.param(
        state(4, traffic=Traffic(6, 3)), load(24, 6, waiting=6, running=18), 4, "Steady", id="ready-and-clearing"
    ),
    pytest.param(state(6, traffic=Traffic(10, 3)), load(30), 6, "Steady", id="nudge-adds-one-beyond-the-rate-at-most"),
    pytest.param(state(5, traffic=Traffic(10, 3)), load(30), 6, "ScaleOut", id="nudge-at-the-rate"),
    pytest.param(state(2, traffic=Traffic(1, 3)), load(2, running=20), 4, "ScaleOut", id="direct-callers-count-a-slot"),
    pytest.param(
        state(1, ready=0, up=NOW - 100, traffic=Traffic(0.5, 8)), load(0, 100), 1, "Steady", id="woken-replica-coming"
    ),
    pytest.param(state(3, calm=NOW - 400, traffic=Traffic(3, 3)), load(4), 2, "ScaleIn", id="calm-at-the-rate"),
    pytest.param(state(3, calm=NOW - 400, traffic=Traffic(4, 3)), load(4), 3, "Steady", id="rate-not-fit-in-fewer"),
]


@pytest.mark.parametrize(("scale", "now_load", "replicas", "reason"), RATE_CASES)
def test_decide_from_the_rate(scale: ScaleState, now_load: Load, replicas: int, reason: str) -> None:
    decision = decide(POLICY, scale, now_load, now=NOW)
    assert (decision.replicas, decision.reason) == (replicas, reason), decision.message


def test_a_set_woken_at_a_known_rate_sizes_from_it_not_from_what_it_held() -> None:
    woken = decide(TO_ZERO, state(0, down=NOW - 50, traffic=Traffic(1, 8)), load(0, 30), now=NOW)
    assert (woken.replicas, woken.reason) == (2, "ScaleFromZero")  # 8 at once, not 30: today's rule gave 5
    assert decide(TO_ZERO, state(0, down=NOW - 50), load(0, 30), now=NOW).replicas == 5


def test_a_rate_message_names_the_rate_and_the_backlog() -> None:
    decision = decide(POLICY, state(5, ready=1, traffic=Traffic(9, 3)), load(6, 800), now=NOW)
    assert decision.message == "9 req/s x 3s + waiting 800 over 5 replicas exceeds target 6 per replica: 5 -> 6"


# Properties over any policy, state and load.

times = st.one_of(st.none(), st.floats(min_value=NOW - 5000, max_value=NOW))
amounts = st.one_of(st.just(0.0), st.floats(min_value=0, max_value=500))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    low = draw(st.integers(0, 5))
    return Policy(
        min_replicas=low,
        max_replicas=draw(st.integers(max(1, low), 12)),
        target_in_flight=draw(st.integers(1, 64)),
        scale_down_delay_s=draw(st.floats(0, 1000)),
        scale_to_zero_after_s=draw(st.one_of(st.none(), st.floats(0, 2000))),
    )


@st.composite
def states(draw: st.DrawFn) -> ScaleState:
    current = draw(st.integers(0, 15))
    return ScaleState(
        current, draw(st.integers(0, current)), draw(times), draw(times), draw(times), draw(times), draw(times)
    )


@st.composite
def loads(draw: st.DrawFn) -> Load:
    kv = draw(st.one_of(st.none(), st.floats(0, 1)))
    unread = draw(st.sampled_from([(), ("http://x/metrics",)]))
    readings = Readings(gateways=2, engines=2, engines_unread=unread)
    return Load(draw(amounts), draw(amounts), draw(amounts), draw(amounts), kv, readings)


@settings(max_examples=400)
@given(policies(), states(), loads())
def test_decisions_keep_their_promises(policy: Policy, scale: ScaleState, now_load: Load) -> None:
    decision = decide(policy, scale, now_load, now=NOW)
    current, replicas = scale.current, decision.replicas
    assert policy.min_replicas <= replicas <= policy.max_replicas
    assert (replicas == current) == (decision.reason == "Steady")
    in_range = policy.min_replicas <= current <= policy.max_replicas
    if replicas < current and in_range:
        assert now_load.queued == 0 and now_load.engine_waiting == 0, "scaled in while requests wait"
        assert now_load.readings.complete
    if decision.reason == "ScaleIn" and in_range:
        assert replicas == current - 1
    if replicas == 0 and current > 0:
        after = policy.scale_to_zero_after_s
        assert policy.min_replicas == 0 and after is not None
        assert not now_load.busy, "went to zero while busy"
        assert scale.last_busy is not None and NOW - scale.last_busy >= after
    if current > 0 or now_load.queued > 0:
        needed = math.ceil(now_load.demand / policy.target_in_flight)
        assert replicas >= min(policy.max_replicas, needed), "a step in load took more than one decision"
    if current == 0 and replicas > 0 and policy.min_replicas == 0:
        assert decision.reason == "ScaleFromZero"


@given(policies(), st.integers(1, 15), st.floats(1, 400))
def test_scale_in_never_undoes_itself(policy: Policy, current: int, demand: float) -> None:
    """After a scale in, the same load asks for no replica back: the hysteresis holds."""
    calm = ScaleState(current, current, None, None, NOW, None, NOW - 5000)
    first = decide(policy, calm, load(demand), now=NOW)
    if first.reason != "ScaleIn" or current > policy.max_replicas:
        return
    after = ScaleState(first.replicas, first.replicas, None, NOW, NOW, None, None)
    assert decide(policy, after, load(demand), now=NOW + 1).reason != "ScaleOut"


# The memory a controller keeps per set, and the set's own times.

WALL = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_times_written_on_the_set_read_back_as_clock_seconds() -> None:
    clock = FakeClock(5000.0, wall_start=WALL)
    clock.advance(42)
    written = scaled_status(Decision(3, "ScaleOut", "m"), clock=clock)
    assert written == {"lastScaleTime": "2026-03-01T12:00:42Z", "lastScaleReason": "ScaleOut", "desiredReplicas": 3}
    clock.advance(100)
    assert clock_seconds(written["lastScaleTime"], clock) == 5042.0
    assert clock_seconds("2026-03-01T12:00:00.500000+00:00", clock) == 5000.5
    assert clock_seconds("not a time", clock) is None
    assert clock_seconds(None, clock) is None


def test_a_restarted_manager_counts_delays_from_the_sets_own_times() -> None:
    clock = FakeClock(5000.0, wall_start=WALL)
    status = {"readyReplicas": 2, "lastScaleTime": api_time(WALL), "lastScaleReason": "ScaleIn"}
    annotations = {ANNOTATION_DEMAND: api_time(WALL - dt.timedelta(seconds=30))}
    clock.advance(200)
    scale = ScaleMemory().state(TO_ZERO, load(0), status=status, annotations=annotations, current=2, clock=clock)
    assert scale == ScaleState(2, 2, None, 5000.0, 5200.0, 4970.0, 5200.0)
    status["lastScaleReason"] = "ScaleFromZero"
    scale = ScaleMemory().state(TO_ZERO, load(0), status=status, annotations={}, current=2, clock=clock)
    assert (scale.last_scale_up, scale.last_scale_down, scale.demand_at) == (5000.0, None, None)


def test_a_new_memory_waits_out_the_idle_time_once_more() -> None:
    clock = FakeClock(0.0, wall_start=WALL)
    memory = ScaleMemory()
    decisions = []
    for _ in range(8):
        scale = memory.state(TO_ZERO, load(0), status={"readyReplicas": 1}, annotations={}, current=1, clock=clock)
        decisions.append((clock.now(), decide(TO_ZERO, scale, load(0), now=clock.now()).reason))
        clock.advance(100)
    assert decisions[5:7] == [(500.0, "Steady"), (600.0, "ScaleToZero")]
    assert {reason for _, reason in decisions[:6]} == {"Steady"}


def test_the_idle_time_starts_once_the_replicas_are_ready() -> None:
    clock = FakeClock(0.0, wall_start=WALL)
    memory = ScaleMemory()
    reasons = []
    for ready in (0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1):  # a first replica that takes 800 s to start
        scale = memory.state(TO_ZERO, load(0), status={"readyReplicas": ready}, annotations={}, current=1, clock=clock)
        reasons.append(decide(TO_ZERO, scale, load(0), now=clock.now()).reason)
        clock.advance(100)
    # 600 s after it was last seen starting (t=700), not after it was asked for (t=0)
    assert reasons.index("ScaleToZero") == 7 + 6


def test_memory_tracks_busy_and_calm() -> None:
    clock = FakeClock(0.0, wall_start=WALL)
    memory = ScaleMemory()

    def observe(now_load: Load, current: int = 3) -> ScaleState:
        status = {"readyReplicas": current}
        return memory.state(POLICY, now_load, status=status, annotations={}, current=current, clock=clock)

    assert observe(load(4)).calm_since == 0.0  # 4 fits in 2 replicas under 80% of 6
    clock.advance(50)
    assert (observe(load(3)).calm_since, memory.last_busy) == (0.0, 50.0)
    clock.advance(10)
    assert observe(load(0, 1)).calm_since is None  # a queued request ends the calm
    clock.advance(10)
    assert observe(load(0)).calm_since == 70.0
    clock.advance(10)
    assert observe(load(0), current=2).calm_since == 80.0  # one fewer replica: the calm counts again
    clock.advance(10)
    assert observe(load(0), current=2).last_busy == 60.0  # the queued request was the last sign of use
    observe(load(0, readings=Readings(engines=1, engines_unread=("u",))), current=2)
    assert memory.last_busy == 90.0  # an unread engine may be busy


def test_a_written_decision_counts_even_when_the_next_read_of_the_set_predates_it() -> None:
    clock = FakeClock(0.0, wall_start=WALL)
    memory = ScaleMemory()
    memory.scaled(Decision(3, "ScaleOut", "m"), now=clock.now())
    clock.advance(5)
    stale = {"readyReplicas": 2, "lastScaleTime": api_time(WALL - dt.timedelta(hours=1)), "lastScaleReason": "ScaleOut"}
    scale = memory.state(POLICY, load(10), status=stale, annotations={}, current=3, clock=clock)
    assert scale.last_scale_up == 0.0
    memory.scaled(Decision(2, "ScaleIn", "m"), now=clock.now())
    assert memory.last_scale_down == 5.0


# Properties with the rate known.

traffics = st.builds(Traffic, st.floats(0, 100), st.floats(0.01, 1000))


@settings(max_examples=400)
@given(policies(), states(), loads(), traffics)
def test_decisions_from_a_rate_keep_their_promises(
    policy: Policy, scale: ScaleState, now_load: Load, traffic: Traffic
) -> None:
    scale = dataclasses.replace(scale, traffic=traffic)
    decision = decide(policy, scale, now_load, now=NOW)
    current, replicas = scale.current, decision.replicas
    assert policy.min_replicas <= replicas <= policy.max_replicas
    assert (replicas == current) == (decision.reason == "Steady")
    in_range = policy.min_replicas <= current <= policy.max_replicas
    if replicas < current and in_range:
        assert now_load.backlog == 0 and now_load.readings.complete, "scaled in while requests wait"
    if decision.reason == "ScaleIn" and in_range:
        assert replicas == current - 1
    if replicas == 0 and current > 0:
        assert not now_load.busy and traffic.rate == 0 and policy.min_replicas == 0, "went to zero while used"
    if current == 0 and replicas > 0 and policy.min_replicas == 0:
        assert decision.reason == "ScaleFromZero"
    if current > 0 or now_load.queued > 0:
        needed = math.ceil(traffic.concurrency / policy.target_in_flight - 1e-9)
        assert replicas >= min(policy.max_replicas, needed), "a step in the rate took more than one decision"


@settings(max_examples=400)
@given(policies(), states(), traffics, st.floats(0, 500), st.floats(0, 500), st.one_of(st.none(), st.floats(0, 0.9)))
def test_a_steady_rate_never_asks_for_more_than_one_replica_beyond_it(
    policy: Policy, scale: ScaleState, traffic: Traffic, running: float, extra: float, kv: float | None
) -> None:
    """No backlog, every engine request sent by a gateway: at most ceil(rate x duration / target) + 1 replicas."""
    steady = load(running + extra, running=running, kv=kv)
    decision = decide(policy, dataclasses.replace(scale, traffic=traffic), steady, now=NOW)
    if decision.replicas > scale.current:
        bound = math.ceil(traffic.concurrency / policy.target_in_flight - 1e-9) + 1
        assert decision.replicas <= max(policy.min_replicas, bound), decision.message


@settings(max_examples=400)
@given(policies(), st.data())
def test_a_backlog_the_starting_replicas_will_clear_adds_none(policy: Policy, data: st.DataObject) -> None:
    current = data.draw(st.integers(max(1, policy.min_replicas), policy.max_replicas))
    ready = data.draw(st.integers(0, current - 1))
    slots = current * policy.target_in_flight
    duration = data.draw(st.floats(0.01, 1000))
    rate = data.draw(st.floats(0, 1)) * slots / duration
    room = (slots - rate * duration) / min(1.0, duration / policy.drain_s)  # the backlog cleared within drainS
    held, waiting = data.draw(st.floats(0, 1)) * room, 0.0
    if data.draw(st.booleans()):
        held, waiting = 0.0, held
    now_load = load(waiting, held, waiting=waiting, kv=data.draw(st.one_of(st.none(), st.floats(0, 1))))
    traffic = Traffic(rate, duration)
    assert wanted(policy, traffic, now_load) <= slots * (1 + 1e-9)
    scale = ScaleState(current, ready, data.draw(times), None, NOW, None, None, traffic)
    decision = decide(policy, scale, now_load, now=NOW)
    assert decision.replicas <= current, decision.message


@given(policies(), st.integers(1, 15), st.floats(1, 400), traffics)
def test_scale_in_from_a_rate_never_undoes_itself(
    policy: Policy, current: int, demand: float, traffic: Traffic
) -> None:
    calm = ScaleState(current, current, None, None, NOW, None, NOW - 5000, traffic)
    first = decide(policy, calm, load(demand), now=NOW)
    if first.reason != "ScaleIn" or current > policy.max_replicas:
        return
    after = ScaleState(first.replicas, first.replicas, None, NOW, NOW, None, None, traffic)
    assert decide(policy, after, load(demand), now=NOW + 1).reason != "ScaleOut"


def test_memory_takes_the_rate_from_two_readings_and_counts_arrivals_as_use() -> None:
    clock = FakeClock(0.0, wall_start=WALL)
    memory = ScaleMemory()

    def observe(arrived: float, answered: float, seconds: float) -> ScaleState:
        counted = Load(0, 0, 0, 0, None, gateway_counts={"gw": GatewayCounts(arrived, answered, seconds)})
        return memory.state(TO_ZERO, counted, status={"readyReplicas": 1}, annotations={}, current=1, clock=clock)

    assert observe(0, 0, 0).traffic is None  # one reading tells no rate
    clock.advance(10)
    assert observe(5, 5, 20).traffic == Traffic(0.5, 4.0)
    assert memory.last_busy == 10.0  # nothing was in flight at either read, yet requests came and went
    clock.advance(10)
    assert observe(5, 5, 20).traffic == Traffic(0.0, 4.0)
    assert memory.last_busy == 10.0


# What the set's status keeps for the next manager, and the set that has never measured a request.


def test_before_a_duration_is_known_only_the_requests_on_the_slots_count() -> None:
    # Held while the first replica starts: how long it was waited for, not how many it will run at once.
    waking = dataclasses.replace(state(1, ready=0), measuring=True)
    assert decide(TO_ZERO, waking, load(0, 300), now=NOW).reason == "Steady"
    # The backlog handed to the ready replica: its 4 slots in use are under 80% of 6, the 300 waiting do not count.
    serving = dataclasses.replace(state(1), measuring=True)
    held = decide(TO_ZERO, serving, load(304, waiting=300, running=4), now=NOW)
    assert (held.replicas, held.reason) == (1, "Steady") and "once a request's duration is measured" in held.message
    # Without counters to measure by, the same load is sized by the queue rule.
    assert decide(TO_ZERO, state(1), load(304, waiting=300, running=4), now=NOW).replicas == 8
    # Requests on the slots are concurrency for sure: 15 running (a server that counts queued generations as
    # running) asks for 3 replicas at once, as before anything is measured.
    assert decide(TO_ZERO, serving, load(15, running=15), now=NOW).replicas == 3
    # Waking takes what is held at that moment.
    assert decide(TO_ZERO, dataclasses.replace(state(0), measuring=True), load(0, 13), now=NOW).replicas == 3


def observe(memory: ScaleMemory, clock: FakeClock, now_load: Load, *, status: Mapping[str, object]) -> Decision:
    scale = memory.state(TO_ZERO, now_load, status=status, annotations={}, current=1, clock=clock)
    return decide(TO_ZERO, scale, now_load, now=clock.now())


def test_the_status_keeps_since_when_the_set_is_idle_and_a_new_manager_counts_from_it() -> None:
    clock = FakeClock(0.0, wall_start=WALL)
    memory, status = ScaleMemory(), {"readyReplicas": 1}
    observe(memory, clock, load(3), status=status)
    assert memory.record(target_in_flight=6).idle_since is None  # busy: nothing to keep
    clock.advance(5)
    observe(memory, clock, load(0), status=status)
    idle = memory.record(target_in_flight=6)
    assert idle.idle_since == "2026-03-01T12:00:00Z"
    clock.advance(295)
    observe(memory, clock, load(0), status=status)
    assert memory.record(target_in_flight=6) == idle  # unchanged while idle: the status is not rewritten
    # A manager started now goes to zero 600 s after the set went idle, not 600 s after it started.
    recalled = ScaleMemory.recall({"autoscaling": idle.to_wire()}, clock=clock)
    reasons = []
    for _ in range(4):
        reasons.append(observe(recalled, clock, load(0), status=status).reason)
        clock.advance(100)
    assert reasons == ["Steady", "Steady", "Steady", "ScaleToZero"]
    assert ScaleMemory.recall({}, clock=clock).busy


def test_the_status_keeps_the_duration_learned_and_rewrites_it_only_when_it_moves() -> None:
    clock = FakeClock(0.0, wall_start=WALL)
    memory = ScaleMemory()
    assert memory.record(target_in_flight=4).observed_request_duration is None
    memory.meter.duration = 8.0
    assert memory.record(target_in_flight=4).observed_request_duration == "8.0s"
    memory.meter.duration = 8.7  # within 10%
    assert memory.record(target_in_flight=4).observed_request_duration == "8.0s"
    memory.meter.duration = 9.5
    assert memory.record(target_in_flight=4).observed_request_duration == "9.5s"
    memory.meter.duration = 0.0123
    record = memory.record(target_in_flight=4)
    assert record.to_wire() == {"observedRequestDuration": "12ms", "targetInFlightPerReplica": 4}
    recalled = ScaleMemory.recall({"autoscaling": record.to_wire()}, clock=clock)
    assert recalled.meter.duration == pytest.approx(0.012)
    assert ScaleMemory.recall({"autoscaling": {"observedRequestDuration": "soon"}}, clock=clock).meter.duration is None
