"""Phase times come from the kubelet's, the provisioner's and the scheduler's own timestamps, and stay once ended."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kaito.controllers.status import Observed
from kaito.controllers.timeline import apply_to_ready, derive, merge, newly_ended

Obj = dict[str, Any]
T0 = dt.datetime(2025, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
IMAGE = "registry.local/kaito-models/phi-3-mini-4k-instruct:1"


def at(seconds: int) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cond(kind: str, status: str, since: int) -> Obj:
    return {"type": kind, "status": status, "lastTransitionTime": at(since)}


def workspace(*, tuning: bool = False) -> Obj:
    spec = {"tuning": {"preset": {"name": "phi-3"}}} if tuning else {"inference": {"preset": {"name": "phi-3"}}}
    return {"metadata": {"name": "ws", "namespace": "d", "creationTimestamp": at(0)}, **spec}


def claim(name: str, *, created: int, launched: int | None) -> Obj:
    conds = [cond("Launched", "True", launched)] if launched is not None else [cond("Launched", "Unknown", created)]
    return {"metadata": {"name": name, "creationTimestamp": at(created)}, "status": {"conditions": conds}}


def node(name: str, *, ready_since: int | None) -> Obj:
    ready = cond("Ready", "True", ready_since) if ready_since is not None else cond("Ready", "False", 0)
    return {"metadata": {"name": name}, "status": {"conditions": [ready], "capacity": {"nvidia.com/gpu": "1"}}}


def kubelet_pod(
    *,
    puller: tuple[int, int | None] | None,
    server: int | None,
    ready_since: int | None,
    retried_from: int | None = None,
) -> Obj:
    """A pod as the kubelet reports it: the puller's start and finish, the server's start, the Ready transition."""
    init = []
    if puller is not None:
        started, finished = puller
        state: Obj = (
            {"running": {"startedAt": at(started)}}
            if finished is None
            else {"terminated": {"exitCode": 0, "startedAt": at(started), "finishedAt": at(finished)}}
        )
        last: Obj = {}
        if retried_from is not None:
            last = {"terminated": {"exitCode": 1, "startedAt": at(retried_from), "finishedAt": at(started)}}
        init.append({"name": "model-puller", "state": state, "lastState": last})
    main = {
        "name": "server",
        "state": {"running": {"startedAt": at(server)}} if server is not None else {"waiting": {}},
    }
    conds = [cond("Ready", "True", ready_since)] if ready_since is not None else [cond("Ready", "False", 0)]
    return {
        "metadata": {"name": "ws-0"},
        "status": {"initContainerStatuses": init, "containerStatuses": [main], "conditions": conds},
    }


def times(phases: dict[str, tuple[dt.datetime, dt.datetime | None]]) -> dict[str, tuple[int, int | None]]:
    """Each phase as seconds since T0, for reading."""
    return {
        name: (int((s - T0).total_seconds()), None if e is None else int((e - T0).total_seconds()))
        for name, (s, e) in phases.items()
    }


def test_a_model_image_workspace_from_apply_to_first_readiness() -> None:
    observed = Observed(
        target_nodes=1,
        nodeclaims=[claim("c", created=1, launched=62)],
        nodes=[node("n", ready_since=130)],
        pods=[kubelet_pod(puller=(140, 180), server=181, ready_since=211)],
        model_image=IMAGE,
    )
    derived = derive(workspace(), observed, ready=True, now=T0 + dt.timedelta(seconds=300))
    assert times(derived) == {
        "planned": (0, 1),  # dated by the claims made in the planning pass, not by `now`
        "nodesProvisioned": (1, 62),
        "nodesReady": (62, 130),
        "modelPulled": (140, 180),
        "engineStarted": (180, 181),
        "firstReady": (181, 211),  # the pod's Ready transition, not when the controller saw it
    }


def test_phases_under_way_have_no_end_and_later_ones_are_absent() -> None:
    observed = Observed(
        target_nodes=2,
        nodeclaims=[claim("a", created=1, launched=40), claim("b", created=1, launched=None)],
        nodes=[node("n-a", ready_since=90)],
    )
    derived = derive(workspace(), observed, ready=False, now=T0 + dt.timedelta(seconds=100))
    assert times(derived) == {"planned": (0, 1), "nodesProvisioned": (1, None)}  # one of two claims launched


def test_a_pull_in_progress_holds_back_the_engine_and_a_retried_puller_starts_at_its_first_try() -> None:
    observed = Observed(
        target_nodes=1,
        nodeclaims=[claim("c", created=0, launched=10)],
        nodes=[node("n", ready_since=20)],
        pods=[kubelet_pod(puller=(40, None), server=None, ready_since=None, retried_from=25)],
        model_image=IMAGE,
    )
    derived = derive(workspace(), observed, ready=False, now=T0 + dt.timedelta(seconds=50))
    assert times(derived)["modelPulled"] == (25, None)
    assert "engineStarted" not in derived


def test_without_a_model_image_the_engine_phase_follows_the_nodes() -> None:
    observed = Observed(
        target_nodes=1,
        nodeclaims=[claim("c", created=0, launched=10)],
        nodes=[node("n", ready_since=20)],
        pods=[kubelet_pod(puller=None, server=75, ready_since=None)],
    )
    derived = times(derive(workspace(), observed, ready=False, now=T0 + dt.timedelta(seconds=80)))
    assert "modelPulled" not in derived
    assert derived["engineStarted"] == (20, 75) and derived["firstReady"] == (75, None)


def test_bring_your_own_nodes_ready_before_the_apply_take_no_time() -> None:
    observed = Observed(target_nodes=1, provisioning=False, nodes=[node("n", ready_since=-3600)])
    derived = times(derive(workspace(), observed, ready=False, now=T0 + dt.timedelta(seconds=2)))
    assert derived == {"planned": (0, 2), "nodesReady": (2, 2), "engineStarted": (2, None)}


def test_a_tuning_workspace_is_timed_up_to_its_nodes() -> None:
    observed = Observed(
        target_nodes=1, nodeclaims=[claim("c", created=0, launched=5)], nodes=[node("n", ready_since=9)]
    )
    assert set(derive(workspace(tuning=True), observed, ready=False, now=T0)) == {
        "planned",
        "nodesProvisioned",
        "nodesReady",
    }


def test_an_ended_phase_is_never_moved_and_the_next_starts_where_it_ended() -> None:
    written = [
        {"name": "planned", "startedAt": at(0), "endedAt": at(1)},
        {"name": "nodesProvisioned", "startedAt": at(1), "endedAt": at(62)},
        {"name": "nodesReady", "startedAt": at(62)},
    ]
    ws = {**workspace(), "status": {"phases": written}}
    # the claim was replaced (made and launched again later), and its node is Ready now
    observed = Observed(
        target_nodes=1, nodeclaims=[claim("c2", created=500, launched=560)], nodes=[node("n2", ready_since=600)]
    )
    phases = merge(written, derive(ws, observed, ready=False, now=T0 + dt.timedelta(seconds=610)))
    assert phases[:3] == [*written[:2], {"name": "nodesReady", "startedAt": at(62), "endedAt": at(600)}]
    assert newly_ended(written, phases) == [("nodesReady", 538.0)]
    assert newly_ended(phases, phases) == []
    assert apply_to_ready(phases) is None


def test_apply_to_ready_spans_the_planned_start_to_the_first_readiness() -> None:
    phases = [
        {"name": "planned", "startedAt": at(0), "endedAt": at(1)},
        {"name": "firstReady", "startedAt": at(181), "endedAt": at(211)},
    ]
    assert apply_to_ready(phases) == 211.0


def test_ready_before_the_cache_shows_the_pods_ends_every_phase_at_the_workloads_readiness() -> None:
    available = {"type": "Available", "status": "True", "lastTransitionTime": at(95)}
    observed = Observed(
        target_nodes=1,
        nodeclaims=[claim("c", created=0, launched=10)],
        nodes=[node("n", ready_since=20)],
        pods=[kubelet_pod(puller=None, server=None, ready_since=None)],  # the pod as the cache last saw it: waiting
        workload={"spec": {"replicas": 1}, "status": {"readyReplicas": 1, "conditions": [available]}},
        model_image=IMAGE,
    )
    derived = times(derive(workspace(), observed, ready=True, now=T0 + dt.timedelta(seconds=99)))
    assert derived["modelPulled"] == (20, 95) and derived["engineStarted"] == (95, 95)
    assert derived["firstReady"] == (95, 95)
