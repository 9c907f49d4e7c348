"""`kaito status` for a person: the plan, the conditions with reasons, the nodes and how to reach the model."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, wait_workspace

ROOT = Path(__file__).resolve().parents[2]
NAME = "workspace-phi-3-mini"


async def kaito(sim: SimServer, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "kaito.cli", *args, "--kubeconfig", str(sim.kubeconfig_path)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_status_tells_the_whole_story(kubectl: Kubectl, operator: Operator, sim: SimServer) -> None:
    await kubectl("apply", "-f", str(ROOT / "examples/inference/kaito_workspace_phi_3.yaml"))
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True")
    rc, out, err = await kaito(sim, "status", NAME, "-n", kubectl.namespace)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"workspace {kubectl.namespace}/{NAME}: Ready"
    assert lines[1].startswith("plan: 1 x Standard_NC6s_v3 (1 GPU each), tp=1 pp=1 dtype=float16 max-model-len=4096")
    assert any("why: " in line and "compute capability" in line for line in lines)
    assert any(line.split()[:3] == ["ResourceReady", "True", "workspaceResourceStatusSuccess:"] for line in lines)
    assert any(line.strip().startswith("aks-") and "gpus=1" in line for line in lines)
    assert f"/api/v1/namespaces/{kubectl.namespace}/services/{NAME}:80/proxy/v1/models" in out

    rc, _, err = await kaito(sim, "status", "no-such-workspace", "-n", kubectl.namespace)
    assert rc == 1 and f"workspace {kubectl.namespace}/no-such-workspace not found" in err
