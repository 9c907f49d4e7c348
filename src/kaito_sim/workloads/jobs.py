"""The Job controller: runs pods until enough succeed, or gives up once more fail than backoffLimit allows.

Simplified: failed pods are replaced at once (no exponential back-off delay), and restarts of
OnFailure pods do not count towards backoffLimit; suspend, parallelism and completions are honoured.
"""

from __future__ import annotations

from collections.abc import Iterable

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.objects import now_rfc3339
from kaito_sim.apiserver.store import WatchEvent
from kaito_sim.workloads.api import Api
from kaito_sim.workloads.common import (
    JOBS,
    PODS,
    Key,
    condition,
    is_active,
    is_ready,
    key_of,
    merge_conditions,
    owner_keys,
    pod_from_template,
)
from kaito_sim.workloads.loop import Loop

_STAMPS = ("lastProbeTime", "lastTransitionTime")


def finished(job: JsonObj) -> bool:
    return any((condition(job, kind) or {}).get("status") == "True" for kind in ("Complete", "Failed"))


def _cond(kind: str, reason: str, message: str) -> JsonObj:
    return {"type": kind, "status": "True", "reason": reason, "message": message}


class JobController(Loop):
    name = "job-controller"
    watches = (JOBS, PODS)

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.api = Api(cluster, "job-controller")

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        return [key_of(event.obj)] if event.storage_key == JOBS else owner_keys(event, "Job")

    async def reconcile(self, key: Key) -> float | None:
        job = self.api.get(JOBS, *key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        pods = self.api.owned(PODS, job)
        active = [p for p in pods if is_active(p)]
        if finished(job):
            for pod in active:
                await self.api.delete(PODS, pod)
            return None
        spec = job.get("spec") or {}
        old: JsonObj = job.get("status") or {}
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        succeeded = max(int(old.get("succeeded") or 0), phases.count("Succeeded"))
        failed = max(int(old.get("failed") or 0), phases.count("Failed"))
        completions = spec.get("completions")
        now = now_rfc3339()
        new_conditions: list[JsonObj] = []
        if failed > int(spec.get("backoffLimit", 6)):
            message = "Job has reached the specified backoff limit"
            new_conditions = [
                _cond("FailureTarget", "BackoffLimitExceeded", message),
                _cond("Failed", "BackoffLimitExceeded", message),
            ]
        elif succeeded >= (completions or 1) and (completions is not None or not active):
            message = "Reached expected number of succeeded pods"
            new_conditions = [
                _cond("SuccessCriteriaMet", "CompletionsReached", message),
                _cond("Complete", "CompletionsReached", message),
            ]
        want = 0 if new_conditions or spec.get("suspend") else self._wanted(spec, succeeded)
        active = await self._converge(job, active, want)
        status: JsonObj = {**old, "succeeded": succeeded, "failed": failed, "ready": sum(map(is_ready, active))}
        status["active"] = len(active)
        for field in ("active", "succeeded", "failed"):
            if not status[field]:
                del status[field]  # zero counts are left out, as the real controller's omitempty does
        if not spec.get("suspend") and "startTime" not in status:
            status["startTime"] = now
        if new_conditions:
            status["conditions"] = merge_conditions(old.get("conditions") or [], new_conditions, now, stamps=_STAMPS)
            if new_conditions[-1]["type"] == "Complete":
                status["completionTime"] = now
        await self.api.update_status(JOBS, job, status)
        if new_conditions and new_conditions[-1]["type"] == "Failed":
            await self.api.event(job, reason="BackoffLimitExceeded", message=new_conditions[-1]["message"])
        elif new_conditions:
            await self.api.event(job, reason="Completed", message="Job completed", warning=False)
        return None

    @staticmethod
    def _wanted(spec: JsonObj, succeeded: int) -> int:
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if completions is None:
            return 0 if succeeded else parallelism  # work-queue jobs: the first success ends new starts
        return max(0, min(parallelism, int(completions) - succeeded))

    async def _converge(self, job: JsonObj, active: list[JsonObj], want: int) -> list[JsonObj]:
        ns, name = key_of(job)
        for pod in active[want:]:
            await self.api.delete(PODS, pod)
        active = active[:want]
        uid = job["metadata"]["uid"]
        labels = {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        template = (job.get("spec") or {}).get("template") or {}
        for _ in range(want - len(active)):
            body = pod_from_template(job, template, labels)
            body["metadata"]["generateName"] = f"{name}-"
            active.append(await self.api.create(PODS, ns, body))
        return active
