"""The operator's cache holds workspace pods and the nodes kaito provisioned, not the rest of the cluster."""

from __future__ import annotations

import pytest

from kaito.api.nodeclaim import LABEL_NODECLAIM
from kaito.api.workspace import LABEL_WORKSPACE
from kaito.cli import main
from kaito.runtime.client import Client
from kaito.runtime.kinds import NODE, POD, Kind
from kaito.runtime.manager import Manager
from kaito_sim.nodes.nodespec import NodeSpec
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, wait_workspace
from tests.e2e.test_inference import NAME, PHI3
from tests.runtime.conftest import eventually

CAPACITY = {"cpu": "4", "memory": "16Gi", "pods": "110"}


def pod(namespace: str, name: str, labels: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def cached(manager: Manager | None, kind: Kind) -> list[str]:
    assert manager is not None
    return sorted(o["metadata"]["name"] for o in manager.cache.list(kind))


async def test_only_workspace_pods_and_provisioned_nodes_are_cached(
    sim: SimServer, kubectl: Kubectl, kclient: Client, operator: Operator, namespace: str
) -> None:
    await sim.add_node(NodeSpec(name="someone-elses-node", capacity=CAPACITY))
    await kclient.create(POD, pod(namespace, "stray", {"app": "web"}))
    await kclient.create(POD, pod(namespace, "labelled", {LABEL_WORKSPACE: "elsewhere"}))
    await kubectl("apply", "-f", str(PHI3))
    await wait_workspace(kubectl, NAME, "ResourceReady", "True")
    await eventually(lambda: "labelled" in cached(operator.manager, POD))
    assert "stray" not in cached(operator.manager, POD)
    assert operator.manager is not None
    nodes = operator.manager.cache.list(NODE)
    assert nodes and all(LABEL_NODECLAIM in n["metadata"]["labels"] for n in nodes)

    await operator.halt()
    await operator.start(byo=True)  # a user's own nodes may be any node: all are cached
    assert "someone-elses-node" in cached(operator.manager, NODE)
    assert "stray" not in cached(operator.manager, POD)

    await operator.halt()
    await sim.add_node(NodeSpec(name="gpu-pool-node", capacity=CAPACITY, labels={"pool": "gpu"}))
    await operator.start(byo=True, byo_node_selector="pool=gpu")  # only the nodes workspaces may use
    assert cached(operator.manager, NODE) == ["gpu-pool-node"]


def test_manager_refuses_a_malformed_byo_node_selector_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["manager", "--cloud", "byo", "--byo-node-selector", "pool gpu"])
    assert exit_.value.code == 2
    assert "--byo-node-selector: 'pool gpu' is not a label selector" in capsys.readouterr().err
