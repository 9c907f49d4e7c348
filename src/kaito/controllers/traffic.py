"""A set's arrival rate and request duration, from its gateway pods' counters read twice: what Little's law needs.

Each gateway pod counts the requests that arrived and the requests answered with the seconds they took (from
being sent to a replica to the last byte back). Counters only say something as a difference over time, so a
`TrafficMeter` keeps the previous reading per pod and turns two readings into a `Traffic`. A pod that restarted
counts from zero again (its new total is its difference); a pod in only one of the two readings adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MIN_WINDOW_S = 4.0  # readings closer than this (a reconcile on an event) keep the previous window's figures


@dataclass(frozen=True)
class GatewayCounts:
    """One gateway pod's counters since it started."""

    arrived: float
    answered: float
    answered_seconds: float

    def since(self, before: GatewayCounts) -> GatewayCounts:
        """The counts added since `before`; all of them when a counter went back (the pod restarted)."""
        if self.arrived < before.arrived or self.answered < before.answered:
            return self
        seconds = self.answered_seconds - before.answered_seconds
        return GatewayCounts(self.arrived - before.arrived, self.answered - before.answered, seconds)


@dataclass(frozen=True)
class Traffic:
    """Requests arriving per second and the seconds one takes on a replica, over the latest window."""

    rate: float
    duration: float

    @property
    def concurrency(self) -> float:
        """Requests on the replicas at once in a steady state (Little's law)."""
        return self.rate * self.duration


class TrafficMeter:
    """The latest arrival rate and the duration learned from answers that did not wait, from readings over time.

    A request that waited in an engine's queue took longer at the gateway than it holds a slot, so durations are
    learned only over windows that began and ended with nothing waiting, and kept (across a stay at zero too)
    otherwise. No rate before the second reading; no duration before the first such window.
    """

    def __init__(self) -> None:
        self.rate: float | None = None
        self.duration: float | None = None
        self._last: tuple[float, Mapping[str, GatewayCounts], bool] | None = None

    def observe(self, counts: Mapping[str, GatewayCounts], *, now: float, waiting: bool) -> Traffic | None:
        """Take a reading (`waiting`: requests wait now, held or in an engine); the traffic it tells, if known."""
        if not counts:
            return None  # no gateway's counters to go by: the caller falls back to the load alone
        if self._last is None:
            self._last = (now, counts, waiting)
            return None
        then, before, waited = self._last
        if now - then >= MIN_WINDOW_S:
            added = [counts[pod].since(before[pod]) for pod in counts.keys() & before.keys()]
            self.rate = sum(c.arrived for c in added) / (now - then)
            answered = sum(c.answered for c in added)
            if answered > 0 and not (waiting or waited):
                self.duration = sum(c.answered_seconds for c in added) / answered
            self._last = (now, counts, waiting)
        if self.rate is None or self.duration is None:
            return None
        return Traffic(self.rate, self.duration)
