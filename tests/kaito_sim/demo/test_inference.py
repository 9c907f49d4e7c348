"""`kaito demo`'s reading of `kubectl get workspace`: blank status columns mean "not ready yet", never a crash."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from kaito.runtime.client import Client
from kaito.runtime.kinds import Kind
from kaito_sim.demo.inference import EXAMPLE, NAME, NAMESPACE, Demo, table_cell
from kaito_sim.demo.operator import install_crds
from kaito_sim.server import SimServer
from tests.runtime.conftest import eventually

# What kubectl prints before the operator has written any status, and once the workspace is ready.
HEADER = "NAME                   INSTANCE           RESOURCEREADY   INFERENCEREADY   WORKSPACEREADY   AGE"
FRESH = "workspace-phi-3-mini   Standard_NC6s_v3                                                     0s"
PARTLY = "workspace-phi-3-mini   Standard_NC6s_v3   True                                              2s"
READY = "workspace-phi-3-mini   Standard_NC6s_v3   True            True             True             5s"


def test_a_blank_cell_reads_as_blank_not_as_its_neighbour() -> None:
    assert [table_cell(HEADER, FRESH, c) for c in ("INSTANCE", "RESOURCEREADY", "WORKSPACEREADY")] == [
        "Standard_NC6s_v3",
        "",
        "",
    ]
    assert (table_cell(HEADER, PARTLY, "RESOURCEREADY"), table_cell(HEADER, PARTLY, "WORKSPACEREADY")) == ("True", "")
    assert (table_cell(HEADER, READY, "WORKSPACEREADY"), table_cell(HEADER, READY, "AGE")) == ("True", "5s")


async def test_waiting_polls_a_workspace_without_status_until_it_is_ready(tmp_path: Path) -> None:
    workspace = yaml.safe_load(EXAMPLE.read_text())
    workspace["metadata"]["namespace"] = NAMESPACE
    group, version = workspace["apiVersion"].split("/")
    kind = Kind(group, version, "Workspace", "workspaces")  # the version the README's example is written in
    async with (
        SimServer(kubeconfig=tmp_path / "kubeconfig") as sim,
        await Client.from_config(kubeconfig=str(sim.kubeconfig_path)) as client,
    ):
        await install_crds(client, "kaito-system")
        await client.create(kind, workspace)  # no operator: no status, so the ready columns are blank
        waiting = asyncio.create_task(Demo(sim, tmp_path).wait_until_ready())
        # Once kubectl has asked, its answer holds the blank row whatever happens next.
        await eventually(lambda: any(r.path.endswith(f"/workspaces/{NAME}") for r in sim.requests) or waiting.done())
        ready = {"type": "WorkspaceSucceeded", "status": "True", "reason": "workspaceSucceeded", "message": "ok"}
        condition = {**ready, "lastTransitionTime": "2026-01-01T00:00:00Z"}
        await client.patch_status(kind, NAME, {"status": {"conditions": [condition]}}, namespace=NAMESPACE)
        await asyncio.wait_for(waiting, 30)
