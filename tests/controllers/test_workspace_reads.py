"""A workspace reconcile's cache reads touch that workspace's objects only, however many others the cache holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kaito.api.nodeclaim import LABEL_NODECLAIM, NODECLAIM
from kaito.api.workspace import LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE
from kaito.controllers import setup
from kaito.controllers.context import Settings
from kaito.controllers.kinds import WORKSPACE
from kaito.controllers.workspace import WorkspaceReconciler
from kaito.presets.catalog import Catalog
from kaito.runtime.client import Client
from kaito.runtime.events import EventRecorder
from kaito.runtime.kinds import NODE, POD, Kind
from kaito.runtime.manager import Manager
from kaito.runtime.objects import Obj, ObjectKey
from tests.api.test_crds import install_crds
from tests.conftest import Kubectl
from tests.controllers.test_workspace_sizing import WATCHED, create_example
from tests.runtime.conftest import eventually

UNRELATED = 500


@pytest.fixture
async def manager(kubectl: Kubectl, kclient: Client) -> AsyncIterator[Manager]:
    await install_crds(kubectl)
    manager = Manager(kclient)
    for kind in WATCHED:
        manager.cache.informer(kind)
    setup.add_indexes(manager.cache)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.cache.run(stop))
    await manager.cache.wait_for_sync()
    yield manager
    stop.set()
    await task


def unrelated(kind: Kind, index: int, namespace: str) -> Obj:
    """Another workspace's object (or a node of another claim), in the test's namespace where namespaced."""
    labels = {LABEL_WORKSPACE: f"other-{index}", LABEL_WORKSPACE_NAMESPACE: namespace, LABEL_NODECLAIM: f"c-{index}"}
    meta: Obj = {"name": f"unrelated-{index}", "labels": labels, "resourceVersion": "1"}
    if kind.namespaced:
        meta["namespace"] = namespace
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta}


async def visits_of_one_reconcile(manager: Manager, reconciler: WorkspaceReconciler, key: ObjectKey) -> int:
    before = manager.cache.objects_visited
    await reconciler.reconcile(key)
    return manager.cache.objects_visited - before


async def test_reconcile_reads_do_not_grow_with_unrelated_pods_nodes_and_claims(
    manager: Manager, kclient: Client, namespace: str
) -> None:
    recorder = EventRecorder(manager.client, controller="kaito-workspace", instance="test", clock=manager.clock)
    reconciler = WorkspaceReconciler(
        manager.client,
        cache=manager.cache,
        clock=manager.clock,
        recorder=recorder,
        catalog=Catalog.builtin,
        cloud="azure",
        settings=Settings(),
    )
    key = await create_example(kclient, namespace)
    await eventually(lambda: manager.cache.find(WORKSPACE, key.name, namespace=namespace) is not None)
    await reconciler.reconcile(key)  # creates the claim, ConfigMap, Services and revision
    await eventually(lambda: bool(manager.cache.get(WORKSPACE, key.name, namespace=namespace).get("status")))
    await eventually(lambda: len(manager.cache.list(NODECLAIM)) == 1)
    await reconciler.reconcile(key)
    alone = await visits_of_one_reconcile(manager, reconciler, key)

    for kind in (POD, NODE, NODECLAIM):
        store = manager.cache.informer(kind).store
        for index in range(UNRELATED):
            store.upsert(unrelated(kind, index, namespace))
    crowded = await visits_of_one_reconcile(manager, reconciler, key)

    assert 0 < alone < 20
    assert crowded == alone
