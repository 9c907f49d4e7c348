"""When the cloud refuses a workspace's instance type, whether (and where) to move on: a pure decision.

A workspace with several candidate instance types (`resource.instanceTypes`, or `auto`) runs on one at a
time, the plan's. Its NodeClaims report a refused launch in their Launched condition, with the cloud's
reason and message. Quota and SKU refusals do not clear by retrying, so the next candidate is tried at
once; a capacity (allocation) failure may clear, so the provisioner's retries get `capacity_retries`
retry intervals (counted from the claim's creation) first. Each refusal is recorded once per claim. When
the last candidate is refused too, every candidate has failed: the workspace says so, and the list is
tried again from the first after one retry interval.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kaito.api.nodeclaim import LAUNCHED
from kaito.api.workspace import InstanceAttempt
from kaito.runtime.clock import api_time

Obj = dict[str, Any]
QUOTA_EXCEEDED = "QuotaExceeded"
SKU_NOT_AVAILABLE = "SkuNotAvailable"
INSUFFICIENT_CAPACITY = "InsufficientCapacity"
REFUSALS = frozenset({QUOTA_EXCEEDED, SKU_NOT_AVAILABLE})  # retrying will not clear these: move on at once
CAPACITY = frozenset({INSUFFICIENT_CAPACITY})  # may clear: move on after the bounded retries
EXHAUSTED = "InstanceTypesExhausted"  # the workspace's reason once every candidate was refused
MAX_ATTEMPTS = 20  # the most recent refusals kept in status


@dataclass(frozen=True)
class Policy:
    retry_interval: float  # how often the provisioner launches a refused claim again
    capacity_retries: int  # its retries a capacity failure gets before the next candidate is tried


@dataclass(frozen=True)
class Decision:
    """What to do now: record a refusal, move to another candidate, and when to look again."""

    record: InstanceAttempt | None = None
    move_to: str | None = None
    exhausted: bool = False  # every candidate has been refused (the message lists the attempts)
    recheck: float | None = None  # seconds until the decision may change without any event


STAY = Decision()


def decide(
    candidates: Sequence[str],
    *,
    current: str,
    claims: Sequence[Obj],
    attempts: Sequence[InstanceAttempt],
    now: dt.datetime,
    policy: Policy,
) -> Decision:
    """The decision for a workspace on `current` whose live claims of that type are `claims`."""
    if len(candidates) < 2:
        return STAY  # one instance type: the provisioner retries it, as with no fallback
    found = refusal(claims)
    if found is None:
        return STAY
    claim, reason, message = found
    created = _parse(str(claim["metadata"].get("creationTimestamp") or "")) or now
    if reason in CAPACITY:
        bound = (policy.capacity_retries + 0.5) * policy.retry_interval  # halfway to the retry after the last
        tried = (now - created).total_seconds()
        if tried < bound:
            return Decision(recheck=bound - tried)
    uid = str(claim["metadata"].get("uid") or "")
    recorded = next(
        (a for a in reversed(attempts) if a.instance_type == current and _same_claim(a, uid, created)), None
    )
    record = (
        None
        if recorded is not None
        else InstanceAttempt(
            instance_type=current, reason=reason, message=message, time=api_time(now), node_claim_uid=uid or None
        )
    )
    index = candidates.index(current) if current in candidates else -1
    if index + 1 < len(candidates):
        return Decision(record=record, move_to=candidates[index + 1])
    failed_at = (_parse(recorded.time or "") if recorded is not None else None) or now
    wait = policy.retry_interval - (now - failed_at).total_seconds()
    if wait > 0:
        return Decision(record=record, exhausted=True, recheck=wait)
    return Decision(record=record, move_to=candidates[0], exhausted=True)


def refusal(claims: Sequence[Obj]) -> tuple[Obj, str, str] | None:
    """The first claim whose launch the cloud refused for quota, SKU or capacity: (claim, reason, cloud's message)."""
    for claim in claims:
        for cond in (claim.get("status") or {}).get("conditions") or []:
            if cond.get("type") != LAUNCHED or cond.get("status") != "False":
                continue
            reason = str(cond.get("reason") or "")
            if reason in REFUSALS or reason in CAPACITY:
                return claim, reason, str(cond.get("message") or "")
    return None


def with_attempt(attempts: Sequence[InstanceAttempt], attempt: InstanceAttempt | None) -> list[InstanceAttempt]:
    """The attempts to keep in status: the recent ones, with `attempt` appended."""
    kept = [*attempts, attempt] if attempt is not None else list(attempts)
    return kept[-MAX_ATTEMPTS:]


def describe(attempts: Sequence[InstanceAttempt]) -> str:
    """The refusals in brief, most recent last: `SKU (Reason)` (the cloud's messages stay in the attempts)."""
    return ", ".join(f"{a.instance_type} ({a.reason})" for a in attempts)


def _same_claim(attempt: InstanceAttempt, uid: str, created: dt.datetime) -> bool:
    """Whether `attempt` told this claim's refusal: by its uid, or (for a claim without one) by time."""
    if uid or attempt.node_claim_uid:
        return attempt.node_claim_uid == uid
    when = _parse(attempt.time or "")
    return when is not None and when >= created


def _parse(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
