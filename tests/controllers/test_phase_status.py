"""`status.phases` rides on patches made anyway; each phase's histogram counts a workspace once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from kaito.api.workspace import PlanStatus
from kaito.controllers.kinds import WORKSPACE
from kaito.controllers.metrics import PhaseMetrics, phase_metric_name
from kaito.controllers.status import Observed
from kaito.controllers.statuswriter import StatusWriter
from kaito.controllers.timeline import parse_time
from kaito.runtime.client import Client
from kaito.runtime.clock import FakeClock
from kaito.runtime.events import EventRecorder
from kaito.runtime.objects import ObjectKey
from kaito_sim.server import SimServer
from tests.api.test_crds import install_crds
from tests.conftest import Kubectl
from tests.controllers.test_statuswriter import writes
from tests.controllers.test_timeline import T0, claim, kubelet_pod, node
from tests.controllers.test_workspace_sizing import create_example

Obj = dict[str, Any]
PLAN = PlanStatus(model="phi-3-mini-4k-instruct", instance_type="Standard_NC6s_v3", nodes=1)
LABELS = {"model": "phi-3-mini-4k-instruct", "sku": "Standard_NC6s_v3"}


@pytest.fixture
async def crds(kubectl: Kubectl) -> None:
    await install_crds(kubectl)


def writer(kclient: Client, metrics: PhaseMetrics) -> StatusWriter:
    clock = FakeClock(wall_start=dt.datetime.now(dt.UTC))
    recorder = EventRecorder(kclient, controller="t", instance="t", clock=clock)
    return StatusWriter(kclient, clock=clock, recorder=recorder, phase_metrics=metrics)


def count(metrics: PhaseMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(f"{name}_count", LABELS) or 0.0


def shifted(obj: Obj, created: dt.datetime) -> Obj:
    """`obj` (timed in seconds from the test's T0) re-timed from the workspace's real creation."""

    def move(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        moment = parse_time(value) if isinstance(value, str) and value.endswith("Z") else None
        return (created + (moment - T0)).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else value

    out: Obj = move(obj)
    return out


def steps(created: dt.datetime) -> list[Observed]:
    """Launched, node Ready, pulling, Ready: what four reconciles see, as the provisioner and kubelet stamp it."""
    launched = [shifted(claim("c", created=1, launched=62), created)]
    launched[0]["status"]["conditions"].append(launched[0]["status"]["conditions"][0] | {"type": "Ready"})
    ready_node = [shifted(node("n", ready_since=130), created)]
    image = "registry.local/kaito-models/phi-3-mini-4k-instruct:1"
    pulling = shifted(kubelet_pod(puller=(140, None), server=None, ready_since=None), created)
    serving = shifted(kubelet_pod(puller=(140, 180), server=181, ready_since=211), created)
    ready = {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    return [
        Observed(target_nodes=1, nodeclaims=launched, model_image=image),
        Observed(target_nodes=1, nodeclaims=launched, nodes=ready_node, model_image=image),
        Observed(target_nodes=1, nodeclaims=launched, nodes=ready_node, pods=[pulling], model_image=image),
        Observed(
            target_nodes=1, nodeclaims=launched, nodes=ready_node, pods=[serving], model_image=image, workload=ready
        ),
    ]


async def fresh(kclient: Client, key: ObjectKey) -> Obj:
    got: Obj = await kclient.get(WORKSPACE, key.name, namespace=key.namespace)
    return got


@pytest.mark.usefixtures("crds")
async def test_phases_take_no_patch_of_their_own_and_are_observed_once(
    sim: SimServer, kclient: Client, namespace: str
) -> None:
    key = await create_example(kclient, namespace)
    ws = await fresh(kclient, key)
    created = parse_time(ws["metadata"]["creationTimestamp"])
    assert created is not None
    metrics = PhaseMetrics()
    status = writer(kclient, metrics)
    for observed in steps(created):
        await status.write(await fresh(kclient, key), observed, tuning=False, plan=PLAN)
    patches = [w for w in writes(sim, key) if w.endswith("/status")]
    assert len(patches) == 4  # one per state the conditions show: the phases added none

    ws = await fresh(kclient, key)
    phases = {p["name"]: p for p in ws["status"]["phases"]}
    assert list(phases) == ["planned", "nodesProvisioned", "nodesReady", "modelPulled", "engineStarted", "firstReady"]
    seconds = {
        name: ((parse_time(p["startedAt"]) or created) - created, (parse_time(p["endedAt"]) or created) - created)
        for name, p in phases.items()
    }
    assert {k: (int(s.total_seconds()), int(e.total_seconds())) for k, (s, e) in seconds.items()} == {
        "planned": (0, 1),
        "nodesProvisioned": (1, 62),
        "nodesReady": (62, 130),
        "modelPulled": (140, 180),
        "engineStarted": (180, 181),
        "firstReady": (181, 211),
    }
    for name in phases:
        assert count(metrics, phase_metric_name(name)) == 1, name
    assert metrics.registry.get_sample_value("kaito_workspace_phase_nodes_ready_seconds_sum", LABELS) == 68
    assert metrics.registry.get_sample_value("kaito_workspace_apply_to_ready_seconds_sum", LABELS) == 211

    # a restarted manager: a new writer over the same status, made to patch by someone else's edit
    await kclient.patch_status(WORKSPACE, key.name, {"status": {"targetNodeCount": 7}}, namespace=namespace)
    restarted = writer(kclient, metrics)
    await restarted.write(await fresh(kclient, key), steps(created)[-1], tuning=False, plan=PLAN)
    assert (await fresh(kclient, key))["status"]["targetNodeCount"] == 1
    assert (await fresh(kclient, key))["status"]["phases"] == ws["status"]["phases"]
    for name in phases:
        assert count(metrics, phase_metric_name(name)) == 1, name
    assert count(metrics, "kaito_workspace_apply_to_ready_seconds") == 1


@pytest.mark.usefixtures("crds")
async def test_a_patch_over_a_stale_read_does_not_observe_a_phase_twice(kclient: Client, namespace: str) -> None:
    key = await create_example(kclient, namespace)
    stale = await fresh(kclient, key)  # as a cache that has not seen the writer's patches yet
    created = parse_time(stale["metadata"]["creationTimestamp"])
    assert created is not None
    metrics = PhaseMetrics()
    status = writer(kclient, metrics)
    first, second = steps(created)[:2]
    await status.write(stale, first, tuning=False, plan=PLAN)
    await status.write(stale, second, tuning=False, plan=PLAN)  # news (the node Ready), over the same stale read
    assert count(metrics, phase_metric_name("nodesProvisioned")) == 1
    assert count(metrics, phase_metric_name("nodesReady")) == 1
