"""The README example's way to its first readiness, phase by phase: in its status, in `kaito status`, in /metrics."""

from __future__ import annotations

import re
from pathlib import Path

from kaito.controllers.metrics import PHASE_METRICS, phase_metric_name
from kaito.controllers.timeline import parse_time
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, wait_workspace, workspace_json
from tests.e2e.test_humans import kaito

ROOT = Path(__file__).resolve().parents[2]
NAME = "workspace-phi-3-mini"
PHASES = ["planned", "nodesProvisioned", "nodesReady", "engineStarted", "firstReady"]  # no model image: no pull
LABELS = {"model": "phi-3-mini-4k-instruct", "sku": "Standard_NC6s_v3"}


def counts() -> dict[str, float]:
    names = [*(phase_metric_name(p) for p in PHASES), "kaito_workspace_apply_to_ready_seconds"]
    return {n: PHASE_METRICS.registry.get_sample_value(f"{n}_count", LABELS) or 0.0 for n in names}


async def test_the_example_shows_its_phases_in_order_and_counts_them_once(
    kubectl: Kubectl, operator: Operator, sim: SimServer
) -> None:
    before = counts()
    await kubectl("apply", "-f", str(ROOT / "examples/inference/kaito_workspace_phi_3.yaml"))
    ws = await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True")
    phases = ws["status"]["phases"]
    assert [p["name"] for p in phases] == PHASES
    created = parse_time(ws["metadata"]["creationTimestamp"])
    assert created is not None and parse_time(phases[0]["startedAt"]) == created
    moments = [t for p in phases for t in (parse_time(p["startedAt"]), parse_time(p["endedAt"]))]
    assert all(m is not None for m in moments)
    assert moments == sorted(m for m in moments if m is not None)  # each phase ends before the next starts

    rc, out, err = await kaito(sim, "status", NAME, "-n", kubectl.namespace)
    assert rc == 0, err
    timeline = next(line for line in out.splitlines() if line.startswith("timeline: "))
    steps = r"planned \d+s → nodes provisioned \+\S+ → nodes ready \+\S+ → engine started \+\S+ → ready \+\S+"
    assert re.fullmatch(rf"timeline: {steps} \(apply→Ready \S+\)", timeline), timeline

    after = counts()
    assert {n: after[n] - before[n] for n in after} == dict.fromkeys(after, 1.0)
    await operator.halt()  # a restarted manager reads the phases back and observes none of them again
    await operator.start()
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True")
    assert (await workspace_json(kubectl, NAME))["status"]["phases"] == phases
    assert counts() == after
