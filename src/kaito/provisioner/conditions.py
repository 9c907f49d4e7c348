"""A NodeClaim's status conditions as one reconcile rewrites them, and their transitions."""

from __future__ import annotations

from typing import Literal

from kaito.api.nodeclaim import AWAITING_INITIALIZATION, AWAITING_LAUNCH, AWAITING_REGISTRATION, READY, STAGES
from kaito.runtime.objects import Obj

Status = Literal["True", "False", "Unknown"]


class Conditions:
    """A claim's conditions rewritten during one reconcile; `lastTransitionTime` moves only when a status does."""

    def __init__(self, current: list[Obj] | None, *, generation: int, now: str) -> None:
        self._by_type: dict[str, Obj] = {str(c.get("type")): dict(c) for c in current or []}
        self._generation = generation
        self._now = now
        for stage, reason in zip(
            STAGES, (AWAITING_LAUNCH, AWAITING_REGISTRATION, AWAITING_INITIALIZATION), strict=True
        ):
            if stage not in self._by_type:
                self.set(stage, "Unknown", reason)

    def get(self, type_: str) -> Obj | None:
        return self._by_type.get(type_)

    def is_true(self, type_: str) -> bool:
        condition = self._by_type.get(type_)
        return condition is not None and condition.get("status") == "True"

    def set(self, type_: str, status: Status, reason: str, message: str = "") -> None:
        old = self._by_type.get(type_)
        changed = old is None or old.get("status") != status
        self._by_type[type_] = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": self._now if changed or old is None else old.get("lastTransitionTime", self._now),
            "observedGeneration": self._generation,
        }

    def roll_up(self) -> None:
        """Ready follows the first stage that is False, else the first that is Unknown, else it is True."""
        stages = [self._by_type[stage] for stage in STAGES]
        blocker = next((c for c in stages if c["status"] == "False"), None)
        blocker = blocker or next((c for c in stages if c["status"] != "True"), None)
        if blocker is None:
            self.set(READY, "True", READY)
        else:
            self.set(READY, blocker["status"], blocker["reason"], blocker.get("message", ""))

    def as_list(self) -> list[Obj]:
        """The stages and Ready first, in karpenter's order, then any conditions others added."""
        order = [*STAGES, READY]
        known = [self._by_type[t] for t in order if t in self._by_type]
        return known + [c for t, c in self._by_type.items() if t not in order]


def became(old: list[Obj], new: list[Obj], type_: str, status: Status) -> Obj | None:
    """The new condition of `type_` when it turned `status` (or changed reason while `status`), else None."""
    before = next((c for c in old if c.get("type") == type_), None)
    after = next((c for c in new if c.get("type") == type_), None)
    if after is None or after.get("status") != status:
        return None
    if before is not None and before.get("status") == status and before.get("reason") == after.get("reason"):
        return None
    return after
