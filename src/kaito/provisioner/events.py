"""The Events a NodeClaim's condition transitions make: a launch that failed, or a node given up on, as a Warning.

A node's arrival (launched, registered, ready) is in the claim's conditions and, once it serves, in the
workspace's one Normal Event; an Event for each step would cost three API writes per node and tell nothing new.
"""

from __future__ import annotations

from kaito.api.nodeclaim import INITIALIZED, LAUNCHED, REGISTERED
from kaito.provisioner.conditions import became
from kaito.runtime.events import WARNING, EventSpec
from kaito.runtime.objects import Obj

LAUNCH_FAILED = "LaunchFailed"


def transition_events(old: Obj, new: Obj) -> list[EventSpec]:
    """One Warning event per failing condition transition between two NodeClaim statuses."""
    before, after = old.get("conditions") or [], new.get("conditions") or []
    found: list[EventSpec] = []
    if failed := became(before, after, LAUNCHED, "False"):
        found.append(
            EventSpec(WARNING, LAUNCH_FAILED, "Launch", f"{failed.get('reason')}: {failed.get('message', '')}")
        )
    for stage in (REGISTERED, INITIALIZED):  # only a liveness deadline turns these False: the claim is deleted
        if expired := became(before, after, stage, "False"):
            found.append(EventSpec(WARNING, str(expired.get("reason")), "Delete", str(expired.get("message", ""))))
    return found
