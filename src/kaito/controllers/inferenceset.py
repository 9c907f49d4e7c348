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

from kaito.api.inferenceset import ANNOTATION_DEMAND, INFERENCESET, LABEL_SET, LABEL_TEMPLATE_HASH, InferenceSet
from kaito.api.inferenceset import template_hash as hash_of
from kaito.controllers import apply
from kaito.controllers.context import Settings
from kaito.controllers.inferenceset_build import build_child, build_gateway, build_service
from kaito.controllers.inferenceset_identity import GatewayIdentity
from kaito.controllers.inferenceset_ledger import Ledger
from kaito.controllers.inferenceset_plan import Child, Steps, plan
from kaito.controllers.inferenceset_status import Scale, compute, direction
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
Decision = tuple[int, str, str]
"""(replicas, reason, message): a replica count a policy wants, why, in words for the Event."""


class InferenceSetReconciler:
    def __init__(
        self, client: Client, *, cache: Cache, clock: Clock, recorder: EventRecorder, settings: Settings
    ) -> None:
        self.client, self.cache, self.clock, self.recorder, self.settings = client, cache, clock, recorder, settings
        self.applier = apply.Applier(client, cache, clock=clock)
        self.ledger = Ledger(clock=clock)
        self.identity = GatewayIdentity(client)
        # A scale patch of ours the cache may not show yet: the set's version before it, and the count it set.
        self._scaled: dict[ObjectKey, tuple[str, int]] = {}
        self._told: dict[ObjectKey, Scale] = {}

    async def reconcile(self, key: ObjectKey) -> Result:
        raw = self.cache.find(INFERENCESET, key.name, namespace=key.namespace)
        if raw is None:
            self.ledger.forget(key)
            self._scaled.pop(key, None)
            self._told.pop(key, None)
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
        decision = await self.desired_replicas(iset, cached, self.clock.now())
        if decision is not None and decision[0] != replicas:
            replicas = await self._scale(key, raw, iset, decision)
        iset.spec.replicas = replicas
        children = self.ledger.children(key, cached)
        current = hash_of(iset.spec)
        steps = plan([_child(c, current) for c in children], replicas, node_limit=iset.spec.node_count_limit)
        await self._endpoint(iset, uid)
        await self._apply_steps(key, iset, uid, steps)
        scale = await self._note_scale(key, raw, iset, decision)
        await self._write_status(raw, iset, children, current, steps, scale)
        return Result(requeue_after=self.ledger.pending_for(key))

    async def desired_replicas(self, iset: InferenceSet, children: list[Obj], now: float) -> Decision | None:
        """The replica count the set should have now, when something other than `spec.replicas` decides it.

        Without `spec.autoscaling`, nothing does: the scale subresource alone drives the set. With it, a set at
        zero whose `minReplicas` is 0 comes back to one replica on demand: the gateway stamps `kaito.sh/demand`
        when it holds a request with no replica ready, and a demand newer than the set's last scale counts.
        """
        scaling = iset.spec.autoscaling
        if scaling is None or iset.spec.replicas != 0 or scaling.min_replicas != 0:
            return None
        demand = _time(iset.annotations.get(ANNOTATION_DEMAND))
        last = _time(iset.status.last_scale_time if iset.status else None)
        if demand is None or (last is not None and demand <= last):
            return None
        return 1, "ScaleFromZero", f"a request is waiting (held since {iset.annotations[ANNOTATION_DEMAND]})"

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
        self, raw: Obj, iset: InferenceSet, children: list[Obj], current: str, steps: Steps, scale: Scale | None
    ) -> None:
        seen = [_child(c, current) for c in children if c["metadata"].get("name") not in steps.delete]
        now = api_time(self.clock.wall())
        status = compute(iset, seen, steps, scale=scale, now=now, generation=generation(raw))
        if status == (raw.get("status") or {}):
            return
        patch = {"status": status}
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
