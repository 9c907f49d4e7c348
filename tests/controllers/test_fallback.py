"""The instance-type fallback decision: which refusals move on at once, which after retries, and the wrap-around."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kaito.api.workspace import InstanceAttempt
from kaito.controllers.fallback import Decision, Policy, decide, describe, with_attempt

A100, H100, V100 = "Standard_NC24ads_A100_v4", "Standard_NC40ads_H100_v5", "Standard_NC6s_v3"
CANDIDATES = [A100, H100]
T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
POLICY = Policy(retry_interval=30.0, capacity_retries=2)
QUOTA_MESSAGE = (
    "Operation could not be completed as it results in exceeding approved standardNCADSA100v4Family Cores quota"
)


def claim(reason: str | None, message: str = "", *, created: dt.datetime = T0) -> dict[str, Any]:
    conditions = (
        [] if reason is None else [{"type": "Launched", "status": "False", "reason": reason, "message": message}]
    )
    return {
        "metadata": {"name": "ws-abc", "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "status": {"conditions": conditions},
    }


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def attempt(sku: str, reason: str, when: dt.datetime) -> InstanceAttempt:
    return InstanceAttempt(instance_type=sku, reason=reason, message="no", time=when.strftime("%Y-%m-%dT%H:%M:%SZ"))


@pytest.mark.parametrize(
    "reason", [pytest.param("QuotaExceeded", id="quota"), pytest.param("SkuNotAvailable", id="sku-not-offered")]
)
def test_a_refusal_retrying_cannot_clear_moves_on_at_once_and_is_recorded_in_the_clouds_words(reason: str) -> None:
    decision = decide(
        CANDIDATES, current=A100, claims=[claim(reason, QUOTA_MESSAGE)], attempts=[], now=at(1), policy=POLICY
    )
    assert decision.move_to == H100 and not decision.exhausted
    assert decision.record == InstanceAttempt(
        instance_type=A100, reason=reason, message=QUOTA_MESSAGE, time="2026-01-01T12:00:01Z"
    )


def test_a_capacity_failure_moves_on_only_after_the_retries() -> None:
    claims = [claim("InsufficientCapacity", "Allocation failed")]
    early = decide(CANDIDATES, current=A100, claims=claims, attempts=[], now=at(60), policy=POLICY)
    assert early == Decision(recheck=15.0)  # 2.5 retry intervals from the claim's creation
    late = decide(CANDIDATES, current=A100, claims=claims, attempts=[], now=at(75), policy=POLICY)
    assert late.move_to == H100 and late.record is not None and late.record.reason == "InsufficientCapacity"


@pytest.mark.parametrize(
    "conditions",
    [
        pytest.param(None, id="no-condition-yet"),
        pytest.param("Throttled", id="throttled"),
        pytest.param("TransientError", id="transient"),
        pytest.param("AwaitingLaunch", id="launching"),
    ],
)
def test_other_states_stay_on_the_current_type(conditions: str | None) -> None:
    decision = decide(CANDIDATES, current=A100, claims=[claim(conditions)], attempts=[], now=at(999), policy=POLICY)
    assert decision == Decision()


def test_a_single_instance_type_never_moves() -> None:
    decision = decide([A100], current=A100, claims=[claim("QuotaExceeded")], attempts=[], now=at(1), policy=POLICY)
    assert decision == Decision()


def test_a_refusal_is_recorded_once_per_claim() -> None:
    recorded = [attempt(A100, "QuotaExceeded", at(1))]
    again = decide(
        CANDIDATES, current=A100, claims=[claim("QuotaExceeded")], attempts=recorded, now=at(2), policy=POLICY
    )
    assert again.record is None and again.move_to == H100
    older = [attempt(A100, "QuotaExceeded", at(-100))]  # a refusal of an earlier claim of the same type
    fresh = decide(CANDIDATES, current=A100, claims=[claim("QuotaExceeded")], attempts=older, now=at(2), policy=POLICY)
    assert fresh.record is not None and fresh.record.time == "2026-01-01T12:00:02Z"


def test_when_every_type_is_refused_it_says_so_then_starts_over_after_the_retry_interval() -> None:
    history = [attempt(A100, "QuotaExceeded", at(-5))]
    last = claim("SkuNotAvailable", "not offered")
    first = decide(CANDIDATES, current=H100, claims=[last], attempts=history, now=at(1), policy=POLICY)
    assert first.exhausted and first.move_to is None and first.recheck == 30.0
    assert first.record is not None and first.record.instance_type == H100
    history = with_attempt(history, first.record)
    waiting = decide(CANDIDATES, current=H100, claims=[last], attempts=history, now=at(20), policy=POLICY)
    assert waiting.exhausted and waiting.record is None and waiting.recheck == pytest.approx(11.0)
    over = decide(CANDIDATES, current=H100, claims=[last], attempts=history, now=at(31), policy=POLICY)
    assert over.exhausted and over.move_to == A100
    assert describe(history) == f"{A100} (QuotaExceeded), {H100} (SkuNotAvailable)"


def test_a_type_no_longer_listed_moves_to_the_first() -> None:
    decision = decide(CANDIDATES, current=V100, claims=[claim("QuotaExceeded")], attempts=[], now=at(1), policy=POLICY)
    assert decision.move_to == A100


def test_the_recorded_history_is_bounded() -> None:
    many = [attempt(A100, "QuotaExceeded", at(i)) for i in range(30)]
    kept = with_attempt(many, attempt(H100, "QuotaExceeded", at(40)))
    assert len(kept) == 20 and kept[-1].instance_type == H100


def test_a_new_claim_of_a_type_refused_in_the_same_second_is_recorded_again() -> None:
    refused = claim("QuotaExceeded")
    refused["metadata"]["uid"] = "second-claim"
    earlier = attempt(A100, "QuotaExceeded", at(0)).model_copy(update={"node_claim_uid": "first-claim"})
    decision = decide(CANDIDATES, current=A100, claims=[refused], attempts=[earlier], now=at(0), policy=POLICY)
    assert decision.record is not None and decision.record.node_claim_uid == "second-claim"
    again = decide(
        CANDIDATES, current=A100, claims=[refused], attempts=[earlier, decision.record], now=at(0), policy=POLICY
    )
    assert again.record is None and again.move_to == H100
