"""Kubernetes Events for state transitions, so `kubectl describe` and `kubectl get events` tell an object's story.

Written through events.k8s.io/v1 (what client-go's current recorder uses); the API server stores one
object, so core/v1 readers (`kubectl get events`, `describe`) see it with `involvedObject` the object.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kaito.runtime import errors
from kaito.runtime.clock import REAL_CLOCK, Clock, micro_time
from kaito.runtime.kinds import EVENTS_V1, Kind
from kaito.runtime.objects import Obj

if TYPE_CHECKING:
    from kaito.runtime.client import Client

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
# Events about cluster-scoped objects live in `default`, where kubectl looks for them.
CLUSTER_EVENTS_NAMESPACE = "default"
NOTE_LIMIT = 1024  # the API server refuses a longer note


@dataclass(frozen=True)
class EventSpec:
    type: str  # NORMAL or WARNING
    reason: str
    action: str  # what the controller was doing: Launch, Register, Reconcile, ...
    message: str


class EventRecorder:
    """Creates one Event per call; failures are logged, never raised (an event is not worth a failed reconcile)."""

    def __init__(self, client: Client, *, controller: str, instance: str, clock: Clock = REAL_CLOCK) -> None:
        self.client = client
        self.controller = controller
        self.instance = instance
        self.clock = clock

    async def emit(self, kind: Kind, obj: Obj, event: EventSpec) -> None:
        meta = obj.get("metadata") or {}
        regarding = {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        if kind.namespaced:
            regarding["namespace"] = meta.get("namespace")
        body: Obj = {
            "apiVersion": EVENTS_V1.api_version,
            "kind": EVENTS_V1.kind,
            "metadata": {
                "name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}",
                "namespace": meta.get("namespace") if kind.namespaced else CLUSTER_EVENTS_NAMESPACE,
            },
            "eventTime": micro_time(self.clock.wall()),
            "reportingController": self.controller,
            "reportingInstance": self.instance,
            "action": event.action,
            "reason": event.reason,
            "type": event.type,
            "note": event.message[:NOTE_LIMIT],
            "regarding": regarding,
        }
        try:
            await self.client.create(EVENTS_V1, body)
        except (errors.ApiError, OSError) as exc:
            log.warning("could not record event %s for %s %s: %s", event.reason, kind.kind, meta.get("name"), exc)
