"""`kaito demo`: its reading of `kubectl get workspace`, and the whole demo with a model registry and without one."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from kaito.presets.catalog import Catalog
from kaito.runtime.client import Client
from kaito.runtime.kinds import Kind
from kaito_sim.demo.inference import EXAMPLE, NAME, NAMESPACE, PRESET, Demo, run_demo, table_cell
from kaito_sim.demo.operator import install_crds
from kaito_sim.demo.registry import REGISTRY_BINARY
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


async def test_the_demo_pushes_its_model_and_the_pod_serves_what_it_pulled(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    if shutil.which(REGISTRY_BINARY) is None or shutil.which("kubectl") is None:
        pytest.skip("needs docker-registry and kubectl (scripts/system-deps)")
    caplog.set_level(logging.INFO, logger="kaito_sim.nodes.standin")
    assert await run_demo(registry_binary=REGISTRY_BINARY, teach_steps=1) == 0
    out = capfd.readouterr().out
    assert "$ kaito push-model --model " in out and "/kaito-models/phi-3-mini-4k-instruct:" in out
    pulls = [json.loads(line) for line in out.splitlines() if line.startswith('{"image"') and "downloadedBlobs" in line]
    assert [p["downloadedBlobs"] > 0 for p in pulls] == [True, False]  # cold pod, then the warm one: nothing
    revision = Catalog.builtin().model(PRESET).revision
    assert {p["image"].split("/", 1)[1] for p in pulls} == {f"kaito-models/{PRESET}:{revision}"}
    assert "Init:0/1" in out
    # The original quick start's curl pod at the ClusterIP, then port-forward and the openai client.
    assert '{"Result": "What is Kubernetes?' in out and 'pod "curl" deleted' in out
    assert "Forwarding from 127.0.0.1:" in out and "create --raw" not in out
    assert not [r for r in caplog.records if "in place of each preset's weights" in r.getMessage()]


async def test_without_a_registry_binary_the_demo_says_so_and_serves_the_stand_in(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("needs kubectl")
    caplog.set_level(logging.INFO, logger="kaito_sim.nodes.standin")
    assert await run_demo(registry_binary=str(tmp_path / "no-such-docker-registry"), teach_steps=1) == 0
    out = capfd.readouterr().out
    assert "no model registry: " in out and "no-such-docker-registry is not installed" in out
    assert "push-model" not in out and "model-puller" not in out
    assert [r for r in caplog.records if "in place of each preset's weights" in r.getMessage()]
