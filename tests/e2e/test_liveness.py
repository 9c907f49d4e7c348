"""A VM that never joins the simulated cluster: its NodeClaim is replaced after the timeout and the workspace serves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kaito.provisioner.liveness import NODE_READY_TIMEOUT, REGISTRATION_TIMEOUT
from kaito.runtime.client import Client
from kaito_sim.aks import SimulatedAks
from kaito_sim.demo.operator import install_crds
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, condition, wait_workspace
from tests.e2e.test_inference import NAME, PHI3, gpu_nodes

TIMEOUT = 3.0  # seconds: the manager's --nodeclaim-registration-timeout, shortened for the test


@pytest.fixture
async def impatient(sim: SimServer, kclient: Client) -> AsyncIterator[Operator]:
    async with SimulatedAks(sim, provisioning_delay=0.1) as aks:
        await install_crds(kclient, "kaito-system")
        op = Operator(aks=aks, client=kclient)
        await op.start(registration_timeout=TIMEOUT, node_ready_timeout=TIMEOUT)
        yield op
        await op.halt()


async def claims(kubectl: Kubectl) -> list[dict[str, object]]:
    return list((await kubectl("get", "nodeclaims", "-o", "json", namespaced=False)).json()["items"])


async def test_vm_that_never_joins_is_replaced_and_the_workspace_becomes_ready(
    kubectl: Kubectl, impatient: Operator
) -> None:
    arm = impatient.aks.arm
    arm.faults.never_join(times=1)
    await kubectl("apply", "-f", str(PHI3))
    for _ in range(150):  # the agent pool is created and succeeds
        if any(pool.provisioning_state == "Succeeded" for pool in arm.pools.values()):
            break
        await asyncio.sleep(0.1)
    [first] = arm.pools
    assert arm.node_names(first) and not await gpu_nodes(kubectl), "the pool succeeded; its VM never joined"
    arm.provisioning_delay = 2.0  # deleting the lost VM takes a while: long enough to read why on the workspace

    ws = await wait_workspace(kubectl, NAME, "ResourceReady", "False", reason=REGISTRATION_TIMEOUT, within=15)
    message = condition(ws, "ResourceReady")["message"]
    assert f"no node registered within {TIMEOUT:g}s of the launch" in message
    ws = await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True", within=60)
    assert ws["status"]["state"] == "Ready"

    # One replacement: one pool, one claim, one GPU node, all the workspace's.
    [claim] = await claims(kubectl)
    assert claim["metadata"]["labels"]["kaito.sh/workspace"] == NAME  # type: ignore[index]
    assert arm.requests.creates == 2 and list(arm.pools) == [first]
    assert await gpu_nodes(kubectl) == arm.node_names(first)
    listing = await kubectl("get", "events", "-o", "json", namespaced=False)
    told = [e for e in listing.json()["items"] if e["reason"] == REGISTRATION_TIMEOUT]
    assert [(e["type"], e["involvedObject"]["kind"]) for e in told] == [("Warning", "NodeClaim")]

    await kubectl("delete", "workspace", NAME, "--timeout=60s")
    for _ in range(150):
        if not await claims(kubectl) and not arm.pools and not await gpu_nodes(kubectl):
            break
        await asyncio.sleep(0.2)
    assert not await claims(kubectl) and not arm.pools and not await gpu_nodes(kubectl), "left behind"


@pytest.mark.parametrize(
    ("fault", "reason", "words"),
    [
        ("never_join", REGISTRATION_TIMEOUT, "no node registered within"),
        ("never_ready", NODE_READY_TIMEOUT, "after it registered (--node-ready-timeout)"),
    ],
)
async def test_the_workspace_says_why_its_nodeclaim_was_given_up(
    kubectl: Kubectl, impatient: Operator, fault: str, reason: str, words: str
) -> None:
    arm = impatient.aks.arm
    getattr(arm.faults, fault)(times=1)  # the given-up claim goes at once: its pool deletes in 0.1 s
    await kubectl("apply", "-f", str(PHI3))
    await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True", within=60)
    listing = await kubectl("get", "events", "--field-selector", f"involvedObject.name={NAME}", "-o", "json")
    told = [e for e in listing.json()["items"] if e["reason"] == reason]
    assert [(e["type"], e["involvedObject"]["kind"]) for e in told] == [("Warning", "Workspace")]
    assert "NodeClaim " in told[0]["message"] and words in told[0]["message"]
    assert arm.requests.creates == 2, "one replacement"
    await kubectl("delete", "workspace", NAME, "--timeout=60s")
    for _ in range(150):
        if not await claims(kubectl) and not arm.pools and not await gpu_nodes(kubectl):
            break
        await asyncio.sleep(0.2)
    assert not await claims(kubectl) and not arm.pools and not await gpu_nodes(kubectl), "left behind"
