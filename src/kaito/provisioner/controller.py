"""The NodeClaim controller: each karpenter.sh/v1 NodeClaim becomes one cloud GPU node, seen to join, then torn down.

A live claim runs a short pipeline, each step either handing on or ending the pass with a Result:
finalizer and instance-type label -> launch (create) -> await the instance (poll `get`) -> register
(find the Node labelled `kaito.sh/nodeclaim=<claim>`) -> initialize (Ready, GPUs advertised). The
status is then written with one merge patch, only when it changed, and each condition transition
becomes one Event. Two writes are spared: a launch whose instance is already up waits (one poll
interval at most) for its Node, so launch and registration are one write; and no pass writes over
a version of the claim older than its own last patch (the write would only conflict). A launched
claim whose Node does not register in time, or does not turn Ready in time after registering, says
why and is deleted, so the workspace controller makes a new one (see `liveness`). A deleting claim
waits for its instance to be gone, deletes its Node and lets go.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pydantic

from kaito.api.nodeclaim import (
    AWAITING_INITIALIZATION,
    AWAITING_REGISTRATION,
    FINALIZER,
    INITIALIZED,
    INSTANCE_FAILED,
    LABEL_INSTANCE_TYPE,
    LABEL_NODECLAIM,
    LAUNCHED,
    NO_INSTANCE_TYPE,
    NODECLAIM,
    REGISTERED,
    NodeClaim,
    unready_reason,
)
from kaito.presets.catalog import Catalog
from kaito.provisioner import cloud
from kaito.provisioner.cloud import CloudError, CloudProvider, Instance, InstanceState
from kaito.provisioner.conditions import Conditions
from kaito.provisioner.events import transition_events
from kaito.provisioner.launches import Launches, retry_delay, retry_result
from kaito.provisioner.liveness import Deadline, Liveness
from kaito.provisioner.nodeclaims import (
    add_indexes,
    claim_nodes,
    claim_of_node,
    gpu_resource,
    instance_request,
    instance_type_of,
)
from kaito.provisioner.orphans import OrphanCollector
from kaito.provisioner.termination import Terminator
from kaito.runtime import errors
from kaito.runtime.builder import Builder
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.clock import Clock, api_time
from kaito.runtime.controller import Controller
from kaito.runtime.events import EventRecorder
from kaito.runtime.handler import enqueue_mapped
from kaito.runtime.kinds import NODE
from kaito.runtime.manager import Manager
from kaito.runtime.objects import Obj, ObjectKey, generation, is_deleting, labels_of, resource_version
from kaito.runtime.reconcile import DONE, Result, TerminalError

__all__ = ["CONTROLLER_NAME", "NodeClaimReconciler", "setup"]

log = logging.getLogger(__name__)

CONTROLLER_NAME = "nodeclaim"
EVENT_CONTROLLER = "kaito.sh/provisioner"
# A launched instance's first status write waits up to this many polls for its Node to register and show its
# GPUs, so that launch, registration and initialization land as one write; past that, the claim tells where
# it is (launched and waiting for its Node, or registered and waiting for the GPUs).
REGISTRATION_HOLD_POLLS = 3


def setup(
    manager: Manager,
    provider: CloudProvider,
    *,
    poll_interval: float = 5.0,
    retry_interval: float = 30.0,
    orphan_interval: float = 300.0,
    max_concurrent_reconciles: int = 10,
    catalog: Catalog | None = None,
    liveness: Liveness | None = None,
) -> Controller:
    """Wire the NodeClaim controller and the orphan collector onto `manager`.

    `poll_interval`: how often a creating instance (or one being deleted) is checked. `retry_interval`:
    how long a launch that failed for capacity, quota or SKU reasons waits before trying again, so a
    cleared fault recovers by itself. `catalog` tells which instance types must advertise GPUs. `liveness`: how
    long a launched claim may wait for its Node to register, then to turn Ready, before it is deleted and replaced.
    """
    recorder = EventRecorder(
        manager.client, controller=EVENT_CONTROLLER, instance=manager.options.identity, clock=manager.clock
    )
    add_indexes(manager.cache)
    reconciler = NodeClaimReconciler(
        manager.client,
        cache=manager.cache,
        provider=provider,
        clock=manager.clock,
        recorder=recorder,
        poll_interval=poll_interval,
        retry_interval=retry_interval,
        catalog=catalog,
        liveness=liveness,
    )
    controller = (
        Builder(manager, CONTROLLER_NAME)
        .for_(NODECLAIM)
        .watches(NODE, enqueue_mapped(claim_of_node))
        .with_options(max_concurrent_reconciles=max_concurrent_reconciles)
        .complete(reconciler.reconcile)
    )
    orphans = OrphanCollector(manager.cache, provider, interval=orphan_interval, clock=manager.clock)
    manager.add(orphans.run, name=f"{CONTROLLER_NAME}-orphans", leader_elected=True)
    return controller


@dataclass
class Pass:
    """One reconcile of one live claim: the object as read, and the status being rebuilt."""

    claim: Obj
    spec: NodeClaim
    instance_type: str | None
    node: Obj | None
    status: dict[str, Any]
    conditions: Conditions
    instance_up: bool = False  # the cloud reports the instance running
    hold: bool = False  # the status write waits for the Node that is about to register

    @property
    def name(self) -> str:
        return str(self.claim["metadata"]["name"])

    @property
    def uid(self) -> str:
        return str(self.claim["metadata"].get("uid") or "")


Step = Callable[[Pass], Awaitable[Result | None]]


class NodeClaimReconciler:
    """Level-based: every pass reads the claim and its Node from the cache and the instance from the cloud."""

    def __init__(
        self,
        client: Client,
        *,
        cache: Cache,
        provider: CloudProvider,
        clock: Clock,
        recorder: EventRecorder,
        poll_interval: float,
        retry_interval: float,
        catalog: Catalog | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        self.cache = cache
        self.client = client
        self.clock = clock
        self.provider = provider
        self.poll_interval = poll_interval
        self.retry_interval = retry_interval
        self.catalog = catalog or Catalog.builtin()
        self.liveness = liveness or Liveness()
        self.launches = Launches()
        # Per claim: the resourceVersion our last status patch was made over, until the cache shows a newer one.
        self._patched_over: dict[str, str] = {}
        self.terminator = Terminator(
            client, cache=cache, provider=provider, poll_interval=poll_interval, retry_interval=retry_interval
        )
        self.events = recorder

    async def reconcile(self, key: ObjectKey) -> Result:
        claim = self.cache.find(NODECLAIM, key.name)
        if claim is None or is_deleting(claim):
            self.launches.forget(key.name)
            self._patched_over.pop(key.name, None)
            return DONE if claim is None else await self.terminator.terminate(claim)
        work = await self._begin(claim)
        steps: tuple[Step, ...] = (self._launch, self._await_instance, self._register, self._initialize)
        result = DONE
        for step in steps:
            if (outcome := await step(work)) is not None:
                result = outcome
                break
        deadline = self.liveness.deadline(work.conditions)
        if deadline is not None and self.clock.wall() >= deadline.at:
            return await self._give_up(work, deadline)
        await self._write_status(work)
        return result if deadline is None else self._by_deadline(result, deadline)

    # ----- the pipeline

    async def _begin(self, claim: Obj) -> Pass:
        try:
            spec = NodeClaim.parse(claim)
        except pydantic.ValidationError as exc:
            raise TerminalError(f"nodeclaim {claim['metadata']['name']} does not parse: {exc}") from exc
        node = self._node_of(str(claim["metadata"]["name"]))
        instance_type = instance_type_of(spec) or labels_of(claim).get(LABEL_INSTANCE_TYPE)
        if instance_type is None and node is not None:
            instance_type = labels_of(node).get(LABEL_INSTANCE_TYPE)
        claim = await self._ensure_metadata(claim, instance_type)
        status = dict(claim.get("status") or {})
        conditions = Conditions(status.get("conditions"), generation=generation(claim), now=api_time(self.clock.wall()))
        return Pass(claim, spec, instance_type, node, status, conditions)

    async def _ensure_metadata(self, claim: Obj, instance_type: str | None) -> Obj:
        """The finalizer comes before any instance exists, so deleting the claim can never leak one."""
        meta = claim["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        changes: Obj = {}
        if FINALIZER not in finalizers:
            changes["finalizers"] = [*finalizers, FINALIZER]
        if instance_type and LABEL_INSTANCE_TYPE not in labels_of(claim):
            changes["labels"] = {LABEL_INSTANCE_TYPE: instance_type}
        if not changes:
            return claim
        changes["resourceVersion"] = resource_version(claim)
        return await self.client.patch(NODECLAIM, meta["name"], {"metadata": changes})

    async def _launch(self, work: Pass) -> Result | None:
        if work.conditions.is_true(LAUNCHED):
            self.launches.seen(work.name)
            return None
        if self.launches.created(work.name, work.uid):
            work.conditions.set(LAUNCHED, "True", LAUNCHED)
            return None
        if (wait := self.launches.wait_left(work.name, work.uid, now=self.clock.now())) > 0:
            return Result(requeue_after=wait)
        if work.instance_type is None:
            message = f"no single {LABEL_INSTANCE_TYPE} In [...] requirement to launch"
            work.conditions.set(LAUNCHED, "False", NO_INSTANCE_TYPE, message)
            return DONE
        try:
            instance = await self.provider.create(instance_request(work.spec, instance_type=work.instance_type))
        except CloudError as exc:
            return self._launch_failed(
                work, exc.reason, exc.message, retry_delay(exc, retry_interval=self.retry_interval)
            )
        if instance.state is InstanceState.DELETING:
            return Result(requeue_after=self.poll_interval)  # the previous, failed instance is still going away
        self.launches.remember(work.name, work.uid, at=self.clock.now())
        work.conditions.set(LAUNCHED, "True", LAUNCHED)
        return None

    async def _await_instance(self, work: Pass) -> Result | None:
        if work.status.get("providerID") or work.node is not None:
            return None  # known to have succeeded: no cloud call in the steady state
        try:
            instance = await self.provider.get(work.name)
        except cloud.NotFound as exc:
            return self._launch_failed(work, exc.reason, exc.message, self.retry_interval)
        except CloudError as exc:
            return self._cloud_retry(exc)
        if instance.state is InstanceState.FAILED:
            return await self._instance_failed(work, instance)
        if instance.state is not InstanceState.SUCCEEDED:
            return Result(requeue_after=self.poll_interval)
        work.instance_up = True
        if instance.provider_id:
            work.status["providerID"] = instance.provider_id
        return None

    async def _register(self, work: Pass) -> Result | None:
        node = work.node
        if node is None:
            if not work.conditions.is_true(REGISTERED):
                message = f"waiting for a node labelled {LABEL_NODECLAIM}={work.name}"
                work.conditions.set(REGISTERED, "Unknown", AWAITING_REGISTRATION, message)
            if work.instance_up and self._joining(work):
                work.hold = True  # its kubelet is joining: launch and registration become one write
                return Result(requeue_after=self.poll_interval)  # written then, if the Node is slow
            return DONE  # the Node watch brings us back when it joins
        work.status["nodeName"] = node["metadata"]["name"]
        if provider_id := (node.get("spec") or {}).get("providerID"):
            work.status["providerID"] = provider_id
        work.conditions.set(REGISTERED, "True", REGISTERED)
        return None

    def _joining(self, work: Pass) -> bool:
        """An instance up within the last few polls, whose Node is most likely about to register and be ready."""
        launched = self.launches.created_since(work.name, work.uid)
        return launched is not None and self.clock.now() - launched < REGISTRATION_HOLD_POLLS * self.poll_interval

    async def _initialize(self, work: Pass) -> Result | None:
        node = work.node
        assert node is not None  # _register ends the pass without one
        gap = unready_reason(node, gpu=gpu_resource(self.catalog, work.instance_type))
        if gap is not None and not work.conditions.is_true(INITIALIZED):
            work.conditions.set(INITIALIZED, "Unknown", AWAITING_INITIALIZATION, gap)
            if self._joining(work):  # its Node exists, so its instance is up
                work.hold = True  # its GPUs are about to show: launch to Ready becomes one write
                return Result(requeue_after=self.poll_interval)
            return DONE  # node updates bring us back
        node_status = node.get("status") or {}
        for field in ("capacity", "allocatable"):
            if node_status.get(field):
                work.status[field] = dict(node_status[field])
        work.conditions.set(INITIALIZED, "True", INITIALIZED)
        return None

    async def _write_status(self, work: Pass) -> None:
        base = resource_version(work.claim)
        if self._patched_over.get(work.name) == base:
            return  # the cache still shows the claim our last patch changed; that patch's watch event brings us back
        self._patched_over.pop(work.name, None)
        if work.hold:
            return
        work.conditions.roll_up()
        old: Obj = work.claim.get("status") or {}
        new: Obj = {**work.status, "conditions": work.conditions.as_list()}
        patch = merge_patch(old, new)
        if not patch:
            return  # an idle cluster makes no writes
        body = {"metadata": {"resourceVersion": base}, "status": patch}
        updated = await self.client.patch_status(NODECLAIM, work.name, body)
        if resource_version(updated) != base:
            self._patched_over[work.name] = base
        for event in transition_events(old, new):
            await self.events.emit(NODECLAIM, updated, event)

    # ----- failures

    def _launch_failed(self, work: Pass, reason: str, message: str, delay: float | None) -> Result:
        work.conditions.set(LAUNCHED, "False", reason, message)
        self.launches.forget(work.name)
        if delay is None:
            return Result(requeue=True)
        # Our own status write triggers a reconcile at once; the retry time keeps it from retrying early.
        self.launches.back_off(work.name, work.uid, until=self.clock.now() + delay)
        return Result(requeue_after=delay)

    async def _instance_failed(self, work: Pass, instance: Instance) -> Result:
        """Report the cloud's failure, remove the failed instance, and launch afresh after the retry interval."""
        error = instance.error
        reason = error.reason if error is not None else INSTANCE_FAILED
        message = instance.message or (error.message if error is not None else "")
        try:
            await self.provider.delete(work.name)
        except cloud.NotFound:
            pass
        except CloudError as exc:
            log.warning("nodeclaim %s: deleting the failed instance: %s (retried on the next launch)", work.name, exc)
        return self._launch_failed(work, reason, message, self.retry_interval)

    def _by_deadline(self, result: Result, deadline: Deadline) -> Result:
        """`result`, brought forward to the deadline: no event may come when a Node never shows up."""
        if result.requeue:
            return result
        left = (deadline.at - self.clock.wall()).total_seconds()
        return Result(requeue_after=min(left, result.requeue_after or left))

    async def _give_up(self, work: Pass, deadline: Deadline) -> Result:
        """Past a liveness deadline: say why on the claim, then delete it; its deletion takes the instance down."""
        if self._patched_over.get(work.name) == resource_version(work.claim):
            return DONE  # the watch event of our last patch brings the claim back, read afresh
        work.conditions.set(deadline.condition, "False", deadline.reason, deadline.message)
        work.hold = False
        await self._write_status(work)
        log.info("nodeclaim %s: %s: %s", work.name, deadline.reason, deadline.message)
        await errors.ignore_not_found(self.client.delete(NODECLAIM, work.name, preconditions_uid=work.uid or None))
        return DONE

    def _cloud_retry(self, exc: CloudError) -> Result:
        log.info("nodeclaim controller: %s call failed, retrying: %s", self.provider.name, exc)
        return retry_result(exc, retry_interval=self.retry_interval)

    # ----- cached reads

    def _node_of(self, claim_name: str) -> Obj | None:
        nodes = claim_nodes(self.cache, claim_name)
        return nodes[0] if nodes else None


def merge_patch(old: Obj, new: Obj) -> Obj:
    """The JSON merge patch (RFC 7386) turning `old` into `new`; empty when they are equal."""
    patch: Obj = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            if nested := merge_patch(before, value):
                patch[key] = nested
        elif value != before:
            patch[key] = value
    return patch
