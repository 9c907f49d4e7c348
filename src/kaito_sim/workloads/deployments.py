"""The Deployment controller, simplified: it owns Pods directly (no ReplicaSets) and rolls them over by template hash.

Rollout style: RollingUpdate creates every new-template pod at once (unbounded surge), then deletes an
old pod for each new one that is Ready, so the workload never drops below its ready count; Recreate
deletes every old pod first and creates new ones only once they are gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.objects import now_rfc3339
from kaito_sim.apiserver.store import WatchEvent
from kaito_sim.workloads.api import Api
from kaito_sim.workloads.common import (
    DEPLOYMENTS,
    PODS,
    Key,
    is_active,
    is_ready,
    is_terminal,
    key_of,
    merge_conditions,
    owner_keys,
    pod_from_template,
    template_hash,
)
from kaito_sim.workloads.loop import Loop

HASH_LABEL = "pod-template-hash"


def _max_unavailable(deploy: JsonObj, replicas: int) -> int:
    strategy = (deploy.get("spec") or {}).get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0
    value: Any = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return replicas * int(value[:-1]) // 100
    return int(value)


def _doomed_first(pods: list[JsonObj]) -> list[JsonObj]:
    """Which pods to delete first: unscheduled, then not ready, then the newest."""
    newest_first = sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
    newest_first.reverse()
    return sorted(newest_first, key=lambda p: (bool((p.get("spec") or {}).get("nodeName")), is_ready(p)))


class DeploymentController(Loop):
    name = "deployment-controller"
    watches = (DEPLOYMENTS, PODS)

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.api = Api(cluster, "deployment-controller")

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        return [key_of(event.obj)] if event.storage_key == DEPLOYMENTS else owner_keys(event, "Deployment")

    async def reconcile(self, key: Key) -> float | None:
        deploy = self.api.get(DEPLOYMENTS, *key)
        if deploy is None or deploy["metadata"].get("deletionTimestamp"):
            return None
        spec = deploy.get("spec") or {}
        template = spec.get("template") or {}
        current = template_hash(template)
        replicas = int(spec.get("replicas", 1))
        pods = self.api.owned(PODS, deploy)
        for pod in pods:
            if is_terminal(pod) and not pod["metadata"].get("deletionTimestamp"):
                await self.api.delete(PODS, pod)  # a finished pod no longer counts; a fresh one replaces it
        live = [p for p in pods if is_active(p)]
        new = [p for p in live if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == current]
        old = [p for p in live if p not in new]
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        if recreate and old:
            for pod in old:
                await self.api.delete(PODS, pod)
        else:
            for _ in range(replicas - len(new)):
                body = pod_from_template(deploy, template, {HASH_LABEL: current})
                body["metadata"]["generateName"] = f"{key[1]}-{current}-"
                await self.api.create(PODS, key[0], body)
            for pod in _doomed_first(new)[: max(0, len(new) - replicas)]:
                await self.api.delete(PODS, pod)
            keep_old = max(0, replicas - sum(1 for p in new if is_ready(p)))
            for pod in _doomed_first(old)[: max(0, len(old) - keep_old)]:
                await self.api.delete(PODS, pod)
        await self._write_status(key, current)
        return None

    async def _write_status(self, key: Key, current: str) -> None:
        deploy = self.api.get(DEPLOYMENTS, *key)
        if deploy is None:
            return
        spec = deploy.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        live = [p for p in self.api.owned(PODS, deploy) if is_active(p)]
        updated = sum(1 for p in live if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == current)
        ready = sum(1 for p in live if is_ready(p))
        old: JsonObj = deploy.get("status") or {}
        status: JsonObj = {
            **old,
            "observedGeneration": deploy["metadata"].get("generation", 1),
            "replicas": len(live),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        status.pop("unavailableReplicas", None)
        if replicas > ready:
            status["unavailableReplicas"] = replicas - ready
        name = deploy["metadata"]["name"]
        available = ready >= replicas - _max_unavailable(deploy, replicas)
        done = updated == replicas == len(live) == ready
        conditions = [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "message": f"Deployment {'has' if available else 'does not have'} minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
                "message": f'Deployment "{name}" ' + ("has successfully progressed." if done else "is progressing."),
            },
        ]
        status["conditions"] = merge_conditions(
            old.get("conditions") or [], conditions, now_rfc3339(), stamps=("lastUpdateTime", "lastTransitionTime")
        )
        await self.api.update_status(DEPLOYMENTS, deploy, status)
