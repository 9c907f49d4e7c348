"""Pure status logic: conditions that say what is really wrong, read from NodeClaims, Nodes, Pods and workloads.

When something is not ready the reason and message come from the object that knows: a NodeClaim's
launch failure carries the cloud's own message, a Pending pod the scheduler's, a crashing container
its termination reason. Nothing is reported as ready on hope.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kaito.api.engine_report import REASONS, Refusal
from kaito.api.nodeclaim import (
    AWAITING_INITIALIZATION,
    AWAITING_REGISTRATION,
    GPU_NVIDIA,
    GPU_RESOURCES,
    READY,
    STAGES,
    node_ready,
)
from kaito.api.workspace import AdapterStatus
from kaito.controllers.fallback import EXHAUSTED
from kaito.controllers.kinds import MODEL_PULLER
from kaito.presets.catalog import Catalog

Obj = dict[str, Any]
WAITING = frozenset({AWAITING_REGISTRATION, AWAITING_INITIALIZATION})  # a claim's reasons while it is on its way


@dataclass(frozen=True)
class Cond:
    type: str
    status: bool
    reason: str
    message: str = ""


@dataclass
class Observed:
    """What the reconciler found, for one workspace."""

    target_nodes: int
    nodeclaims: list[Obj] = field(default_factory=list)
    nodes: list[Obj] = field(default_factory=list)
    workload: Obj | None = None
    pods: list[Obj] = field(default_factory=list)
    job: Obj | None = None
    tuning_output: Obj | None = None  # what `kaito tune` reported when it finished
    provisioning: bool = True  # False in bring-your-own-nodes mode
    invalid: str | None = None  # validation or planning failure
    invalid_reason: str = "InvalidWorkspace"  # its condition's reason
    gpu: str | None = GPU_NVIDIA  # the resource a node must advertise to count (see `gpu_resource`)
    model_image: str | None = None  # the model image the pods pull, None when they download from the hub
    pull_progress: dict[str, Obj] = field(default_factory=dict)  # by pod: the puller's last progress line
    instance_attempts: list[Obj] | None = None  # the refused instance types to record, when one was added
    exhausted: str | None = None  # every candidate instance type was refused: what the cloud said
    engine_note: tuple[str, str] | None = None  # InferenceReady's reason and words in place of the engine's refusal
    adapters: list[AdapterStatus] | None = None  # each adapter as the pods serve it; None: not read in this pass


def gpu_resource(catalog: Catalog, instance_type: str | None) -> str | None:
    """The GPU resource a node of the plan's type advertises: by the catalog's vendor, NVIDIA for a type it lacks."""
    sku = catalog.find_sku(instance_type) if instance_type else None
    return GPU_NVIDIA if sku is None else GPU_RESOURCES.get(sku.gpu_vendor)


def _claim_condition(claim: Obj, kind: str) -> Obj | None:
    for cond in (claim.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def nodeclaim_condition(observed: Observed) -> Cond:
    if observed.exhausted:
        return Cond("NodeClaimReady", False, EXHAUSTED, observed.exhausted)
    claims = observed.nodeclaims
    ready = [c for c in claims if (_claim_condition(c, READY) or {}).get("status") == "True"]
    if len(ready) >= observed.target_nodes:
        return Cond("NodeClaimReady", True, "NodeClaimsReady", f"{len(ready)} of {observed.target_nodes} ready")
    found = [f for f in (_claim_problem(c) for c in claims) if f is not None]
    # A claim given up or refused is news; one still waiting must not hide it (so the Warning Event is told).
    if problem := next((f for f in found if f.reason not in WAITING), found[0] if found else None):
        return problem
    return Cond(
        "NodeClaimReady", False, "NodeClaimNotReady", f"{len(ready)} of {observed.target_nodes} NodeClaims ready"
    )


def _claim_problem(claim: Obj) -> Cond | None:
    for kind in (*STAGES, READY):
        cond = _claim_condition(claim, kind)
        if cond is not None and cond.get("status") == "False" and cond.get("reason") not in ("", None):
            name = claim["metadata"]["name"]
            return Cond("NodeClaimReady", False, str(cond["reason"]), f"NodeClaim {name}: {cond.get('message', '')}")
    return None


def nodes_condition(observed: Observed) -> Cond:
    ready = [n for n in observed.nodes if node_ready(n, gpu=observed.gpu)]
    if len(ready) >= observed.target_nodes:
        return Cond("NodesReady", True, "NodesReady", f"{len(ready)} GPU node(s) ready")
    if not observed.provisioning and not observed.nodes:
        return Cond("NodesReady", False, "NoMatchingNodes", "no Ready GPU node matches resource.labelSelector")
    return Cond("NodesReady", False, "NodeNotReady", f"{len(ready)} of {observed.target_nodes} GPU node(s) ready")


def pod_problem(pods: list[Obj]) -> tuple[str, str] | None:
    """The most telling failure among the pods, as (reason, message)."""
    for pod in pods:
        status = pod.get("status") or {}
        name = pod["metadata"]["name"]
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason"):
                return str(cond["reason"]), f"pod {name}: {cond.get('message', '')}"
        statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
        for cs in statuses:
            found = _container_problem(cs)
            if found:
                return found[0], f"pod {name}: {found[1]}"
    return None


def engine_refusal(pods: list[Obj]) -> tuple[str, Refusal] | None:
    """The engine's refusal to start (KV cache too small, out of memory) from a server's termination message."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if (refusal := _refusal(cs)) is not None:
                return pod["metadata"]["name"], refusal
    return None


def _refusal(cs: Obj) -> Refusal | None:
    state, last = cs.get("state") or {}, cs.get("lastState") or {}
    terminated = state.get("terminated") or last.get("terminated") or {}
    return Refusal.from_json(str(terminated.get("message") or "").strip())


def _container_problem(cs: Obj) -> tuple[str, str] | None:
    state, last = cs.get("state") or {}, cs.get("lastState") or {}
    terminated = state.get("terminated") or last.get("terminated") or {}
    if (refusal := _refusal(cs)) is not None:
        return refusal.reason, f"container {cs.get('name')}: the engine refused to start: {refusal.message}"
    if terminated.get("reason") == "OOMKilled":
        return (
            "ContainerOOMKilled",
            f"container {cs.get('name')} was OOMKilled (exit code {terminated.get('exitCode')})",
        )
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    if reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
        return "ImagePullError", f"container {cs.get('name')}: {reason}: {waiting.get('message', '')}"
    if reason == "CrashLoopBackOff":
        return "ContainerCrashLoopBackOff", f"container {cs.get('name')}: {waiting.get('message', '') or reason}"
    if state.get("terminated") and state["terminated"].get("exitCode", 0) != 0:
        t = state["terminated"]
        said = str(t.get("message") or "").strip()
        detail = f"{t.get('reason', '')}: {said}" if said else str(t.get("reason", ""))
        return "ContainerStartError", f"container {cs.get('name')} exited {t.get('exitCode')}: {detail}"
    if state.get("running") and not cs.get("ready") and cs.get("started"):
        return "ContainerNotReady", f"container {cs.get('name')} is running but failing its readiness probe"
    return None


def inference_condition(observed: Observed, resource_ready: bool) -> Cond:
    workload = observed.workload or {}
    # A workload the cache does not show yet (applied in this very pass) will have one replica per node: counting
    # those from the start keeps its arrival in the cache from reading as a new state worth a status patch.
    wanted = int((workload.get("spec") or {}).get("replicas") or 0) if workload else observed.target_nodes
    ready = int((workload.get("status") or {}).get("readyReplicas") or 0)
    if resource_ready and workload and ready >= wanted > 0:
        return Cond("InferenceReady", True, "WorkspaceInferenceStatusSuccess", "inference service is ready")
    pull = model_pull_condition(observed)
    if pull is not None:
        return pull
    problem = pod_problem(observed.pods)
    if problem and observed.engine_note is not None and problem[0] in REASONS:
        return Cond("InferenceReady", False, *observed.engine_note)
    if problem:
        return Cond("InferenceReady", False, *problem)
    if not resource_ready:
        return Cond("InferenceReady", False, "WorkspaceInferenceStatusPending", "waiting for GPU nodes")
    return Cond("InferenceReady", False, "WorkspaceInferenceStatusPending", f"{ready} of {wanted} replicas ready")


def puller_status(pod: Obj) -> Obj | None:
    """The model puller's init container status in a pod, when it has one."""
    statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
    return next((cs for cs in statuses if cs.get("name") == MODEL_PULLER), None)


def model_pull_condition(observed: Observed) -> Cond | None:
    """InferenceReady while a pod pulls its model image (PullingModel, with how far) or after it failed to."""
    image = observed.model_image
    if image is None:
        return None
    for pod in observed.pods:
        cs = puller_status(pod)
        if cs is None:
            continue
        name = pod["metadata"]["name"]
        state, last = cs.get("state") or {}, cs.get("lastState") or {}
        failed = state.get("terminated") or last.get("terminated") or {}
        if failed and failed.get("exitCode", 0) != 0:
            said = " ".join(str(failed.get("message") or failed.get("reason") or "").split())
            words = said if image in said else f"cannot pull {image}: {said or 'exit code ' + str(failed['exitCode'])}"
            return Cond("InferenceReady", False, "ModelPullError", f"pod {name}: {words}")
        if state.get("running"):
            progress = describe_progress(observed.pull_progress.get(name))
            return Cond("InferenceReady", False, "PullingModel", f"pod {name}: pulling {image}: {progress}")
    return None


def describe_progress(line: Obj | None) -> str:
    """A `kaito pull-model` progress line for people: bytes of total, rate, time left."""
    if not line:
        return "started"
    done, total = int(line.get("bytes") or 0), int(line.get("totalBytes") or 0)
    rate, eta = float(line.get("bytesPerSecond") or 0), line.get("etaSeconds")
    percent = f" ({100 * done / total:.0f}%)" if total else ""
    left = f", ETA {eta}s" if eta is not None else ""
    return f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB{percent}, {rate / 2**20:.1f} MiB/s{left}"


def tuning_output(pods: list[Obj], container: str = "tuner") -> Obj | None:
    """What a finished `kaito tune` reported in its termination message: pushed image and digest, steps, loss."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            if cs.get("name") != container or terminated.get("exitCode") != 0:
                continue
            try:
                report = json.loads(str(terminated.get("message") or ""))
            except json.JSONDecodeError:
                continue
            if isinstance(report, dict):
                keys = ("image", "digest", "size", "steps", "loss")
                return {k: report[k] for k in keys if report.get(k) is not None} or None
    return None


def job_conditions(observed: Observed) -> tuple[Cond, Cond, str]:
    job = observed.job or {}
    status = job.get("status") or {}
    if status.get("failed"):
        problem = pod_problem(observed.pods)
        message = problem[1] if problem else "the tuning job failed"
        return (
            Cond("JobStarted", False, "WorkspaceTuningJobStatusFailed", message),
            Cond("WorkspaceSucceeded", False, "workspaceFailed", message),
            "Failed",
        )
    if status.get("succeeded"):
        done = Cond("WorkspaceSucceeded", True, "workspaceSucceeded", "tuning finished")
        return Cond("JobStarted", True, "WorkspaceTuningJobStatusStarted", "job started"), done, "Succeeded"
    if status.get("active") or status.get("ready"):
        pending = Cond("WorkspaceSucceeded", False, "workspacePending", "tuning is running")
        return Cond("JobStarted", True, "WorkspaceTuningJobStatusStarted", "job started"), pending, "Running"
    problem = pod_problem(observed.pods)
    reason, message = problem if problem else ("WorkspaceTuningJobStatusPending", "waiting for the job to start")
    return (
        Cond("JobStarted", False, reason, message),
        Cond("WorkspaceSucceeded", False, "workspacePending", message),
        "Pending",
    )


def compute(observed: Observed, *, tuning: bool, previous_state: str | None) -> tuple[list[Cond], str]:
    """All conditions and `status.state` for one workspace."""
    if observed.invalid:
        bad = Cond("ResourceReady", False, observed.invalid_reason, observed.invalid)
        return [bad, Cond("WorkspaceSucceeded", False, "workspaceFailed", observed.invalid)], "Failed"
    conds: list[Cond] = []
    if observed.provisioning:
        conds.append(nodeclaim_condition(observed))
    conds.append(nodes_condition(observed))
    blocking = next((c for c in conds if not c.status), None)
    resource = (
        Cond("ResourceReady", True, "workspaceResourceStatusSuccess", "GPU nodes are ready")
        if blocking is None
        else Cond("ResourceReady", False, blocking.reason, blocking.message)
    )
    conds.append(resource)
    if tuning:
        started, succeeded, state = job_conditions(observed)
        return [*conds, started, succeeded], state
    inference = inference_condition(observed, resource.status)
    conds.append(inference)
    if inference.status:
        return [*conds, Cond("WorkspaceSucceeded", True, "workspaceSucceeded", "workspace is ready")], "Ready"
    state = "NotReady" if previous_state in ("Ready", "NotReady") else "Pending"
    return [*conds, Cond("WorkspaceSucceeded", False, "workspacePending", inference.message)], state
