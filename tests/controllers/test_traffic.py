"""The arrival rate and duration taken from gateway pods' counters read over time."""

from __future__ import annotations

from kaito.controllers.traffic import MIN_WINDOW_S, GatewayCounts, Traffic, TrafficMeter


def counts(arrived: float, answered: float, seconds: float) -> GatewayCounts:
    return GatewayCounts(arrived, answered, seconds)


def test_two_readings_give_the_rate_summed_over_pods_and_the_mean_duration() -> None:
    meter = TrafficMeter()
    assert meter.observe({"a": counts(100, 90, 700), "b": counts(50, 50, 400)}, now=0, waiting=False) is None
    traffic = meter.observe({"a": counts(130, 110, 860), "b": counts(70, 70, 560)}, now=10, waiting=False)
    assert traffic == Traffic(rate=5.0, duration=8.0)  # 50 arrived in 10 s; 40 answered in 320 s
    assert traffic.concurrency == 40.0


def test_durations_are_learned_only_while_nothing_waits_and_kept_otherwise() -> None:
    meter = TrafficMeter()
    meter.observe({"a": counts(0, 0, 0)}, now=0, waiting=False)
    assert meter.observe({"a": counts(10, 10, 80)}, now=10, waiting=False) == Traffic(1.0, 8.0)
    # Requests queued in an engine answer late: the window that ends with them waiting does not teach a duration.
    assert meter.observe({"a": counts(110, 20, 1080)}, now=20, waiting=True) == Traffic(10.0, 8.0)
    assert meter.observe({"a": counts(210, 60, 5080)}, now=30, waiting=False) == Traffic(10.0, 8.0)  # began waiting
    # At zero nothing is answered: the rate falls, the duration stays for the next wake.
    assert meter.observe({"a": counts(210, 60, 5080)}, now=40, waiting=False) == Traffic(0.0, 8.0)


def test_no_duration_until_an_answer_no_traffic_without_counters() -> None:
    meter = TrafficMeter()
    meter.observe({"a": counts(0, 0, 0)}, now=0, waiting=True)
    assert meter.observe({"a": counts(5, 0, 0)}, now=5, waiting=True) is None
    assert meter.rate == 1.0 and meter.duration is None
    assert meter.observe({}, now=10, waiting=False) is None  # no gateway read: fall back to the load alone


def test_a_restarted_pod_counts_from_zero_and_a_pod_seen_once_adds_nothing() -> None:
    meter = TrafficMeter()
    meter.observe({"a": counts(1000, 1000, 4000), "gone": counts(10, 10, 40)}, now=0, waiting=False)
    traffic = meter.observe({"a": counts(20, 20, 80), "new": counts(500, 500, 9999)}, now=10, waiting=False)
    assert traffic == Traffic(rate=2.0, duration=4.0)


def test_readings_closer_than_the_window_keep_the_last_figures() -> None:
    meter = TrafficMeter()
    meter.observe({"a": counts(0, 0, 0)}, now=0, waiting=False)
    assert meter.observe({"a": counts(10, 10, 20)}, now=5, waiting=False) == Traffic(2.0, 2.0)
    soon = 5 + MIN_WINDOW_S / 2
    assert meter.observe({"a": counts(40, 40, 80)}, now=soon, waiting=False) == Traffic(2.0, 2.0)
    assert meter.observe({"a": counts(40, 40, 80)}, now=5 + MIN_WINDOW_S, waiting=False) == Traffic(30 / 4, 2.0)


def test_a_meter_with_no_duration_learns_one_from_full_slots_once_they_have_turned_over() -> None:
    meter = TrafficMeter()
    meter.observe({"a": counts(300, 0, 0)}, now=0, waiting=True, running=16)
    # Answers come in bursts: none in the first 5 s of 8 s requests, so nothing is taken yet.
    assert meter.observe({"a": counts(305, 0, 0)}, now=5, waiting=True, running=16) is None
    # 16 answered over 10 s with 16 running throughout: a slot is held 10 s (the burst overstates it a little).
    traffic = meter.observe({"a": counts(310, 16, 400)}, now=10, waiting=True, running=16)
    assert traffic == Traffic(rate=1.0, duration=10.0)
    # Known now: later waiting windows leave it, and the next window with nothing waiting times the answers.
    assert meter.observe({"a": counts(315, 40, 900)}, now=15, waiting=True, running=16) == Traffic(1.0, 10.0)
    meter.observe({"a": counts(320, 50, 1000)}, now=20, waiting=False, running=8)
    assert meter.observe({"a": counts(325, 55, 1040)}, now=25, waiting=False, running=8) == Traffic(1.0, 8.0)


def test_a_duration_learned_before_seeds_the_meter() -> None:
    meter = TrafficMeter(duration=6.0)
    meter.observe({"a": counts(0, 0, 0)}, now=0, waiting=True, running=4)
    assert meter.observe({"a": counts(10, 2, 99)}, now=5, waiting=True, running=4) == Traffic(2.0, 6.0)


def test_a_waiting_window_that_began_with_nothing_running_teaches_no_duration() -> None:
    meter = TrafficMeter()
    meter.observe({"a": counts(0, 0, 0)}, now=0, waiting=False, running=0)
    # A step lands: requests wait for a moment and some are answered, but the window began with idle slots.
    assert meter.observe({"a": counts(30, 20, 10)}, now=5, waiting=True, running=6) is None
    assert meter.duration is None
