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
    """The latest arrival rate and the time a request holds a replica's slot, from readings over time.

    Over a window that began and ended with nothing waiting, the duration is the answers' own mean time. A request
    that waited in an engine's queue took longer at the gateway than it held a slot, so such windows teach nothing
    to a meter that knows a duration. One that knows none yet (a set that has never answered without a queue, such
    as one woken by a backlog) learns it from Little's law on the slots, which are full while requests wait: the
    requests running at the start of each waiting window times its length, over the answers, summed while the
    waiting lasts and taken once the slots have turned over (as many answers as requests were running), since
    answers come in bursts over a window shorter than a request. A duration is kept (across a stay at zero too)
    until a window teaches another; `duration` seeds one learned before (a restarted manager reads it from the
    set). No rate before the second reading.
    """

    def __init__(self, *, duration: float | None = None) -> None:
        self.rate: float | None = None
        self.duration: float | None = duration
        self._last: tuple[float, Mapping[str, GatewayCounts], bool, float] | None = None
        self._slot_seconds = 0.0  # requests running x seconds, over the waiting windows since the last clear one
        self._slot_answers = 0.0

    def observe(
        self, counts: Mapping[str, GatewayCounts], *, now: float, waiting: bool, running: float = 0.0
    ) -> Traffic | None:
        """Take a reading (`waiting`: requests wait now, held or in an engine; `running`: requests the engines run
        now); the traffic it tells, if known."""
        if not counts:
            return None  # no gateway's counters to go by: the caller falls back to the load alone
        if self._last is None:
            self._last = (now, counts, waiting, running)
            return None
        then, before, waited, ran = self._last
        if (window := now - then) >= MIN_WINDOW_S:
            added = [counts[pod].since(before[pod]) for pod in counts.keys() & before.keys()]
            self.rate = sum(c.arrived for c in added) / window
            answered = sum(c.answered for c in added)
            if not (waiting or waited):
                self._slot_seconds = self._slot_answers = 0.0
                if answered > 0:
                    self.duration = sum(c.answered_seconds for c in added) / answered
            elif self.duration is None and ran > 0:  # a window that began with nothing running tells nothing
                self._slot_seconds += ran * window
                self._slot_answers += answered
                if self._slot_answers >= ran:
                    self.duration = self._slot_seconds / self._slot_answers
            self._last = (now, counts, waiting, running)
        if self.rate is None or self.duration is None:
            return None
        return Traffic(self.rate, self.duration)
