"""The Events a NodeClaim's condition transitions make, so `kubectl get events` tells the story of a node's arrival."""

from __future__ import annotations

from kaito.api.nodeclaim import LAUNCHED, READY, REGISTERED
from kaito.provisioner.conditions import became
from kaito.runtime.events import NORMAL, WARNING, EventSpec
from kaito.runtime.objects import Obj

LAUNCH_FAILED = "LaunchFailed"


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
