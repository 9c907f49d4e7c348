"""The status a simulated kubelet reports for a pod it runs: a pure function of the pod, its episode and the time.

Purity is what keeps the cluster quiet: recomputing the status of a settled pod yields the stored
status exactly (timestamps come from the episode, not the clock), so no write follows. Containers that run
as real local processes (`kaito_sim.nodes.processes`) are described by a `ContainerRun` snapshot instead of the
clock; the same rule holds, since a snapshot only changes when the process does.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.objects import now_rfc3339
from kaito_sim.nodes.podfaults import PROBE_MESSAGE, PodFault
from kaito_sim.workloads.common import merge_conditions


@dataclass(frozen=True)
class Timing:
    ready_delay: float
    job_duration: float
    backoff: float
    max_restarts: int


@dataclass
class Episode:
    """Since when the pod has run as it does now: from its start, or from a fault coming or going."""

    uid: str
    fault: PodFault | None
    since: float  # kubelet clock
    since_wall: datetime.datetime
    restarts: dict[str, int] = field(default_factory=dict)  # restart counts when the episode began


@dataclass(frozen=True)
class Exit:
    """How a container's process ended (`exitCode`, `reason` Completed/Error/StartError, timestamps, message)."""

    code: int
    reason: str
    started_at: str
    finished_at: str
    message: str = ""


@dataclass(frozen=True)
class ContainerRun:
    """A container run as a real local process, as its supervisor last saw it."""

    started_at: str = ""  # the running instance's start; "" while nothing runs
    ready: bool = False  # its readiness probe passes (or it has none)
    started: bool = False  # its startup probe has passed (or it has none)
    restarts: int = 0
    waiting: tuple[str, str] = ("ContainerCreating", "")  # (reason, message) while nothing runs
    exited: Exit | None = None  # the last instance's end: lastState while it restarts, the state once final
    final: bool = False  # exited for good: the restart policy starts no new instance


@dataclass(frozen=True)
class PodRun:
    """A pod whose containers (init ones included) run as real local processes, as its supervisor last saw it."""

    containers: dict[str, ContainerRun]  # by name: the pod's process containers and its init containers
    initialized: bool = False  # every init container has completed (a sidecar: started), so the others run
    mount_error: str = ""  # why its volumes cannot be set up (a FailedMount event); "" once they are


@dataclass
class Report:
    status: JsonObj
    wake: float | None = None  # seconds until the status would change by itself
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (reason, message, fieldPath)


def image_ref(image: str) -> str:
    """An image as containerd reports it: registry and tag made explicit."""
    name = image
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name:
        return "docker.io/library/" + name
    if "." not in first and ":" not in first and first != "localhost":
        return "docker.io/" + name
    return name


def image_id(image: str) -> str:
    ref = image_ref(image)
    if "@" in ref:
        return ref
    repo = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    return f"{repo}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


def _terminated(code: int, reason: str, started: str, finished: str, message: str = "") -> JsonObj:
    state: JsonObj = {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished}
    if message:
        state["message"] = message
    return {"terminated": state}


class _Builder:
    def __init__(self, pod: JsonObj, ep: Episode, now: float, timing: Timing) -> None:
        self.pod, self.ep, self.timing = pod, ep, timing
        self.spec: JsonObj = pod.get("spec") or {}
        self.meta: JsonObj = pod["metadata"]
        self.elapsed = now - ep.since
        self.mode = ep.fault.mode if ep.fault else None
        self.never = self.spec.get("restartPolicy") == "Never"
        self.report = Report({})

    def at(self, offset: float = 0.0) -> str:
        return (self.ep.since_wall + datetime.timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def wake(self, delay: float) -> None:
        if delay > 0 and (self.report.wake is None or delay < self.report.wake):
            self.report.wake = delay

    def event(self, reason: str, message: str, container: str, *, init: bool = False) -> None:
        path = f"spec.{'initContainers' if init else 'containers'}{{{container}}}"
        self.report.events.append((reason, message, path))

    def status(
        self,
        c: JsonObj,
        *,
        state: JsonObj,
        ready: bool = False,
        started: bool = False,
        last: Any = None,
        extra: int = 0,
    ) -> JsonObj:
        name, image = str(c.get("name", "")), str(c.get("image", ""))
        pulled = not (set(state) == {"waiting"} and not last)
        restarts = self.ep.restarts.get(name, 0) + extra
        out: JsonObj = {
            "name": name,
            "image": image_ref(image),
            "imageID": image_id(image) if pulled else "",
            "ready": ready,
            "restartCount": restarts,
            "started": started,
            "state": state,
            "lastState": last or {},
        }
        if pulled:
            seed = f"{self.meta.get('uid')}/{name}/{restarts}".encode()
            out["containerID"] = "containerd://" + hashlib.sha256(seed).hexdigest()
        return out

    def waiting(self, c: JsonObj, reason: str, message: str = "") -> JsonObj:
        state = {"reason": reason, **({"message": message} if message else {})}
        return self.status(c, state={"waiting": state})

    def crash(self, c: JsonObj, code: int, reason: str, *, init: bool = False) -> tuple[JsonObj, bool]:
        """A container that keeps exiting with `code`: its status, and whether the pod has failed for good."""
        name = str(c.get("name", ""))
        message = self.ep.fault.message if self.ep.fault else ""
        if self.never:
            return self.status(c, state=_terminated(code, reason, self.at(), self.at(), message)), True
        backoff, limit = self.timing.backoff, self.timing.max_restarts
        step = min(limit, int(self.elapsed // backoff)) if backoff > 0 else limit
        if step < limit:
            self.wake(backoff * (step + 1) - self.elapsed)
        last_try = _terminated(code, reason, self.at(backoff * max(step - 1, 0)), self.at(backoff * max(step - 1, 0)))
        if step == 0:
            return self.status(c, state=_terminated(code, reason, self.at(), self.at(), message)), False
        ns, pod, uid = self.meta.get("namespace", ""), self.meta["name"], self.meta.get("uid", "")
        self.event("BackOff", f"Back-off restarting failed container {name} in pod {pod}_{ns}({uid})", name, init=init)
        wait = {
            "reason": "CrashLoopBackOff",
            "message": f"back-off {min(10 * 2 ** (step - 1), 300)}s restarting failed container={name} "
            f"pod={pod}_{ns}({uid})",
        }
        return self.status(c, state={"waiting": wait}, last=last_try, extra=step), False

    def inits(self, runs: PodRun | None) -> tuple[list[JsonObj], bool, bool]:
        """Init container statuses, whether initialization finished, and whether it failed for good."""
        inits = [c for c in self.spec.get("initContainers") or [] if isinstance(c, dict)]
        if self.mode == "InitFailure" and inits:
            first, failed = self.crash(inits[0], 1, "Error", init=True)
            return [first, *(self.waiting(c, "PodInitializing") for c in inits[1:])], False, failed
        if runs is not None and self.ep.fault is None:
            return self.init_runs(inits, runs)
        out = []
        for c in inits:
            if c.get("restartPolicy") == "Always":  # a sidecar: it starts and keeps running
                out.append(self.status(c, state={"running": {"startedAt": self.at()}}, ready=True, started=True))
            else:
                out.append(self.status(c, state=_terminated(0, "Completed", self.at(), self.at()), ready=True))
        return out, True, False

    def init_runs(self, inits: list[JsonObj], runs: PodRun) -> tuple[list[JsonObj], bool, bool]:
        """Init containers run one after another as processes: each waits, runs, completes or fails as it did."""
        out, failed = [], False
        for c in inits:
            run = runs.containers.get(str(c.get("name", ""))) or ContainerRun(waiting=("PodInitializing", ""))
            status = self.from_run(c, run, init=True)
            completed = run.final and run.exited is not None and run.exited.code == 0
            sidecar = c.get("restartPolicy") == "Always"
            status["ready"] = run.ready and bool(run.started_at) if sidecar else completed
            failed = failed or (run.final and not completed)
            out.append(status)
        return out, runs.initialized, failed

    def mains(self, *, is_job: bool, runs: dict[str, ContainerRun]) -> tuple[list[JsonObj], str]:
        containers = [c for c in self.spec.get("containers") or [] if isinstance(c, dict)]
        if runs and self.ep.fault is None:
            return self.processes(containers, runs)
        if self.mode == "ImagePullBackOff":
            return [self.pull_failure(c) for c in containers], "Pending"
        if self.mode in ("CrashLoopBackOff", "OOMKilled"):
            code, reason = (137, "OOMKilled") if self.mode == "OOMKilled" else (1, "Error")
            results = [self.crash(c, code, reason) for c in containers]
            return [s for s, _ in results], "Failed" if any(f for _, f in results) else "Running"
        duration = self.timing.job_duration
        if is_job and self.elapsed >= duration:
            done = _terminated(0, "Completed", self.at(), self.at(duration))
            return [self.status(c, state=done) for c in containers], "Succeeded"
        if is_job:
            self.wake(duration - self.elapsed)
        ready = self.elapsed >= self.timing.ready_delay and self.mode != "ProbeFailure"
        if self.mode == "ProbeFailure" and containers:
            message = self.ep.fault.message if self.ep.fault and self.ep.fault.message else PROBE_MESSAGE
            self.event("Unhealthy", message, str(containers[0].get("name", "")))
        elif not ready:
            self.wake(self.timing.ready_delay - self.elapsed)
        running = {"running": {"startedAt": self.at()}}
        return [self.status(c, state=running, ready=ready, started=True) for c in containers], "Running"

    def processes(self, containers: list[JsonObj], runs: dict[str, ContainerRun]) -> tuple[list[JsonObj], str]:
        """Containers run as local processes report what their processes do; any others in the pod just run."""
        out = []
        for c in containers:
            run = runs.get(str(c.get("name", "")))
            running = {"running": {"startedAt": self.at()}}
            out.append(self.from_run(c, run) if run else self.status(c, state=running, ready=True, started=True))
        ran = list(runs.values())
        if all(r.final for r in ran):
            return out, "Succeeded" if all(r.exited is not None and r.exited.code == 0 for r in ran) else "Failed"
        return out, "Running" if any(r.started_at or r.exited for r in ran) else "Pending"

    def from_run(self, c: JsonObj, run: ContainerRun, *, init: bool = False) -> JsonObj:
        def terminated(end: Exit) -> JsonObj:
            return _terminated(end.code, end.reason, end.started_at, end.finished_at, end.message)

        if run.final and run.exited is not None:
            return self.status(c, state=terminated(run.exited), extra=run.restarts)
        last = terminated(run.exited) if run.exited is not None else None
        if run.started_at:
            state = {"running": {"startedAt": run.started_at}}
            return self.status(c, state=state, ready=run.ready, started=run.started, last=last, extra=run.restarts)
        reason, message = run.waiting
        name = str(c.get("name", ""))
        if reason == "CrashLoopBackOff":
            ns, pod, uid = self.meta.get("namespace", ""), self.meta["name"], self.meta.get("uid", "")
            backoff = f"Back-off restarting failed container {name} in pod {pod}_{ns}({uid})"
            self.event("BackOff", backoff, name, init=init)
        elif message:
            self.event("Failed", f"Error: {message}", name, init=init)
        waiting: JsonObj = {"reason": reason, **({"message": message} if message else {})}
        return self.status(c, state={"waiting": waiting}, last=last, extra=run.restarts)

    def pull_failure(self, c: JsonObj) -> JsonObj:
        image, name = str(c.get("image", "")), str(c.get("name", ""))
        assert self.ep.fault is not None
        if self.elapsed < self.timing.backoff:
            self.wake(self.timing.backoff - self.elapsed)
            error = self.ep.fault.pull_error(image)
            self.event("Failed", f'Failed to pull image "{image}": {error}', name)
            self.event("Failed", "Error: ErrImagePull", name)
            return self.waiting(c, "ErrImagePull", error)
        self.event("BackOff", f'Back-off pulling image "{image}"', name)
        self.event("Failed", "Error: ImagePullBackOff", name)
        return self.waiting(c, "ImagePullBackOff", f'Back-off pulling image "{image}"')


def _conditions(
    phase: str, inits: list[JsonObj], mains: list[JsonObj], initialized: bool, *, sandbox: bool = True
) -> list[JsonObj]:
    def cond(kind: str, ok: bool, reason: str = "", message: str = "") -> JsonObj:
        out = {"type": kind, "status": "True" if ok else "False"}
        return {**out, **({"reason": reason} if reason else {}), **({"message": message} if message else {})}

    if phase in ("Succeeded", "Failed"):
        reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
        ready = [cond("Ready", False, reason), cond("ContainersReady", False, reason)]
    else:
        unready = [s["name"] for s in mains if not s["ready"]]
        message = f"containers with unready status: [{' '.join(unready)}]"
        ready = [
            cond(k, not unready, "ContainersNotReady" if unready else "", message if unready else "")
            for k in ("Ready", "ContainersReady")
        ]
    pending = [s["name"] for s in inits if not s["ready"]]
    init = cond(
        "Initialized",
        initialized,
        "" if initialized else "ContainersNotInitialized",
        "" if initialized else f"containers with incomplete status: [{' '.join(pending)}]",
    )
    return [cond("PodReadyToStartContainers", sandbox), init, *ready, cond("PodScheduled", True)]


def build(
    pod: JsonObj,
    ep: Episode,
    now: float,
    timing: Timing,
    *,
    is_job: bool,
    ips: tuple[str, str],
    runs: PodRun | None = None,
) -> Report:
    """The pod's status at `now`; `ips` is (hostIP, podIP); `runs` describes containers run as local processes."""
    builder = _Builder(pod, ep, now, timing)
    inits, initialized, init_failed = builder.inits(runs)
    mount_error = runs.mount_error if runs is not None and ep.fault is None else ""
    if mount_error:
        builder.report.events.append(("FailedMount", mount_error, ""))
    if initialized:
        names = {str(c.get("name", "")) for c in builder.spec.get("containers") or [] if isinstance(c, dict)}
        main_runs = {k: v for k, v in (runs.containers if runs is not None else {}).items() if k in names}
        mains, phase = builder.mains(is_job=is_job, runs=main_runs)
    else:
        containers = [c for c in builder.spec.get("containers") or [] if isinstance(c, dict)]
        mains, phase = (
            [builder.waiting(c, "PodInitializing") for c in containers],
            "Failed" if init_failed else "Pending",
        )
    old: JsonObj = pod.get("status") or {}
    host_ip, pod_ip = ips
    status = {
        **old,
        "phase": phase,
        "conditions": merge_conditions(
            old.get("conditions") or [],
            _conditions(phase, inits, mains, initialized, sandbox=not mount_error),
            now_rfc3339(),
            stamps=("lastTransitionTime",),
        ),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": old.get("startTime") or builder.at(),
        "containerStatuses": mains,
    }
    if inits:
        status["initContainerStatuses"] = inits
    builder.report.status = status
    return builder.report
