"""Liveness deadlines: how long a launched NodeClaim may wait for its Node to register, then to turn Ready.

A VM that never joins (or whose kubelet never turns Ready) would hold its NodeClaim, and the workspace
behind it, forever. Past its deadline the claim is given up: deleted, its instance with it, so the
workspace controller launches a new one. Each deadline counts from a condition's `lastTransitionTime`,
which is on the claim itself, so a restarted manager keeps counting where the last one stopped (to the
second: the API writes whole seconds).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from kaito.api.nodeclaim import INITIALIZED, LAUNCHED, REGISTERED
from kaito.provisioner.conditions import Conditions

REGISTRATION_TIMEOUT = "RegistrationTimeout"  # Registered False: no Node joined in time
NODE_READY_TIMEOUT = "NodeReadyTimeout"  # Initialized False: the Node joined but never could take GPU work
DEFAULT_REGISTRATION_TIMEOUT = 15 * 60.0  # as Karpenter's registration TTL
DEFAULT_NODE_READY_TIMEOUT = 15 * 60.0


@dataclass(frozen=True)
class Deadline:
    """When the claim is given up unless its `condition` turns True first, and what it will then say."""

    condition: str  # REGISTERED or INITIALIZED
    reason: str
    at: dt.datetime
    message: str


@dataclass(frozen=True)
class Liveness:
    """The two timeouts in seconds; 0 (or less) turns that check off."""

    registration_timeout: float = DEFAULT_REGISTRATION_TIMEOUT
    node_ready_timeout: float = DEFAULT_NODE_READY_TIMEOUT

    def deadline(self, conditions: Conditions) -> Deadline | None:
        """The deadline the claim is under now: registration from launch, then readiness from registration."""
        if not conditions.is_true(LAUNCHED):
            return None  # no instance is up: launch failures retry on their own schedule
        if not conditions.is_true(REGISTERED):
            return _deadline(
                conditions,
                since=LAUNCHED,
                timeout=self.registration_timeout,
                stage=REGISTERED,
                reason=REGISTRATION_TIMEOUT,
                told=lambda after: (
                    f"no node registered within {after} of the launch (--nodeclaim-registration-timeout)"
                ),
            )
        if not conditions.is_true(INITIALIZED):
            gap = str((conditions.get(INITIALIZED) or {}).get("message") or "the node is not Ready")
            return _deadline(
                conditions,
                since=REGISTERED,
                timeout=self.node_ready_timeout,
                stage=INITIALIZED,
                reason=NODE_READY_TIMEOUT,
                told=lambda after: f"{gap} {after} after it registered (--node-ready-timeout)",
            )
        return None


def _deadline(
    conditions: Conditions,
    *,
    since: str,
    timeout: float,
    stage: str,
    reason: str,
    told: Callable[[str], str],
) -> Deadline | None:
    if timeout <= 0:
        return None
    start = parse_time(str((conditions.get(since) or {}).get("lastTransitionTime") or ""))
    if start is None:
        return None  # an unreadable time (edited by hand) cannot be counted from
    message = f"{told(duration(timeout))}; the NodeClaim is deleted, with its instance, and a new one launched"
    return Deadline(stage, reason, start + dt.timedelta(seconds=timeout), message)


def parse_time(text: str) -> dt.datetime | None:
    """An API Time (`2026-01-01T00:00:00Z`) as an aware UTC datetime; None when it does not parse."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def duration(seconds: float) -> str:
    """`15m`, `1m30s`, `2s`, `0.5s`: a timeout as a person reads it in a message."""
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:g}s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{rest}s" if rest else ""]
    return "".join(parts) or "0s"
