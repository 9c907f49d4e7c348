"""Pure phase timing: when each step from `kubectl apply` to the first readiness started and ended.

Every time is read from the object that took the step, so a phase that ended between two status patches
is stamped with when it happened, not when the controller looked, and a restarted manager derives the same
times: the NodeClaims' Launched transition, the Nodes' Ready transition, the model puller's start and finish,
the engine container's start, the pods' Ready transition. The one time kaito owns, the end of planning, is
kept in the status it was first written to. A phase once ended is never moved again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kaito.api.nodeclaim import LAUNCHED, node_ready
from kaito.api.workspace import PHASES
from kaito.controllers.kinds import SERVER_CONTAINER
from kaito.controllers.status import Observed, puller_status
from kaito.runtime.clock import api_time

Obj = dict[str, Any]


def parse_time(value: object) -> dt.datetime | None:
    """An API Time or MicroTime as a UTC datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _latest(values: list[object]) -> dt.datetime | None:
    times = [t for t in map(parse_time, values) if t is not None]
    return max(times) if times else None


def _earliest(values: list[object]) -> dt.datetime | None:
    times = [t for t in map(parse_time, values) if t is not None]
    return min(times) if times else None


def _true_since(obj: Obj, kind: str) -> object:
    """When condition `kind` of `obj` last turned True; None while it is not True."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond.get("lastTransitionTime")
    return None


def _all_of(values: list[object], wanted: int) -> dt.datetime | None:
    """The latest of `values` once `wanted` of them are known (every node or pod has taken the step)."""
    known = [v for v in values if parse_time(v) is not None]
    return _latest(known) if known and len(known) >= wanted else None


def _container(pod: Obj, name: str) -> Obj:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((cs for cs in statuses if cs.get("name") == name), {})


def _pull_times(pullers: list[Obj]) -> tuple[list[object], list[object]]:
    """When the pullers started (a restarted one: its first try) and when each that succeeded finished."""
    began: list[object] = []
    done: list[object] = []
    for cs in pullers:
        state, last = cs.get("state") or {}, cs.get("lastState") or {}
        for moment in (state.get("running"), state.get("terminated"), last.get("terminated")):
            began.append((moment or {}).get("startedAt"))
        finished = state.get("terminated") or {}
        if finished.get("exitCode") == 0:
            done.append(finished.get("finishedAt"))
    return began, done


def _plan_end(observed: Observed, now: dt.datetime) -> dt.datetime:
    """The plan is made in the pass that creates the NodeClaims, so their creation dates it after the fact too."""
    claims = _earliest([(c.get("metadata") or {}).get("creationTimestamp") for c in observed.nodeclaims])
    return claims or now


def derive(
    ws: Obj, observed: Observed, *, ready: bool, now: dt.datetime
) -> dict[str, tuple[dt.datetime, dt.datetime | None]]:
    """The phases the objects show now, by name: (started, ended or None while under way).

    A phase `status.phases` already shows ended is taken from there, and the next one starts where it ended.
    """
    wanted = max(1, observed.target_nodes)
    created = parse_time(ws["metadata"].get("creationTimestamp")) or now
    written = {str(p.get("name")): p for p in (ws.get("status") or {}).get("phases") or [] if isinstance(p, dict)}
    out: dict[str, tuple[dt.datetime, dt.datetime | None]] = {}

    def add(name: str, start: dt.datetime | None, end: dt.datetime | None) -> dt.datetime | None:
        """Record a phase that has started; an end before its start (a node Ready before the apply) is its start."""
        was = written.get(name) or {}
        was_start, was_end = parse_time(was.get("startedAt")), parse_time(was.get("endedAt"))
        if was_start is not None and was_end is not None:
            start, end = was_start, was_end
        if start is None:
            return None
        out[name] = (start, None if end is None else max(start, end))
        return out[name][1]

    step = add("planned", created, _plan_end(observed, now))
    if observed.provisioning:
        launched = _all_of([_true_since(c, LAUNCHED) for c in observed.nodeclaims], wanted)
        step = add("nodesProvisioned", step, launched)
    ready_nodes = [n for n in observed.nodes if node_ready(n, gpu=observed.gpu)]
    step = add("nodesReady", step, _all_of([_true_since(n, "Ready") for n in ready_nodes], wanted))
    if ws.get("tuning") is not None or step is None:
        return out
    # Ready is read from the workload, whose status may reach the cache before its pods' does: then a step the pods
    # do not show yet ended by the readiness, dated by the pods' Ready transition or else the workload's Available one.
    readiness = None
    if ready:
        workload_ready = _true_since(observed.workload or {}, "Available")
        readiness = _latest([_true_since(p, "Ready") for p in observed.pods]) or parse_time(workload_ready) or now
    if observed.model_image is not None:  # the engine starts once its weights are in: after the pull
        began, done = _pull_times([cs for cs in map(puller_status, observed.pods) if cs is not None])
        step = add("modelPulled", _earliest(began) or (step if ready else None), _all_of(done, wanted) or readiness)
        if step is None:
            return out
    running = [((_container(p, SERVER_CONTAINER).get("state") or {}).get("running") or {}) for p in observed.pods]
    step = add("engineStarted", step, _all_of([r.get("startedAt") for r in running], wanted) or readiness)
    if step is not None:
        add("firstReady", step, readiness)
    return out


def merge(previous: list[Obj] | None, derived: dict[str, tuple[dt.datetime, dt.datetime | None]]) -> list[Obj]:
    """`status.phases`: a phase written as ended stays as written; one under way is as the objects show it now."""
    ended = {str(p.get("name")): p for p in previous or [] if isinstance(p, dict) and p.get("endedAt")}
    phases: list[Obj] = []
    for name in PHASES:
        if name in ended:
            phases.append(ended[name])
        elif name in derived:
            start, end = derived[name]
            phases.append({"name": name, "startedAt": api_time(start), **({"endedAt": api_time(end)} if end else {})})
    return phases


def newly_ended(previous: list[Obj] | None, phases: list[Obj]) -> list[tuple[str, float]]:
    """The phases `phases` ends that `previous` had not, with their durations in seconds."""
    had = {str(p.get("name")) for p in previous or [] if isinstance(p, dict) and p.get("endedAt")}
    out = []
    for phase in phases:
        start, end = parse_time(phase.get("startedAt")), parse_time(phase.get("endedAt"))
        if phase["name"] not in had and start is not None and end is not None:
            out.append((str(phase["name"]), (end - start).total_seconds()))
    return out


def apply_to_ready(phases: list[Obj]) -> float | None:
    """Seconds from the apply (the planned phase's start) to the first readiness; None before it."""
    by_name = {p.get("name"): p for p in phases}
    start = parse_time((by_name.get("planned") or {}).get("startedAt"))
    end = parse_time((by_name.get("firstReady") or {}).get("endedAt"))
    return None if start is None or end is None else (end - start).total_seconds()
