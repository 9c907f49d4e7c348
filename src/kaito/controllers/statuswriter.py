"""Writing a workspace's status: conditions with honest transition times, one patch only when something changed.

The cache shows our own status patch a watch round trip later; a pass that runs in between would
write the same status (and announce the same transitions) again. So the writer remembers, per
workspace, the version it patched and what it wrote, and skips that exact repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kaito.api.nodeclaim import AWAITING_INITIALIZATION, AWAITING_REGISTRATION
from kaito.api.workspace import EngineStatus, PlanStatus
from kaito.controllers import metrics, timeline
from kaito.controllers.adapterstatus import loaded_of_wanted, newly_failed
from kaito.controllers.kinds import WORKSPACE
from kaito.controllers.metrics import PHASE_METRICS, PhaseMetrics
from kaito.controllers.status import Cond, Observed, compute, engine_refusal
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.clock import Clock, api_time
from kaito.runtime.events import NORMAL, WARNING, EventRecorder, EventSpec
from kaito.runtime.objects import ObjectKey, resource_version

Obj = dict[str, Any]
ACTION = "Reconcile"  # the Events' action: every transition is found by a reconcile
ADAPTER_FAILED = "AdapterFailed"  # a Warning per adapter (and digest) that turns Failed in the pods
# The one milestone a user waits for, announced as a Normal Event: the workspace done (ready to serve, or its
# tuning finished). Every step before it is in the conditions; an Event each would only add API writes.
ANNOUNCED = frozenset({"WorkspaceSucceeded"})
# Waiting is not news: these reasons mean "in progress", not "wrong". A server failing its readiness probe is one
# still loading its weights or warming up (or flapping under load); the condition says so, and a server that truly
# fails says it by exiting (ContainerStartError, CrashLoopBackOff, an engine refusal), each a Warning.
QUIET_REASONS = frozenset(
    {
        "ContainerNotReady",
        "NodeClaimNotReady",
        "NodeNotReady",
        "WorkspaceInferenceStatusPending",
        "WorkspaceTuningJobStatusPending",
        "workspacePending",
        "PullingModel",
        AWAITING_REGISTRATION,
        AWAITING_INITIALIZATION,
    }
)


@dataclass(frozen=True)
class _Written:
    """A status patch the cache may not show yet: the workspace version it was made over, and what it set."""

    base: str
    status: Obj


class StatusWriter:
    def __init__(
        self, client: Client, *, clock: Clock, recorder: EventRecorder, phase_metrics: PhaseMetrics = PHASE_METRICS
    ) -> None:
        self.client = client
        self.clock = clock
        self.events = recorder
        self.phase_metrics = phase_metrics
        self._written: dict[ObjectKey, _Written] = {}
        # Per workspace (by uid): the phases this process observed in the histograms, so that a patch made over a
        # status the cache has not refreshed yet does not observe them twice.
        self._timed: dict[ObjectKey, tuple[str, set[str]]] = {}

    def forget(self, key: ObjectKey) -> None:
        self._written.pop(key, None)
        self._timed.pop(key, None)

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
        if observed.instance_attempts is not None:
            desired["instanceAttempts"] = observed.instance_attempts
        if observed.tuning_output:
            desired["tuning"] = observed.tuning_output
        if plan is not None and (engine := engine_status(observed, plan)) is not None:
            desired["engine"] = engine
        if observed.adapters is not None:
            desired["adapters"] = [a.to_wire() for a in observed.adapters] or None
            desired["adaptersLoaded"] = loaded_of_wanted(observed.adapters) if observed.adapters else None
        desired = {k: v for k, v in desired.items() if v is not None}
        metrics.record(ws, state)
        meta = ws["metadata"]
        key = ObjectKey(meta["namespace"], meta["name"])
        written = self._written.pop(key, None)
        if desired == status:
            return
        base = resource_version(ws)
        if written is not None and written.base == base and written.status == desired:
            self._written[key] = written  # the cache has not caught up with this very patch yet
            return
        # The phases ride on a patch something else called for: phase times come from the objects, so the ones that
        # arrived since the last patch are as true now as they would have been then, and cost no write of their own.
        compared = desired
        if plan is not None:
            derived = timeline.derive(ws, observed, ready=state == "Ready", now=self.clock.wall())
            desired = {**desired, "phases": timeline.merge(status.get("phases"), derived)}
        try:
            updated = await self.client.patch_status(
                WORKSPACE, meta["name"], {"status": desired}, namespace=meta["namespace"]
            )
        except errors.NotFound:
            return
        if resource_version(updated) != base:
            self._written[key] = _Written(base, compared)
        self._observe_phases(ws, key, status.get("phases"), desired.get("phases"), plan)
        await self._announce(ws, conds, previous)
        for adapter in newly_failed(status.get("adapters"), desired.get("adapters")):
            pulled = f"{adapter.get('image')}@{adapter['digest']}" if adapter.get("digest") else adapter.get("image")
            words = f"adapter {adapter['name']} ({pulled}): {adapter.get('message') or 'failed'}"
            await self.events.emit(WORKSPACE, ws, EventSpec(WARNING, ADAPTER_FAILED, ACTION, words))

    def _observe_phases(
        self, ws: Obj, key: ObjectKey, before: list[Obj] | None, after: list[Obj] | None, plan: PlanStatus | None
    ) -> None:
        """Each phase's histogram, once per workspace, when its end is first written to status.

        A manager that restarts reads the ended phases back from status and observes none of them again: a count
        lost to a crash between a patch and this is preferred to one counted twice.
        """
        uid = str(ws["metadata"].get("uid") or "")
        timed_uid, timed = self._timed.get(key) or (uid, set())
        if timed_uid != uid:
            timed = set()
        ended = [(name, s) for name, s in timeline.newly_ended(before, after or []) if name not in timed]
        self._timed[key] = (uid, timed | {name for name, _ in ended})
        if not ended:
            return
        ready = timeline.apply_to_ready(after or []) if any(name == "firstReady" for name, _ in ended) else None
        sku = (plan.instance_type if plan is not None else None) or "unknown"
        self.phase_metrics.observe(ended, model=metrics.model_label(ws), sku=sku, ready_after=ready)

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
        """One Event per meaningful transition: the milestone turning True, or a real failure, told once.

        A failure shows in several conditions at once (ResourceReady repeats its blocker's message,
        WorkspaceSucceeded a failed job's); it is one Warning, with the first condition's reason.
        """
        failures: set[str] = set()
        for cond in conds:
            before = previous.get(cond.type)
            status = "True" if cond.status else "False"
            if before is not None and before.get("status") == status and before.get("reason") == cond.reason:
                continue
            message = f"{cond.type}: {cond.message}"
            if cond.status and cond.type in ANNOUNCED:
                await self.events.emit(WORKSPACE, ws, EventSpec(NORMAL, f"{cond.type}True", ACTION, message))
            elif not cond.status and cond.reason not in QUIET_REASONS and cond.message not in failures:
                failures.add(cond.message)
                await self.events.emit(WORKSPACE, ws, EventSpec(WARNING, cond.reason, ACTION, message))


def engine_status(observed: Observed, plan: PlanStatus) -> Obj | None:
    """The plan's KV cache and context length beside the engine's refusal of them, once a server has refused."""
    found = engine_refusal(observed.pods)
    if found is None:
        return None
    refusal = found[1]
    return EngineStatus(
        predicted_kv_cache_tokens=plan.kv_cache_tokens,
        predicted_max_model_len=plan.max_model_len,
        observed_kv_cache_tokens=refusal.kv_cache_tokens,
        observed_max_model_len=refusal.max_model_len,
        fits_max_model_len=refusal.fits_max_model_len,
        refusal=refusal.reason,
        message=refusal.message[:1024],
    ).to_wire()
