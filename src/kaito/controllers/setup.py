"""Wiring the workspace controller onto a manager: what it reconciles and which events bring a workspace back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kaito.api.nodeclaim import NODECLAIM
from kaito.api.workspace import LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE
from kaito.controllers import revisions
from kaito.controllers.adapters import named_by
from kaito.controllers.context import Settings
from kaito.controllers.kinds import CONTROLLER_REVISION, WORKSPACE
from kaito.controllers.workspace import WorkspaceReconciler
from kaito.presets.catalog import Catalog
from kaito.runtime.builder import Builder
from kaito.runtime.cache import Cache
from kaito.runtime.controller import Controller
from kaito.runtime.events import EventRecorder
from kaito.runtime.handler import enqueue_mapped
from kaito.runtime.kinds import CONFIG_MAP, DEPLOYMENT, JOB, NODE, POD, SERVICE, STATEFUL_SET
from kaito.runtime.manager import Manager
from kaito.runtime.objects import ObjectKey, labels_of
from kaito.workspaces.hubmodels import HubModels
from kaito.workspaces.imageconfigs import ImageConfigs

NAME = "workspace"
EVENT_CONTROLLER = "kaito-workspace"  # `kubectl describe` shows it as the Events' source


def _by_workspace_labels(obj: dict[str, Any]) -> list[ObjectKey]:
    labels = labels_of(obj)
    name = labels.get(LABEL_WORKSPACE)
    namespace = labels.get(LABEL_WORKSPACE_NAMESPACE) or (obj.get("metadata") or {}).get("namespace")
    return [ObjectKey(str(namespace), name)] if name and namespace else []


def add_indexes(cache: Cache) -> None:
    """The label indexes the reconciler's lists go through, so a read touches one workspace's objects only."""
    for kind in (NODECLAIM, POD):
        cache.add_label_index(kind, LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE)
    cache.add_label_index(CONTROLLER_REVISION, revisions.LABEL)


def setup(
    manager: Manager,
    *,
    catalog: Callable[[], Catalog],
    cloud: str,
    settings: Settings,
    image_configs: ImageConfigs | None = None,
    hub_models: HubModels | None = None,
) -> Controller:
    cache = manager.cache
    add_indexes(cache)
    recorder = EventRecorder(
        manager.client, controller=EVENT_CONTROLLER, instance=manager.options.identity, clock=manager.clock
    )
    reconciler = WorkspaceReconciler(
        manager.client,
        cache=cache,
        clock=manager.clock,
        recorder=recorder,
        catalog=catalog,
        cloud=cloud,
        settings=settings,
        image_configs=image_configs,
        hub_models=hub_models,
    )

    def nodes_to_workspaces(node: dict[str, Any]) -> list[ObjectKey]:
        if not settings.bring_your_own_nodes:
            return _by_workspace_labels(node)
        return [ObjectKey.of(ws) for ws in cache.list(WORKSPACE)]

    def tuning_to_serving(tuning: dict[str, Any]) -> list[ObjectKey]:
        """A tuning Workspace's run moves the adapters that name it (a rare event: the namespace is scanned)."""
        if tuning.get("tuning") is None:
            return []
        namespace = tuning["metadata"].get("namespace")
        return [ObjectKey.of(ws) for ws in named_by(tuning, cache.list(WORKSPACE, namespace=namespace))]

    return (
        Builder(manager, NAME)
        .for_(WORKSPACE)
        .owns(DEPLOYMENT)
        .owns(STATEFUL_SET)
        .owns(SERVICE)
        .owns(CONFIG_MAP)
        .owns(JOB)
        .owns(CONTROLLER_REVISION)
        .watches(NODECLAIM, enqueue_mapped(_by_workspace_labels))
        .watches(POD, enqueue_mapped(_by_workspace_labels))
        .watches(NODE, enqueue_mapped(nodes_to_workspaces))
        .watches(WORKSPACE, enqueue_mapped(tuning_to_serving))
        .with_options(max_concurrent_reconciles=5)
        .complete(reconciler.reconcile)
    )
