"""The workspace controller sizes a new workspace once, then never again while its pinned plan's inputs hold."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.api.nodeclaim import NODECLAIM
from kaito.controllers.context import Settings
from kaito.controllers.kinds import CONTROLLER_REVISION, WORKSPACE
from kaito.controllers.workspace import WorkspaceReconciler
from kaito.presets.catalog import Catalog
from kaito.runtime.client import Client
from kaito.runtime.events import EventRecorder
from kaito.runtime.kinds import CONFIG_MAP, DEPLOYMENT, JOB, NODE, POD, SERVICE, STATEFUL_SET
from kaito.runtime.manager import Manager
from kaito.runtime.objects import ObjectKey
from tests.api.test_crds import install_crds
from tests.conftest import Kubectl
from tests.runtime.conftest import eventually
from tests.workspaces.counting import CountingSizing

ROOT = Path(__file__).resolve().parents[2]
WATCHED = (WORKSPACE, NODECLAIM, CONTROLLER_REVISION, CONFIG_MAP, DEPLOYMENT, JOB, NODE, POD, SERVICE, STATEFUL_SET)


@dataclass
class Harness:
    """A reconciler over a synced cache, with a catalog the test may swap and a sizing run counter."""

    manager: Manager
    reconciler: WorkspaceReconciler
    sizing: CountingSizing
    catalog: list[Catalog]

    def workspace(self, key: ObjectKey) -> dict[str, Any]:
        found = self.manager.cache.find(WORKSPACE, key.name, namespace=key.namespace)
        assert found is not None
        return found

    async def reconcile_until_planned(self, key: ObjectKey) -> dict[str, Any]:
        await self.reconciler.reconcile(key)
        await eventually(lambda: bool((self.workspace(key).get("status") or {}).get("plan")))
        return self.workspace(key)


@pytest.fixture
async def harness(kubectl: Kubectl, kclient: Client) -> AsyncIterator[Harness]:
    await install_crds(kubectl)
    manager = Manager(kclient)
    for kind in WATCHED:
        manager.cache.informer(kind)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.cache.run(stop))
    await manager.cache.wait_for_sync()
    sizing = CountingSizing()
    catalog = [Catalog.builtin()]
    recorder = EventRecorder(manager.client, controller="kaito-workspace", instance="test", clock=manager.clock)
    reconciler = WorkspaceReconciler(
        manager.client,
        cache=manager.cache,
        clock=manager.clock,
        recorder=recorder,
        catalog=lambda: catalog[0],
        cloud="azure",
        settings=Settings(),
        sizing=sizing,
    )
    yield Harness(manager, reconciler, sizing, catalog)
    stop.set()
    await task


async def create_example(kclient: Client, namespace: str) -> ObjectKey:
    doc = yaml.safe_load((ROOT / "examples/inference/kaito_workspace_phi_3.yaml").read_text())
    doc["apiVersion"] = WORKSPACE.api_version
    doc["metadata"]["namespace"] = namespace
    await kclient.create(WORKSPACE, doc)
    return ObjectKey(namespace, doc["metadata"]["name"])


def invalid(ws: dict[str, Any]) -> bool:
    conditions = (ws.get("status") or {}).get("conditions") or []
    return any(c.get("reason") == "InvalidWorkspace" for c in conditions)


async def test_a_new_workspace_is_sized_once_and_a_planned_one_not_again(
    harness: Harness, kclient: Client, namespace: str
) -> None:
    key = await create_example(kclient, namespace)
    await eventually(lambda: harness.manager.cache.find(WORKSPACE, key.name, namespace=namespace) is not None)
    first = await harness.reconcile_until_planned(key)
    assert harness.sizing.runs == 1
    await harness.reconciler.reconcile(key)
    assert harness.sizing.runs == 1
    assert harness.workspace(key)["status"]["plan"] == first["status"]["plan"]


async def test_a_catalog_without_the_pinned_instance_type_leaves_the_workspace_valid(
    harness: Harness, kclient: Client, namespace: str
) -> None:
    key = await create_example(kclient, namespace)
    await eventually(lambda: harness.manager.cache.find(WORKSPACE, key.name, namespace=namespace) is not None)
    before = (await harness.reconcile_until_planned(key))["status"]["plan"]
    builtin = harness.catalog[0]
    skus = [sku for sku in builtin.skus.values() if sku.name != before["instanceType"]]
    harness.catalog[0] = Catalog(builtin.models.values(), skus)
    await harness.reconciler.reconcile(key)
    after = await kclient.get(WORKSPACE, key.name, namespace=namespace)
    assert harness.sizing.runs == 1
    assert after["status"]["plan"] == before and not invalid(after)
    assert after["status"].get("state") != "Failed"
