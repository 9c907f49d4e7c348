"""Kubernetes Events for NodeClaim transitions, so `kubectl get events` tells the story of a node's arrival.

Written through events.k8s.io/v1 (what client-go's current recorder uses); the API server stores one
object, so core/v1 readers (`kubectl get events`, `describe`) see it with `involvedObject` the NodeClaim.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from kaito.provisioner.conditions import LAUNCHED, READY, REGISTERED, became
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.clock import REAL_CLOCK, Clock
from kaito.runtime.kinds import Kind
from kaito.runtime.objects import Obj

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
LAUNCH_FAILED = "LaunchFailed"
# Events about cluster-scoped objects live in `default`, where kubectl looks for them.
CLUSTER_EVENTS_NAMESPACE = "default"
EVENTS_V1 = Kind("events.k8s.io", "v1", "Event", "events")


@dataclass(frozen=True)
class EventSpec:
    type: str
    reason: str
    action: str  # what the controller was doing: Launch, Register, Initialize
    message: str


def transition_events(old: Obj, new: Obj) -> list[EventSpec]:
    """One event per condition transition between two NodeClaim statuses."""
    before, after = old.get("conditions") or [], new.get("conditions") or []
    found: list[EventSpec] = []
    if became(before, after, LAUNCHED, "True"):
        found.append(EventSpec(NORMAL, LAUNCHED, "Launch", "Launched the instance in the cloud"))
    if failed := became(before, after, LAUNCHED, "False"):
        found.append(
            EventSpec(WARNING, LAUNCH_FAILED, "Launch", f"{failed.get('reason')}: {failed.get('message', '')}")
        )
    if became(before, after, REGISTERED, "True"):
        found.append(EventSpec(NORMAL, REGISTERED, "Register", f"Node {new.get('nodeName')} registered"))
    if became(before, after, READY, "True"):
        found.append(EventSpec(NORMAL, READY, "Initialize", f"Node {new.get('nodeName')} is ready for GPU work"))
    return found


class EventRecorder:
    """Writes Events; best effort, because a lost event must never fail a reconcile."""

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
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}",
                "namespace": meta.get("namespace") if kind.namespaced else CLUSTER_EVENTS_NAMESPACE,
            },
            "eventTime": self.clock.wall().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingController": self.controller,
            "reportingInstance": self.instance,
            "action": event.action,
            "reason": event.reason,
            "type": event.type,
            "note": event.message,
            "regarding": regarding,
        }
        try:
            await self.client.create(EVENTS_V1, body)
        except (errors.ApiError, OSError) as exc:
            log.warning("could not record event %s for %s %s: %s", event.reason, kind.kind, meta.get("name"), exc)
