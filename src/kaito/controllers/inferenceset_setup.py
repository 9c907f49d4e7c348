"""Wiring the InferenceSet controller onto the manager beside the workspace controller: the sets, their child
Workspaces (indexed by the set's label) and the endpoint objects they own."""

from __future__ import annotations

from kaito.api.inferenceset import INFERENCESET, LABEL_SET
from kaito.controllers.context import Settings
from kaito.controllers.inferenceset import InferenceSetReconciler
from kaito.controllers.kinds import WORKSPACE
from kaito.runtime.builder import Builder
from kaito.runtime.controller import Controller
from kaito.runtime.events import EventRecorder
from kaito.runtime.kinds import DEPLOYMENT, SERVICE
from kaito.runtime.manager import Manager

NAME = "inferenceset"
EVENT_CONTROLLER = "kaito-inferenceset"


def setup(manager: Manager, *, settings: Settings) -> Controller:
    cache = manager.cache
    cache.add_label_index(WORKSPACE, LABEL_SET)
    recorder = EventRecorder(
        manager.client, controller=EVENT_CONTROLLER, instance=manager.options.identity, clock=manager.clock
    )
    reconciler = InferenceSetReconciler(
        manager.client, cache=cache, clock=manager.clock, recorder=recorder, settings=settings
    )
    return (
        Builder(manager, NAME)
        .for_(INFERENCESET)
        .owns(WORKSPACE)
        .owns(SERVICE)
        .owns(DEPLOYMENT)
        .with_options(max_concurrent_reconciles=2)
        .complete(reconciler.reconcile)
    )
