"""The manager's API writes for one inference workspace, counted at the simulated API server: few, none when idle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kaito.api.nodeclaim import NODECLAIM
from kaito.api.workspace import FINALIZER
from kaito.controllers.kinds import WORKSPACE
from kaito.runtime.client import Client
from kaito.runtime.objects import ObjectKey
from kaito_sim.aks import SimulatedAks
from kaito_sim.apiserver.http import RequestRecord
from kaito_sim.demo.operator import install_crds
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, condition, wait_workspace

ROOT = Path(__file__).resolve().parents[2]
PHI3 = ROOT / "examples/inference/kaito_workspace_phi_3.yaml"
NAME = "workspace-phi-3-mini"
MANAGER_AGENT = "kaito-runtime"  # the manager's own client; the test's clients and kubectl say otherwise
# Apply to Ready, the writes every run makes: the workspace's ControllerRevision, NodeClaim (created with its
# finalizer), engine ConfigMap, Service and Deployment; and one Event, WorkspaceSucceededTrue. The workspace's
# finalizer comes with the create, from the manager's mutating webhook; a single node needs no headless Service;
# the steps before Ready (the claim launched, registered, ready; the resources ready) are told by conditions.
OBJECT_WRITES = 5
# A pass that runs before the cache shows a child it just applied applies it again (a no-op at the server):
# rare, and timing alone decides it, so it is allowed for a few children rather than counted exactly.
OBJECT_REWRITES_AT_MOST = 3
EVENTS = 1
# Status patches follow what the reconciles see, which depends on how they interleave with the node joining and
# the pod starting: one patch per distinct state, at most. Usually three for the workspace (Pending,
# ResourceReady, Ready) and one for the claim (launch and registration together); the bounds are every state
# the path can show (the claim launched, registered, initialized; the pod pending, created, running, ready).
# So the usual total is 5 + 1 + 3 + 1 = 10, but a reconcile that happens to see one more state writes one more
# patch: the total is bounded by the sum of the bounds, not by 10, and asserting 10 would be a race.
WORKSPACE_STATUS_AT_MOST = 7
NODECLAIM_STATUS_AT_MOST = 3


@pytest.fixture
async def operator(sim: SimServer, kclient: Client) -> AsyncIterator[Operator]:
    """The operator on its own client, so its requests are told apart by User-Agent; instances up at once."""
    async with SimulatedAks(sim, provisioning_delay=0.0) as aks:
        await install_crds(kclient, "kaito-system")
        manager_client = await Client.from_config(kubeconfig=str(sim.kubeconfig_path))
        op = Operator(aks=aks, client=manager_client)
        await op.start()
        yield op
        await op.halt()
        await manager_client.close()


def manager_writes(records: list[RequestRecord]) -> list[str]:
    return [f"{r.method} {r.path}" for r in records if r.user_agent.startswith(MANAGER_AGENT) and r.is_write]


async def event_reasons(kubectl: Kubectl) -> set[str]:
    listing = await kubectl("get", "events", "--field-selector", f"involvedObject.name={NAME}", "-o", "json")
    return {e["reason"] for e in listing.json()["items"]}


async def test_inference_workspace_to_ready_within_the_write_budget_then_idle(
    sim: SimServer, kubectl: Kubectl, namespace: str, operator: Operator
) -> None:
    for _ in range(100):  # start-up's own writes, the webhooks' registrations (mutating first), come before
        if (await kubectl("get", "validatingwebhookconfigurations", "-o", "name", namespaced=False)).stdout:
            break
        await asyncio.sleep(0.1)
    first = len(sim.requests)
    applied = await kubectl("apply", "-f", str(PHI3), "-o", "json")
    assert applied.json()["metadata"]["finalizers"] == [FINALIZER]  # set at admission, before any reconcile
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True")
    for _ in range(100):  # the last Event follows the status patch that made the workspace Ready
        if "WorkspaceSucceededTrue" in await event_reasons(kubectl):
            break
        await asyncio.sleep(0.1)
    writes = manager_writes(sim.requests[first:])
    shown = f"{len(writes)} writes:\n" + "\n".join(writes)
    events = [w for w in writes if "/events" in w]
    workspace_status = [w for w in writes if "/workspaces/" in w and w.endswith("/status")]
    nodeclaim_status = [w for w in writes if "/nodeclaims/" in w and w.endswith("/status")]
    objects = [w for w in writes if w not in events and not w.endswith("/status")]
    assert len(set(objects)) == OBJECT_WRITES, shown
    assert len(objects) <= OBJECT_WRITES + OBJECT_REWRITES_AT_MOST, shown
    assert len(events) == EVENTS, shown  # one per transition, none repeated
    assert 1 <= len(workspace_status) <= WORKSPACE_STATUS_AT_MOST, shown
    assert 1 <= len(nodeclaim_status) <= NODECLAIM_STATUS_AT_MOST, shown

    assert operator.manager is not None
    cache = operator.manager.cache

    def settled() -> bool:
        ws = cache.find(WORKSPACE, NAME, namespace=namespace)
        return ws is not None and condition(ws, "WorkspaceSucceeded").get("status") == "True"

    for _ in range(100):  # the manager's cache catches up with its last writes
        if settled():
            break
        await asyncio.sleep(0.1)
    assert settled()
    claims = [str(c["metadata"]["name"]) for c in cache.list(NODECLAIM)]
    reconcilers = {c.name: c.reconcile for c in operator.manager.controllers}
    idle = len(sim.requests)
    for _ in range(3):  # what a resync, or any unrelated event, would make the manager do
        await reconcilers["workspace"](ObjectKey(namespace, NAME))
        for claim in claims:
            await reconcilers["nodeclaim"](ObjectKey("", claim))
    assert claims and manager_writes(sim.requests[idle:]) == []
