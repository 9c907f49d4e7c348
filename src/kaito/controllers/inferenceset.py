"""The InferenceSet reconcile pipeline: decide the replica count, make or remove child Workspaces, keep the
set's endpoint, report.

Each child is a Workspace the workspace controller plans, provisions and reports as any other; this
controller only decides how many there are and which template they carry. Deleting the set deletes its
children through their owner references (garbage collection), and their finalizers release the GPU nodes.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pydantic import ValidationError

from kaito.api.inferenceset import (
    INFERENCESET,
    LABEL_SET,
    LABEL_TEMPLATE_HASH,
    AutoscalingStatus,
    InferenceSet,
    parse_duration,
)
from kaito.api.inferenceset import template_hash as hash_of
from kaito.controllers import apply
from kaito.controllers.autoscale import Policy, ScaleMemory, decide
from kaito.controllers.context import Settings
from kaito.controllers.inferenceset_build import build_child, build_gateway, build_service
from kaito.controllers.inferenceset_identity import GatewayIdentity
from kaito.controllers.inferenceset_ledger import Ledger
from kaito.controllers.inferenceset_load import LoadSource, PodMetrics
from kaito.controllers.inferenceset_plan import Child, Steps, plan
from kaito.controllers.inferenceset_status import Scale, compute, direction, merge_patch
from kaito.controllers.kinds import WORKSPACE
from kaito.runtime import errors
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.clock import Clock, api_time
from kaito.runtime.events import NORMAL, EventRecorder, EventSpec
from kaito.runtime.kinds import DEPLOYMENT, SERVICE
from kaito.runtime.objects import ObjectKey, generation, is_deleting, labels_of, owner_references, resource_version
from kaito.runtime.reconcile import Result, TerminalError

log = logging.getLogger(__name__)
Obj = dict[str, Any]
AUTOSCALE_INTERVAL_S = 5.0  # how often an autoscaled set's load is read
DEFAULT_TARGET_IN_FLIGHT = 8  # per replica, until a child's plan names its max-num-seqs
Decision = tuple[int, str, str]
"""(replicas, reason, message): a replica count a policy wants, why, in words for the Event."""


class InferenceSetReconciler:
    def __init__(
        self,
        client: Client,
        *,
        cache: Cache,
        clock: Clock,
        recorder: EventRecorder,
        settings: Settings,
        load: LoadSource | None = None,
    ) -> None:
        self.client, self.cache, self.clock, self.recorder, self.settings = client, cache, clock, recorder, settings
        self.applier = apply.Applier(client, cache, clock=clock)
        self.ledger = Ledger(clock=clock)
        self.identity = GatewayIdentity(client)
        # A scale patch of ours the cache may not show yet: the set's version before it, and the count it set.
        self._scaled: dict[ObjectKey, tuple[str, int]] = {}
        self._told: dict[ObjectKey, Scale] = {}
        self.load: LoadSource = load or PodMetrics(client)
        self._memory: dict[ObjectKey, ScaleMemory] = {}
        self._targets: dict[ObjectKey, int] = {}

    async def reconcile(self, key: ObjectKey) -> Result:
        raw = self.cache.find(INFERENCESET, key.name, namespace=key.namespace)
        if raw is None:
            self.ledger.forget(key)
            self._scaled.pop(key, None)
            self._told.pop(key, None)
            self._memory.pop(key, None)
            self._targets.pop(key, None)
            return Result()
        if is_deleting(raw):
            return Result()  # the children go by garbage collection, each releasing its nodes
        try:
            iset = InferenceSet.parse(raw)
        except ValidationError as exc:  # the CRD's schema admits only what parses; another writer's API version?
            raise TerminalError(f"inferenceset {key}: {exc}") from exc
        uid = str(raw["metadata"]["uid"])
        cached = self._cached_children(raw)
        replicas = self._replicas(key, raw, iset)
        decision, learned = await self.desired_replicas(key, raw, iset, replicas, cached)
        if decision is not None and decision[0] != replicas:
            replicas = await self._scale(key, raw, iset, decision)
        iset.spec.replicas = replicas
        children = self.ledger.children(key, cached)
        current = hash_of(iset.spec)
        steps = plan([_child(c, current) for c in children], replicas, node_limit=iset.spec.node_count_limit)
        await self._endpoint(iset, uid)
        await self._apply_steps(key, iset, uid, steps)
        scale = await self._note_scale(key, raw, iset, decision)
        await self._write_status(raw, iset, children, current, steps, scale, learned)
        pending = self.ledger.pending_for(key)
        if iset.spec.autoscaling is not None:  # load changes with no event to say so: look again on a beat
            pending = min(pending, AUTOSCALE_INTERVAL_S) if pending is not None else AUTOSCALE_INTERVAL_S
        return Result(requeue_after=pending)

    async def desired_replicas(
        self, key: ObjectKey, raw: Obj, iset: InferenceSet, current: int, children: list[Obj]
    ) -> tuple[Decision | None, AutoscalingStatus | None]:
        """The replica count `spec.autoscaling` wants now (None: keep `current`; no autoscaling: the scale
        subresource alone drives the set), and what autoscaling has learned of the set, for its status.

        The load comes from the gateway pods and the ready children's engines (`inferenceset_load`); a set at zero
        comes back when the gateway holds a request (its `kaito.sh/demand` stamp, newer than the last scale). A set
        this manager has not seen yet starts from what its status recorded (`ScaleMemory.recall`).
        """
        scaling = iset.spec.autoscaling
        if scaling is None:
            return None, None
        status = raw.get("status") or {}
        memory = self._memory.get(key) or self._memory.setdefault(key, ScaleMemory.recall(status, clock=self.clock))
        ready = [child for child in children if _child(child, "").ready]
        policy = Policy(
            min_replicas=scaling.min_replicas,
            max_replicas=scaling.max_replicas,
            target_in_flight=scaling.target_in_flight_per_replica or self._target(key, ready, status),
            scale_down_delay_s=parse_duration(scaling.scale_down_delay),
            scale_to_zero_after_s=parse_duration(scaling.scale_to_zero_after) if scaling.scale_to_zero_after else None,
        )
        load = await self.load(iset, ready)
        state = memory.state(
            policy, load, status=status, annotations=iset.annotations, current=current, clock=self.clock
        )
        decision = decide(policy, state, load, now=self.clock.now())
        learned = memory.record(target_in_flight=policy.target_in_flight)
        if decision.replicas == current:
            return None, learned
        memory.scaled(decision, now=self.clock.now())
        return (decision.replicas, decision.reason, decision.message), learned

    def _target(self, key: ObjectKey, ready: list[Obj], status: Obj) -> int:
        """Requests in flight per replica to aim at: the children's planned max-num-seqs, kept for a set at zero
        (in the status too, for a manager that starts while the set is at zero)."""
        planned = [int(((c.get("status") or {}).get("plan") or {}).get("maxNumSeqs") or 0) for c in ready]
        if any(planned):
            self._targets[key] = max(planned)
        recorded = (status.get("autoscaling") or {}).get("targetInFlightPerReplica")
        if key not in self._targets and isinstance(recorded, int) and recorded > 0:
            self._targets[key] = recorded
        return self._targets.get(key, DEFAULT_TARGET_IN_FLIGHT)

    def _cached_children(self, raw: Obj) -> list[Obj]:
        meta = raw["metadata"]
        listed = self.cache.list(WORKSPACE, namespace=meta["namespace"], labels={LABEL_SET: meta["name"]})
        return [
            ws
            for ws in listed
            if not is_deleting(ws) and any(ref.get("uid") == meta["uid"] for ref in owner_references(ws))
        ]

    def _replicas(self, key: ObjectKey, raw: Obj, iset: InferenceSet) -> int:
        """`spec.replicas`, or the count our own scale patch set while the cache still shows the version before."""
        written = self._scaled.get(key)
        if written is not None and written[0] == resource_version(raw):
            return written[1]
        self._scaled.pop(key, None)
        return iset.spec.replicas

    async def _scale(self, key: ObjectKey, raw: Obj, iset: InferenceSet, decision: Decision) -> int:
        """Write a policy's count through the scale subresource, as an HPA does; returns the count in force."""
        body = {"spec": {"replicas": decision[0]}}
        try:
            await self.client.patch(INFERENCESET, iset.name, body, namespace=iset.namespace, subresource="scale")
        except errors.NotFound:
            return iset.spec.replicas
        self._scaled[key] = (resource_version(raw), decision[0])
        return decision[0]

    async def _endpoint(self, iset: InferenceSet, uid: str) -> None:
        await self.identity.ensure(iset.namespace)
        await self.applier.ensure(SERVICE, build_service(iset, uid))
        await self.applier.ensure(DEPLOYMENT, build_gateway(iset, uid, image=self.settings.image))

    async def _apply_steps(self, key: ObjectKey, iset: InferenceSet, uid: str, steps: Steps) -> None:
        for name in steps.delete:
            await errors.ignore_not_found(self.client.delete(WORKSPACE, name, namespace=iset.namespace))
            self.ledger.deleted(key, name)
        for _ in range(steps.create):
            created = await self.client.create(WORKSPACE, build_child(iset, uid))
            self.ledger.created(key, created)

    async def _note_scale(
        self, key: ObjectKey, raw: Obj, iset: InferenceSet, decision: Decision | None
    ) -> Scale | None:
        """The change of replica count this pass acts on, announced once as an Event on the set.

        The cache shows our status write (which records the count) a watch round trip later; a pass in between
        sees the change again, so the last change announced is remembered and told only once.
        """
        scale = self._scale_note(iset, decision)
        if scale is None:
            return None
        told = self._told.get(key)
        if told is not None and told.replicas == scale.replicas:
            return told
        self._told[key] = scale
        log.info("inferenceset %s/%s: %s (%s)", iset.namespace, iset.name, scale.message, scale.reason)
        await self.recorder.emit(INFERENCESET, raw, EventSpec(NORMAL, scale.reason, "Scale", scale.message))
        return scale

    def _scale_note(self, iset: InferenceSet, decision: Decision | None) -> Scale | None:
        """The change of replica count this pass acted on, if any: the policy's, or one made through the scale
        subresource (reason by direction)."""
        before = iset.status.desired_replicas if iset.status else None
        after = iset.spec.replicas
        if before == after:
            return None
        at = api_time(self.clock.wall())
        if decision is not None and decision[0] == after:
            return Scale(after, decision[1], decision[2], at)
        return Scale(after, direction(before, after), f"scaled from {before or 0} to {after} replicas", at)

    async def _write_status(
        self,
        raw: Obj,
        iset: InferenceSet,
        children: list[Obj],
        current: str,
        steps: Steps,
        scale: Scale | None,
        learned: AutoscalingStatus | None,
    ) -> None:
        seen = [_child(c, current) for c in children if c["metadata"].get("name") not in steps.delete]
        now = api_time(self.clock.wall())
        status = compute(iset, seen, steps, scale=scale, now=now, generation=generation(raw), autoscaling=learned)
        written = raw.get("status") or {}
        if status == written:
            return
        patch = {"status": merge_patch(written, status)}
        await errors.ignore_not_found(
            self.client.patch(INFERENCESET, iset.name, patch, namespace=iset.namespace, subresource="status")
        )


def _child(ws: Obj, current: str) -> Child:
    meta = ws.get("metadata") or {}
    conditions = (ws.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "WorkspaceSucceeded" and c.get("status") == "True" for c in conditions)
    nodes = ((ws.get("status") or {}).get("plan") or {}).get("nodes") or 1
    return Child(
        name=str(meta.get("name") or ""),
        current=labels_of(ws).get(LABEL_TEMPLATE_HASH) == current,
        ready=ready,
        created=str(meta.get("creationTimestamp") or ""),
        nodes=int(nodes),
    )


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
