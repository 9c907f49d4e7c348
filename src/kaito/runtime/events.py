"""Kubernetes Events (core/v1) for state transitions, so `kubectl describe` tells the story of an object."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from kaito.runtime import errors
from kaito.runtime.clock import REAL_CLOCK, Clock
from kaito.runtime.kinds import EVENT
from kaito.runtime.objects import Obj

if TYPE_CHECKING:
    from kaito.runtime.client import Client

log = logging.getLogger(__name__)


class EventRecorder:
    """Creates one Event per call; failures are logged, never raised (an event is not worth a failed reconcile)."""

    def __init__(self, client: Client, *, component: str, clock: Clock = REAL_CLOCK) -> None:
        self.client = client
        self.component = component
        self.clock = clock

    async def emit(self, obj: Obj, *, reason: str, message: str, warning: bool = False) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = self.clock.wall().strftime("%Y-%m-%dT%H:%M:%SZ")
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name', 'object')}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.client.create(EVENT, event)
        except (errors.ApiError, OSError) as exc:
            log.warning("could not record event %s on %s: %s", reason, meta.get("name"), exc)
