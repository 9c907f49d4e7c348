"""`kubectl apply -k deploy/overlays/sim` on the simulated AKS cluster: the manager it deploys runs there for real."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kaito.inference.tinymodel import make_tiny_model
from kaito_sim.aks import SimulatedAks
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import wait_workspace

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy/overlays/sim"
PHI3 = ROOT / "examples/inference/kaito_workspace_phi_3.yaml"
NAME = "workspace-phi-3-mini"
SERVED = "phi-3-mini-4k-instruct"
SYSTEM = "kaito-system"
BAD = """\
apiVersion: kaito.sh/v1alpha1
kind: Workspace
metadata:
  name: no-such-model
resource:
  instanceType: Standard_NC6s_v3
  labelSelector:
    matchLabels:
      apps: nothing
inference:
  preset:
    name: no-such-preset
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
async def sim(tiny_model: Path) -> AsyncIterator[SimServer]:
    options = ProcessPods(images=("kaito-runtime", "kaito-manager"), model_dir=tiny_model)
    async with SimServer(bookmark_interval=0.5, process_pods=options) as server:
        yield server


@pytest.fixture
async def aks(sim: SimServer) -> AsyncIterator[SimulatedAks]:
    async with SimulatedAks(sim, provisioning_delay=0.1) as simulated:
        yield simulated


async def deploy(kubectl: Kubectl, aks: SimulatedAks) -> None:
    """What the overlay's comment tells a person to do: the ARM Secret, then `kubectl apply -k`."""
    target = aks.azure
    await kubectl("create", "namespace", SYSTEM, namespaced=False)
    secret = ["create", "secret", "generic", "kaito-sim-arm", "-n", SYSTEM]
    literals = [f"--from-literal=ARM_URL={target.url}", f"--from-literal=ARM_TOKEN={target.token}"]
    await kubectl(*secret, *literals, f"--from-file=ca.crt={target.ca_path}", namespaced=False)
    await kubectl("apply", "-k", str(OVERLAY), namespaced=False)


async def test_the_sim_overlay_deploys_a_working_manager(sim: SimServer, aks: SimulatedAks, kubectl: Kubectl) -> None:
    await deploy(kubectl, aks)
    wait = ["wait", "-n", SYSTEM, "--for=condition=Available", "deployment/kaito-manager", "--timeout=40s"]
    result = await kubectl(*wait, namespaced=False, check=False)
    if result.rc != 0:
        pods = await kubectl("get", "pods", "-n", SYSTEM, "-o", "yaml", namespaced=False)
        logs = await kubectl("logs", "-n", SYSTEM, "deployment/kaito-manager", namespaced=False, check=False)
        pytest.fail(f"the manager never became available: {result.stderr}\n{pods.stdout}\n{logs.stdout}")
    pod = (await kubectl("get", "pods", "-n", SYSTEM, "-o", "json", namespaced=False)).json()["items"][0]
    assert pod["spec"]["serviceAccountName"] == "kaito-manager"
    manager = "system:serviceaccount:kaito-system:kaito-manager"
    assert any(r.user == manager and r.allowed for r in sim.requests), "the manager calls as its service account"
    metrics = await kubectl("get", "--raw", f"/api/v1/namespaces/{SYSTEM}/services/kaito-metrics:8080/proxy/metrics")
    assert "# TYPE" in metrics.stdout

    await kubectl("apply", "-f", str(PHI3))
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True", within=40)
    models = await kubectl("get", "--raw", f"/api/v1/namespaces/{kubectl.namespace}/services/{NAME}:80/proxy/v1/models")
    assert [m["id"] for m in models.json()["data"]] == [SERVED]

    refused = await kubectl("apply", "-f", "-", stdin=BAD, check=False)
    assert refused.rc != 0
    assert 'admission webhook "validation.workspace.kaito.sh" denied the request' in refused.stderr, refused.stderr
    assert "no-such-preset" in refused.stderr
