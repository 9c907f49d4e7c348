"""Writing a workspace's status: conditions with honest transition times, one patch only when something changed."""

from __future__ import annotations

from typing import Any

from kaito.api.nodeclaim import AWAITING_INITIALIZATION, AWAITING_REGISTRATION
from kaito.api.workspace import PlanStatus
from kaito.controllers import metrics
from kaito.controllers.kinds import WORKSPACE
from kaito.controllers.status import Cond, Observed, compute
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.clock import Clock, api_time
from kaito.runtime.events import NORMAL, WARNING, EventRecorder, EventSpec

Obj = dict[str, Any]
ACTION = "Reconcile"  # the Events' action: every transition is found by a reconcile
ANNOUNCED = frozenset({"ResourceReady", "InferenceReady", "JobStarted", "WorkspaceSucceeded"})
# Waiting is not news: these reasons mean "in progress", not "wrong".
QUIET_REASONS = frozenset(
    {
        "NodeClaimNotReady",
        "NodeNotReady",
        "WorkspaceInferenceStatusPending",
        "WorkspaceTuningJobStatusPending",
        "workspacePending",
        AWAITING_REGISTRATION,
        AWAITING_INITIALIZATION,
    }
)


class StatusWriter:
    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder) -> None:
        self.client = client
        self.clock = clock
        self.events = recorder

    async def write(self, ws: Obj, observed: Observed, *, tuning: bool, plan: PlanStatus | None = None) -> None:
        status: Obj = dict(ws.get("status") or {})
        conds, state = compute(observed, tuning=tuning, previous_state=status.get("state"))
        generation = ws["metadata"].get("generation")
        previous = {c["type"]: c for c in status.get("conditions") or []}
        conditions = [self._condition(c, previous.get(c.type), generation) for c in conds]
        desired = {
            **status,
            "conditions": conditions,
            "state": state,
            "targetNodeCount": observed.target_nodes or status.get("targetNodeCount"),
            "workerNodes": sorted(n["metadata"]["name"] for n in observed.nodes) or None,
        }
        if plan is not None:
            desired["plan"] = plan.to_wire()
        if observed.tuning_output:
            desired["tuning"] = observed.tuning_output
        desired = {k: v for k, v in desired.items() if v is not None}
        metrics.record(ws, state)
        if desired == status:
            return
        meta = ws["metadata"]
        try:
            await self.client.patch_status(WORKSPACE, meta["name"], {"status": desired}, namespace=meta["namespace"])
        except errors.NotFound:
            return
        await self._announce(ws, conds, previous)

    def _condition(self, cond: Cond, before: Obj | None, generation: int | None) -> Obj:
        status = "True" if cond.status else "False"
        changed = before is None or before.get("status") != status
        now = api_time(self.clock.wall())
        when = now if changed or before is None else str(before.get("lastTransitionTime") or now)
        out: Obj = {
            "type": cond.type,
            "status": status,
            "reason": cond.reason,
            "message": cond.message[:1024],
            "lastTransitionTime": when,
        }
        if generation is not None:
            out["observedGeneration"] = generation
        return out

    async def _announce(self, ws: Obj, conds: list[Cond], previous: dict[str, Obj]) -> None:
        """One Event per meaningful transition: a summary condition turning True, or any real failure."""
        for cond in conds:
            before = previous.get(cond.type)
            status = "True" if cond.status else "False"
            if before is not None and before.get("status") == status and before.get("reason") == cond.reason:
                continue
            message = f"{cond.type}: {cond.message}"
            if cond.status and cond.type in ANNOUNCED:
                await self.events.emit(WORKSPACE, ws, EventSpec(NORMAL, f"{cond.type}True", ACTION, message))
            elif not cond.status and cond.reason not in QUIET_REASONS:
                await self.events.emit(WORKSPACE, ws, EventSpec(WARNING, cond.reason, ACTION, message))
