"""The workspace reconciler's side of instance-type fallback: read the claims, decide, re-plan on the next type.

The decision itself is `kaito.controllers.fallback.decide`; this module feeds it from the cache and the
workspace's status, plans for the type it moves to, and hands back what the status must show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kaito.api.nodeclaim import LABEL_INSTANCE_TYPE, NODECLAIM
from kaito.api.workspace import InstanceAttempt, PlanStatus, Workspace
from kaito.controllers import fallback
from kaito.controllers.context import Settings
from kaito.controllers.kinds import WORKSPACE, workspace_labels
from kaito.controllers.status import Observed
from kaito.presets.catalog import Catalog
from kaito.presets.choice import AUTO
from kaito.runtime.cache import Cache
from kaito.runtime.clock import Clock
from kaito.runtime.events import WARNING, EventRecorder, EventSpec
from kaito.runtime.objects import ObjectKey, is_deleting, labels_of
from kaito.workspaces.modelsource import ModelImages
from kaito.workspaces.plan import Invalid, Planned, Sizing, instance_candidates, plan_workspace
from kaito.workspaces.rules import ConfigLookup

Obj = dict[str, Any]
MOVED = "InstanceTypeRefused"  # the Event's reason when a workspace moves on to its next instance type


@dataclass(frozen=True)
class Chosen:
    """The plan to run on this pass, and the fallback decision behind it."""

    plan: PlanStatus
    decision: fallback.Decision
    attempts: list[InstanceAttempt]
    candidates: list[str]
    moved: bool = False  # this pass moved the workspace, or re-plans a move the cache does not show yet

    def recorded(self) -> list[InstanceAttempt]:
        return fallback.with_attempt(self.attempts, self.decision.record)

    def report(self, observed: Observed) -> None:
        """Put the refusal to record, and the every-type-refused message, where the status writer reads them."""
        if self.decision.record is not None or self.moved:
            observed.instance_attempts = [a.to_wire() for a in self.recorded()]
        if self.decision.exhausted:
            recent = self.recorded()[-len(self.candidates) :]
            observed.exhausted = (
                f"every instance type was refused: {fallback.describe(recent)}; the cloud's words are in "
                f"status.instanceAttempts; trying {self.candidates[0]} again"
            )


class InstanceFallback:
    def __init__(
        self,
        cache: Cache,
        *,
        clock: Clock,
        recorder: EventRecorder,
        cloud: str,
        settings: Settings,
        sizing: Sizing | None = None,
    ) -> None:
        self.cache = cache
        self.clock = clock
        self.events = recorder
        self.cloud = cloud
        self.sizing = sizing
        self.policy = fallback.Policy(
            retry_interval=settings.retry_interval, capacity_retries=settings.capacity_retries
        )
        self.enabled = not settings.bring_your_own_nodes
        # Per workspace: the type it moved to and the refusals recorded, until the cache shows the status patch
        # that records the move (a pass reading the older status would plan on the refused type again, moving the
        # workspace back, and write the older list of refusals over the newer).
        self._moved: dict[ObjectKey, tuple[str, list[InstanceAttempt]]] = {}

    def forget(self, key: ObjectKey) -> None:
        self._moved.pop(key, None)

    async def choose(
        self, raw: Obj, planned: Planned, *, catalog: Catalog, config_lookup: ConfigLookup, model_images: ModelImages
    ) -> Chosen:
        ws, plan = planned.workspace, planned.plan
        attempts = list(ws.status.instance_attempts or []) if ws.status else []
        current = plan.instance_type
        key = ObjectKey(ws.namespace, ws.name)
        if (remembered := self._moved.get(key)) is not None:
            moved_to, written = remembered
            if moved_to == current:
                del self._moved[key]  # the cache shows the move now
            else:
                images = (config_lookup, model_images)
                replanned = self._plan_on(ws, moved_to, [moved_to], catalog=catalog, images=images)
                return Chosen(replanned or plan, fallback.STAY, written, [], moved=True)
        if not self.enabled or not current or not _may_fall_back(ws):
            return Chosen(plan, fallback.STAY, attempts, [])
        labels = workspace_labels(ws.name, ws.namespace)
        claims = [
            c
            for c in self.cache.list(NODECLAIM, labels=labels)
            if not is_deleting(c) and labels_of(c).get(LABEL_INSTANCE_TYPE) == current
        ]
        if fallback.refusal(claims) is None:
            return Chosen(plan, fallback.STAY, attempts, [])  # the common case: no candidate list is computed
        candidates = instance_candidates(
            ws, model=planned.model, catalog=catalog, cloud=self.cloud, config_lookup=config_lookup
        )
        decision = fallback.decide(
            candidates, current=current, claims=claims, attempts=attempts, now=self.clock.wall(), policy=self.policy
        )
        if decision.move_to is None or decision.move_to == current:
            return Chosen(plan, decision, attempts, candidates)
        moved = self._plan_on(ws, decision.move_to, candidates, catalog=catalog, images=(config_lookup, model_images))
        if moved is None:
            return Chosen(plan, decision, attempts, candidates)
        chosen = Chosen(moved, decision, attempts, candidates, moved=True)
        self._moved[key] = (str(moved.instance_type), chosen.recorded())
        said = decision.record.message if decision.record else ""
        message = f"{current} refused ({said}); moving to {moved.instance_type}"
        await self.events.emit(WORKSPACE, raw, EventSpec(WARNING, MOVED, "Reconcile", message[:1024]))
        return chosen

    def _plan_on(
        self,
        ws: Workspace,
        first: str,
        candidates: list[str],
        *,
        catalog: Catalog,
        images: tuple[ConfigLookup, ModelImages],
    ) -> PlanStatus | None:
        """The plan on `first`, or on the next candidate after it that the model fits; None when none does."""
        start = candidates.index(first)
        for name in candidates[start:] + candidates[:start]:
            try:
                plan, _ = plan_workspace(
                    ws,
                    catalog=catalog,
                    cloud=self.cloud,
                    config_lookup=images[0],
                    sizing=self.sizing,
                    model_images=images[1],
                    instance_type=name,
                )
            except Invalid:
                continue
            return plan
        return None


def _may_fall_back(ws: Workspace) -> bool:
    """Several instance types to choose from: a list, or `auto` (a preset without an instance type is `auto` too)."""
    if ws.resource.instance_types:
        return len(ws.resource.instance_types) > 1
    named = ws.resource.instance_type
    return named is None or named.lower() == AUTO
