"""The status writer patches a workspace's status once per change, even when the cache has not caught up with it."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.controllers.kinds import WORKSPACE
from kaito.controllers.status import Observed
from kaito.controllers.statuswriter import StatusWriter
from kaito.runtime.client import Client
from kaito.runtime.clock import FakeClock
from kaito.runtime.events import EventRecorder
from kaito.runtime.kinds import EVENTS_V1
from kaito.runtime.objects import ObjectKey
from kaito_sim.server import SimServer
from tests.api.test_crds import install_crds
from tests.conftest import Kubectl
from tests.controllers.test_status import node, pod, workload
from tests.controllers.test_workspace_sizing import create_example

PENDING = Observed(target_nodes=1)
INVALID = Observed(target_nodes=0, invalid="no such preset")


@pytest.fixture
async def crds(kubectl: Kubectl) -> None:
    await install_crds(kubectl)


def writer(kclient: Client) -> StatusWriter:
    clock = FakeClock()
    return StatusWriter(
        kclient, clock=clock, recorder=EventRecorder(kclient, controller="t", instance="t", clock=clock)
    )


def writes(sim: SimServer, key: ObjectKey) -> list[str]:
    """The status patches and Events sent about the workspace so far."""
    status = f"/workspaces/{key.name}/status"
    return [r.path for r in sim.requests if r.is_write and (r.path.endswith(status) or r.path.endswith("/events"))]


@pytest.mark.usefixtures("crds")
async def test_a_stale_read_does_not_write_or_announce_again(sim: SimServer, kclient: Client, namespace: str) -> None:
    key = await create_example(kclient, namespace)
    stale: dict[str, Any] = await kclient.get(WORKSPACE, key.name, namespace=namespace)
    status = writer(kclient)

    await status.write(stale, INVALID, tuning=False)
    sent = writes(sim, key)
    assert len(sent) == 2  # the status, and one Warning for InvalidWorkspace
    await status.write(stale, INVALID, tuning=False)  # the cache still shows the workspace without it
    assert writes(sim, key) == sent

    await status.write(stale, PENDING, tuning=False)  # news since: written, though the read is as stale
    assert len(writes(sim, key)) == len(sent) + 1

    fresh = await kclient.get(WORKSPACE, key.name, namespace=namespace)
    await status.write(fresh, PENDING, tuning=False)  # up to date: nothing to write
    assert len(writes(sim, key)) == len(sent) + 1


@pytest.mark.usefixtures("crds")
async def test_someone_elses_status_change_is_put_right(sim: SimServer, kclient: Client, namespace: str) -> None:
    key = await create_example(kclient, namespace)
    status = writer(kclient)
    await status.write(await kclient.get(WORKSPACE, key.name, namespace=namespace), PENDING, tuning=False)
    before = len(writes(sim, key))
    await kclient.patch_status(WORKSPACE, key.name, {"status": {"targetNodeCount": 7}}, namespace=namespace)

    edited = await kclient.get(WORKSPACE, key.name, namespace=namespace)
    await status.write(edited, PENDING, tuning=False)
    after = await kclient.get(WORKSPACE, key.name, namespace=namespace)
    assert after["status"]["targetNodeCount"] == 1
    assert len(writes(sim, key)) == before + 2  # the test's edit and the writer's correction


async def events_about(kclient: Client, key: ObjectKey) -> list[tuple[str, str]]:
    listed = await kclient.list(EVENTS_V1, namespace=key.namespace)
    return [(e["type"], e["reason"]) for e in listed.items if e["regarding"]["name"] == key.name]


@pytest.mark.parametrize(
    ("tuning", "steps", "done"),
    [
        pytest.param(
            False,
            [
                Observed(target_nodes=1, provisioning=False, nodes=[node("n", ready=False)]),
                Observed(target_nodes=1, provisioning=False, nodes=[node("n")], workload=workload(0)),
                Observed(target_nodes=1, provisioning=False, nodes=[node("n")], workload=workload(1)),
            ],
            "Ready",
            id="inference",
        ),
        pytest.param(
            True,
            [
                Observed(target_nodes=1, provisioning=False, nodes=[node("n", ready=False)]),
                Observed(target_nodes=1, provisioning=False, nodes=[node("n")], job={"status": {"active": 1}}),
                Observed(target_nodes=1, provisioning=False, nodes=[node("n")], job={"status": {"succeeded": 1}}),
            ],
            "Succeeded",
            id="tuning",
        ),
    ],
)
@pytest.mark.usefixtures("crds")
async def test_only_the_workspace_done_is_a_normal_event(
    kclient: Client, namespace: str, tuning: bool, steps: list[Observed], done: str
) -> None:
    key = await create_example(kclient, namespace)
    status = writer(kclient)
    for observed in steps:  # a node starting, up (ResourceReady, JobStarted turn True), then done
        await status.write(await kclient.get(WORKSPACE, key.name, namespace=namespace), observed, tuning=tuning)
    ws = await kclient.get(WORKSPACE, key.name, namespace=namespace)
    conditions = {c["type"]: c["status"] for c in ws["status"]["conditions"]}
    assert ws["status"]["state"] == done and conditions["ResourceReady"] == "True"
    assert await events_about(kclient, key) == [("Normal", "WorkspaceSucceededTrue")]


@pytest.mark.usefixtures("crds")
async def test_failures_are_still_warnings(kclient: Client, namespace: str) -> None:
    key = await create_example(kclient, namespace)
    status = writer(kclient)
    crashing = pod(containerStatuses=[{"name": "server", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}])
    broken = Observed(target_nodes=1, provisioning=False, nodes=[node("n")], workload=workload(0), pods=[crashing])
    await status.write(await kclient.get(WORKSPACE, key.name, namespace=namespace), broken, tuning=False)
    assert await events_about(kclient, key) == [("Warning", "ContainerCrashLoopBackOff")]


@pytest.mark.usefixtures("crds")
async def test_a_server_warming_up_or_flapping_is_not_a_warning(kclient: Client, namespace: str) -> None:
    key = await create_example(kclient, namespace)
    status = writer(kclient)
    warming = pod(containerStatuses=[{"name": "server", "started": True, "ready": False, "state": {"running": {}}}])
    serving = pod(containerStatuses=[{"name": "server", "started": True, "ready": True, "state": {"running": {}}}])

    def up(ready: int, server: dict[str, Any]) -> Observed:
        return Observed(target_nodes=1, provisioning=False, nodes=[node("n")], workload=workload(ready), pods=[server])

    # loading weights (running, not ready yet), Ready, one probe too slow under load, Ready again
    for observed in (up(0, warming), up(1, serving), up(0, warming), up(1, serving)):
        await status.write(await kclient.get(WORKSPACE, key.name, namespace=namespace), observed, tuning=False)
    ws = await kclient.get(WORKSPACE, key.name, namespace=namespace)
    assert ws["status"]["state"] == "Ready"
    assert set(await events_about(kclient, key)) == {("Normal", "WorkspaceSucceededTrue")}  # back to Ready is news
