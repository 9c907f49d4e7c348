"""The workspace reconcile pipeline: validate, plan (once), provision nodes, run the workload, report the truth.

Level-based: every pass reads the Workspace and its children from the shared cache and converges one
step; writes happen only when the desired object differs from what the cache holds, so an idle cluster
sees no writes from here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from kaito.api.fielderrors import FieldError
from kaito.api.nodeclaim import LABEL_INSTANCE_TYPE, NODECLAIM, node_ready
from kaito.api.workspace import FINALIZER
from kaito.controllers import apply, metrics
from kaito.controllers.adapterread import AdapterReader
from kaito.controllers.adapters import resolve
from kaito.controllers.adapterstatus import aggregate, retrying, still_settling
from kaito.controllers.build_job import build_job, build_tuning_configmap
from kaito.controllers.build_nodeclaims import build_nodeclaims
from kaito.controllers.build_workload import build_engine_configmap, build_services, build_workload
from kaito.controllers.context import Settings, Target
from kaito.controllers.instancechoice import InstanceFallback
from kaito.controllers.kinds import WORKSPACE, workspace_labels
from kaito.controllers.pullprogress import last_progress_line
from kaito.controllers.replan import Verdict, judge
from kaito.controllers.revisions import sync_revision
from kaito.controllers.status import Observed, engine_refusal, gpu_resource, puller_status, tuning_output
from kaito.controllers.statuswriter import StatusWriter
from kaito.presets.catalog import Catalog
from kaito.presets.overrides import OverrideError
from kaito.runtime import errors
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.clock import Clock
from kaito.runtime.events import EventRecorder
from kaito.runtime.kinds import CONFIG_MAP, DEPLOYMENT, JOB, NODE, POD, SERVICE, STATEFUL_SET, Kind
from kaito.runtime.objects import ObjectKey, is_deleting, labels_of
from kaito.runtime.reconcile import Result
from kaito.workspaces.hubmodels import HubModels
from kaito.workspaces.imageconfigs import ImageConfigs, model_images_for
from kaito.workspaces.plan import Invalid, Sizing, validate_and_plan
from kaito.workspaces.pullsecrets import api_secret_reader, api_token_reader
from kaito.workspaces.rules import overrides_from

log = logging.getLogger(__name__)
Obj = dict[str, Any]
DELETE_POLL_S = 2.0
# While a pod pulls its model image, the puller's last progress line is read (one GET of its log per pulling pod)
# this often, and the status says how far it has come; a model image whose config could not be read is tried again.
PULL_POLL_S = 10.0
IMAGE_RETRY_S = 30.0
# While a running pod has yet to load an adapter (or to say it failed), its adapters are read again this often;
# once every adapter is Loaded or Failed, pod and ConfigMap changes alone bring the workspace back.
ADAPTER_POLL_S = 3.0
# A ready pod whose adapters cannot be read (a server without /v1/adapters), or that will pull a failed adapter
# again, is asked less often.
ADAPTER_RETRY_S = 30.0


class WorkspaceReconciler:
    def __init__(
        self,
        client: Client,
        *,
        cache: Cache,
        clock: Clock,
        recorder: EventRecorder,
        catalog: Callable[[], Catalog],
        cloud: str,
        settings: Settings,
        sizing: Sizing | None = None,
        image_configs: ImageConfigs | None = None,
        hub_models: HubModels | None = None,
        adapter_reader: AdapterReader | None = None,
    ) -> None:
        self.cache = cache
        self.adapter_reader = adapter_reader or AdapterReader(client)
        self.image_configs = image_configs
        self.hub_models = hub_models
        self.client = client
        self.catalog = catalog
        self.cloud = cloud
        self.settings = settings
        self.status = StatusWriter(client, clock=clock, recorder=recorder)
        self.applier = apply.Applier(client, cache, clock=clock)
        self.sizing = sizing
        self.fallback = InstanceFallback(
            cache, clock=clock, recorder=recorder, cloud=cloud, settings=settings, sizing=sizing
        )

    async def reconcile(self, key: ObjectKey) -> Result:
        raw = self.cache.find(WORKSPACE, key.name, namespace=key.namespace)
        if raw is None:
            metrics.forget(key.namespace, key.name)
            self.status.forget(key)
            self.fallback.forget(key)
            return Result()
        if is_deleting(raw):
            return await self._finalize(raw)
        if FINALIZER not in (raw["metadata"].get("finalizers") or []):
            raw = await apply.add_finalizer(self.client, raw, FINALIZER)
        catalog = self.catalog()
        images = await model_images_for(
            raw,
            catalog=catalog,
            configs=self.image_configs,
            registry=self.settings.model_registry,
            read_secret=api_secret_reader(self.client),
            hub=self.hub_models,
            read_token=api_token_reader(self.client),
        )
        try:
            planned = validate_and_plan(
                raw,
                catalog=catalog,
                cloud=self.cloud,
                config_lookup=self._config_data,
                sizing=self.sizing,
                model_images=images,
            )
        except Invalid as exc:
            tuning = raw.get("tuning") is not None
            # A hub model that could not be read is retried with backoff (the hub may come back, the Secret appear).
            hub_unread = any(isinstance(read, FieldError) for read in images.hub.values())
            reason = "ModelNotRead" if hub_unread else "InvalidWorkspace"
            await self.status.write(
                raw, Observed(target_nodes=0, invalid=str(exc), invalid_reason=reason), tuning=tuning
            )
            if hub_unread:
                return Result(requeue=True)
            unread = any(isinstance(config, str) for config in images.configs.values())
            return Result(requeue_after=IMAGE_RETRY_S) if unread else Result()
        ws = planned.workspace
        fallback = await self.fallback.choose(
            raw, planned, catalog=catalog, config_lookup=self._config_data, model_images=images
        )
        plan = fallback.plan
        adapters = tuple(resolve(ws, lookup=self._workspace))
        target = Target(
            ws=ws, uid=raw["metadata"]["uid"], plan=plan, model=planned.model, settings=self.settings, resolved=adapters
        )
        revision = await sync_revision(self.client, self.cache, raw)
        observed = await self._provision(target)
        fallback.report(observed)
        recheck = await self._run_workload(target, observed, revision)
        if fallback.decision.recheck is not None:
            recheck.append(fallback.decision.recheck)
        self._observe_workload(target, observed)
        if (replanned := self._judge_engine(target, observed)) is not None:
            plan, target = replanned.plan, dataclasses.replace(target, plan=replanned.plan)
            recheck += await self._run_workload(target, observed, revision)
        if await self._read_pull_progress(target, observed):
            recheck.append(PULL_POLL_S)
        if (again := await self._read_adapters(target, observed)) is not None:
            recheck.append(again)
        await self.status.write(raw, observed, tuning=ws.tuning is not None, plan=plan)
        return Result(requeue_after=min(recheck)) if recheck else Result()

    def _judge_engine(self, target: Target, observed: Observed) -> Verdict | None:
        """The server's refusal at start judged against the plan (see `replan`); returns the verdict that re-plans."""
        found = engine_refusal(observed.pods) if target.ws.inference is not None else None
        if found is None:
            return None
        name = target.ws.inference.config if target.ws.inference else None
        try:
            pinned = overrides_from(self._config_data(target.namespace, name) if name else None, name or "")
        except OverrideError:
            return None  # the plan made from it failed too: the Workspace says so already
        verdict = judge(target.plan, found[1], pinned_max_model_len=pinned.max_model_len)
        observed.engine_note = verdict.note
        if verdict.plan is target.plan:
            return None
        log.warning("workspace %s/%s: %s", target.namespace, target.name, verdict.note[1] if verdict.note else "")
        return verdict

    def _workspace(self, namespace: str, name: str) -> Obj | None:
        return self.cache.find(WORKSPACE, name, namespace=namespace)

    async def _read_adapters(self, target: Target, observed: Observed) -> float | None:
        """Each adapter's state in the ready pods, into `observed`; when to read them again, if before an event."""
        if target.ws.inference is None:
            return None
        if not target.adapters:
            observed.adapters = []
            return None
        reports = await self.adapter_reader.read(observed.pods)
        observed.adapters = aggregate(target.adapters, reports)
        readable = {pod: report for pod, report in reports.items() if not isinstance(report, str)}
        if readable and still_settling(aggregate(target.adapters, readable), target.adapters):
            return ADAPTER_POLL_S
        return ADAPTER_RETRY_S if len(readable) < len(reports) or retrying(readable) else None

    def _config_data(self, namespace: str, name: str) -> dict[str, str] | None:
        configmap = self.cache.find(CONFIG_MAP, name, namespace=namespace)
        return None if configmap is None else dict(configmap.get("data") or {})

    async def _provision(self, target: Target) -> Observed:
        observed = Observed(
            target_nodes=target.nodes,
            provisioning=not self.settings.bring_your_own_nodes,
            gpu=gpu_resource(self.catalog(), target.plan.instance_type),
        )
        if self.settings.bring_your_own_nodes:
            observed.nodes = self._matching_nodes(target, gpu=observed.gpu)
            return observed
        labels = workspace_labels(target.name, target.namespace)
        existing = {c["metadata"]["name"]: c for c in self.cache.list(NODECLAIM, labels=labels)}
        replaced = await self._delete_other_types(existing, target.plan.instance_type)
        for name in replaced:
            del existing[name]  # its replacement, of the plan's type, is made once it is gone
        for claim in build_nodeclaims(target):
            if claim["metadata"]["name"] not in existing and claim["metadata"]["name"] not in replaced:
                created = await errors.ignore_already_exists(self.client.create(NODECLAIM, claim))
                existing[claim["metadata"]["name"]] = created or claim
        observed.nodeclaims = list(existing.values())
        names = {str((c.get("status") or {}).get("nodeName") or "") for c in observed.nodeclaims} - {""}
        observed.nodes = [n for n in (self.cache.find(NODE, name) for name in sorted(names)) if n is not None]
        return observed

    async def _delete_other_types(self, existing: dict[str, Obj], instance_type: str | None) -> set[str]:
        """Claims of another type than the plan's (one the cloud refused) are deleted, so that one workspace never
        runs on two types' nodes; returns their names."""
        stale = {
            name
            for name, claim in existing.items()
            if instance_type and labels_of(claim).get(LABEL_INSTANCE_TYPE) not in (None, "", instance_type)
        }
        for name in sorted(stale):
            if not is_deleting(existing[name]):
                await errors.ignore_not_found(self.client.delete(NODECLAIM, name))
        return stale

    def _matching_nodes(self, target: Target, *, gpu: str | None) -> list[Obj]:
        wanted = target.ws.resource.label_selector.match_labels or {}
        return [n for n in self.cache.list(NODE, labels=wanted) if node_ready(n, gpu=gpu)]

    async def _run_workload(self, target: Target, observed: Observed, revision: str) -> list[float]:
        """Apply the children; returns when to look again at writes still on their way to the cache."""
        ready_nodes = [n for n in observed.nodes if node_ready(n, gpu=observed.gpu)]
        children: list[tuple[Kind, Obj, bool]] = []
        if target.ws.tuning is not None:
            children.append((CONFIG_MAP, build_tuning_configmap(target), False))
            if len(ready_nodes) >= target.nodes:
                children.append((JOB, build_job(target, revision=revision), True))
        else:
            children.append((CONFIG_MAP, build_engine_configmap(target), False))
            children += [(SERVICE, service, False) for service in build_services(target)]
            if len(ready_nodes) >= target.nodes:
                workload = build_workload(target, revision=revision)
                children.append((apply.kind_of(workload), workload, False))
        recheck = []
        for kind, child, create_only in children:
            if (after := await self.applier.ensure(kind, child, create_only=create_only)) is not None:
                recheck.append(after)
        return recheck

    def _observe_workload(self, target: Target, observed: Observed) -> None:
        ns = target.namespace
        if target.ws.tuning is not None:
            observed.job = self.cache.find(JOB, target.name, namespace=ns)
        else:
            kind = DEPLOYMENT if target.nodes == 1 else STATEFUL_SET
            observed.workload = self.cache.find(kind, target.name, namespace=ns)
        observed.pods = self.cache.list(POD, namespace=ns, labels=workspace_labels(target.name, ns))
        if target.ws.tuning is not None:
            observed.tuning_output = tuning_output(observed.pods)

    async def _read_pull_progress(self, target: Target, observed: Observed) -> bool:
        """Whether a pod is pulling the model image now; if so, its puller's last progress line goes in `observed`."""
        observed.model_image = target.model_image
        if observed.model_image is None:
            return False
        pulling = False
        for pod in observed.pods:
            cs = puller_status(pod)
            if cs is None or not (cs.get("state") or {}).get("running"):
                continue
            pulling = True
            line = await last_progress_line(self.client, pod["metadata"]["namespace"], pod["metadata"]["name"])
            if line is not None:
                observed.pull_progress[pod["metadata"]["name"]] = line
        return pulling

    async def _finalize(self, raw: Obj) -> Result:
        meta = raw["metadata"]
        claims = self.cache.list(NODECLAIM, labels=workspace_labels(meta["name"], meta["namespace"]))
        for claim in claims:
            if not is_deleting(claim):
                await errors.ignore_not_found(self.client.delete(NODECLAIM, claim["metadata"]["name"]))
        if claims:
            return Result(requeue_after=DELETE_POLL_S)
        await apply.remove_finalizer(self.client, raw, FINALIZER)
        return Result()
