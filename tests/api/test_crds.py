"""The generated CRDs: committed copies are current, they install on the sim, and the README's examples apply."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from kaito.api import crds
from kaito.api.workspace import Workspace
from kaito.cli import main
from tests.conftest import Kubectl

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*/kaito_workspace_*.yaml"))


def test_committed_crds_match_the_generator() -> None:
    assert crds.stale(ROOT / "crds") == [], "run `kaito crds` and commit the result"


def test_crds_check_command_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds", "--output", str(tmp_path)]) == 0
    assert main(["crds", "--check", "--output", str(tmp_path)]) == 0
    (tmp_path / "kaito.sh_workspaces.yaml").write_text("stale")
    assert main(["crds", "--check", "--output", str(tmp_path)]) == 1
    assert "kaito.sh_workspaces.yaml is out of date" in capsys.readouterr().err


def test_three_readme_examples_are_present() -> None:
    names = {path.name for path in EXAMPLES}
    assert names == {
        "kaito_workspace_phi_3.yaml",
        "kaito_workspace_phi_3_with_adapters.yaml",
        "kaito_workspace_tuning_phi_3.yaml",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_round_trip_through_the_models(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    assert Workspace.parse(raw).to_wire() == raw


def test_unknown_fields_survive_a_round_trip() -> None:
    raw = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "w"},
        "resource": {"labelSelector": {"matchLabels": {"a": "b"}}, "futureField": {"x": 1}},
        "inference": {"preset": {"name": "phi-4", "newOption": True}},
        "extraTopLevel": [1, 2],
    }
    ws = Workspace.parse(raw)
    assert ws.resource.label_selector.match_labels == {"a": "b"}
    assert ws.to_wire() == raw


async def install_crds(kubectl: Kubectl) -> None:
    await kubectl("apply", "-f", str(ROOT / "crds"), namespaced=False)
    for _ in range(50):
        result = await kubectl("get", "crd", "workspaces.kaito.sh", "-o", "json", namespaced=False)
        conditions = result.json().get("status", {}).get("conditions", [])
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("CRD never established")


async def test_examples_apply_on_the_sim_and_print_the_readme_columns(kubectl: Kubectl) -> None:
    await install_crds(kubectl)
    for path in EXAMPLES:
        if "tuning" in path.name:
            continue  # same name as the inference example; applied below in its own step
        await kubectl("apply", "-f", str(path))
    table = await kubectl("get", "workspace")
    header = table.stdout.splitlines()[0].split()
    assert header == ["NAME", "INSTANCE", "RESOURCEREADY", "INFERENCEREADY", "WORKSPACEREADY", "AGE"]
    assert "workspace-phi-3-mini-adapter" in table.stdout
    # INSTANCE shows the instance type in use, from the plan in status: none before an operator has planned.
    assert "Standard_NC6s_v3" not in table.stdout
    wide = await kubectl("get", "wk", "-o", "wide")
    assert wide.stdout.splitlines()[0].split() == [
        "NAME",
        "INSTANCE",
        "RESOURCEREADY",
        "INFERENCEREADY",
        "WORKSPACEREADY",
        "JOBSTARTED",
        "STATE",
        "NODES",
        "ADAPTERS",
        "AGE",
    ]
    stored = (await kubectl("get", "workspaces.v1beta1.kaito.sh", "workspace-phi-3-mini", "-o", "json")).json()
    assert stored["apiVersion"] == "kaito.sh/v1beta1"
    assert stored["inference"]["preset"]["name"] == "phi-3-mini-4k-instruct"
    await kubectl("delete", "workspace", "workspace-phi-3-mini")
    await kubectl("apply", "-f", str(ROOT / "examples/tuning/kaito_workspace_tuning_phi_3.yaml"))
    tuned = (await kubectl("get", "wks", "workspace-phi-3-mini", "-o", "json")).json()
    assert tuned["tuning"]["method"] == "qlora"


async def test_schema_rejects_a_missing_label_selector(kubectl: Kubectl) -> None:
    await install_crds(kubectl)
    manifest = "apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata: {name: bad}\nresource: {instanceType: x}\n"
    result = await kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert result.rc != 0
    assert "resource.labelSelector" in result.stderr and "Required value" in result.stderr


async def test_nodeclaim_crd_is_cluster_scoped_and_accepts_a_claim(kubectl: Kubectl) -> None:
    await install_crds(kubectl)
    claim = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": "ws-abc", "labels": {"node.kubernetes.io/instance-type": "Standard_NC6s_v3"}},
        "spec": {
            "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
            "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["x"]}],
        },
    }
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(claim), namespaced=False)
    table = await kubectl("get", "nodeclaims", namespaced=False)
    assert table.stdout.splitlines()[0].split() == ["NAME", "TYPE", "READY", "NODE", "AGE"]
    assert "Standard_NC6s_v3" in table.stdout
