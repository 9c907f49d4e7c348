"""The StatefulSet controller: stable pod names and claims per ordinal, ordered or parallel, rolled over by revision.

No ControllerRevision objects are kept; a revision is `<sts>-<template hash>`, as in the pod label.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.store import WatchEvent
from kaito_sim.workloads.api import Api
from kaito_sim.workloads.common import (
    PODS,
    PVCS,
    STATEFULSETS,
    Key,
    is_active,
    is_ready,
    is_terminal,
    key_of,
    owner_keys,
    owner_ref,
    pod_from_template,
    template_hash,
)
from kaito_sim.workloads.loop import Loop

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def _revision(pod: JsonObj) -> str:
    return str((pod["metadata"].get("labels") or {}).get(REVISION_LABEL, ""))


class StatefulSetController(Loop):
    name = "statefulset-controller"
    watches = (STATEFULSETS, PODS)

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.api = Api(cluster, "statefulset-controller")

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        return [key_of(event.obj)] if event.storage_key == STATEFULSETS else owner_keys(event, "StatefulSet")

    def _pods(self, sts: JsonObj) -> dict[int, JsonObj]:
        prefix = sts["metadata"]["name"] + "-"
        out = {}
        for pod in self.api.owned(PODS, sts):
            suffix = pod["metadata"]["name"][len(prefix) :]
            if pod["metadata"]["name"].startswith(prefix) and suffix.isdigit():
                out[int(suffix)] = pod
        return out

    async def reconcile(self, key: Key) -> float | None:
        sts = self.api.get(STATEFULSETS, *key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return None
        spec = sts.get("spec") or {}
        revision = f"{key[1]}-{template_hash(spec.get('template') or {})}"
        for pod in self._pods(sts).values():
            if is_terminal(pod) and not pod["metadata"].get("deletionTimestamp"):
                await self.api.delete(PODS, pod)  # a failed or finished member is replaced under the same name
        pods = self._pods(sts)
        changed = await self._scale(sts, pods, revision)
        strategy = spec.get("updateStrategy") or {}
        if not changed and strategy.get("type", "RollingUpdate") == "RollingUpdate":
            await self._roll(sts, pods, revision, int((strategy.get("rollingUpdate") or {}).get("partition") or 0))
        await self._write_status(key, revision)
        return None

    async def _scale(self, sts: JsonObj, pods: dict[int, JsonObj], revision: str) -> bool:
        spec = sts.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        parallel = spec.get("podManagementPolicy") == "Parallel"
        changed = False
        for ordinal in range(replicas):
            if ordinal in pods:
                continue
            if not parallel and not all(j in pods and is_ready(pods[j]) for j in range(ordinal)):
                break
            await self._create(sts, ordinal, revision)
            changed = True
            if not parallel:
                break  # OrderedReady: the next ordinal waits for this one to be Ready
        extra = sorted((i for i in pods if i >= replicas), reverse=True)
        for ordinal in extra if parallel else extra[:1]:
            await self.api.delete(PODS, pods[ordinal])
            changed = True
        return changed

    async def _roll(self, sts: JsonObj, pods: dict[int, JsonObj], revision: str, partition: int) -> None:
        """Replace one out-of-date pod at a time, highest ordinal first, once every member is Ready."""
        replicas = int((sts.get("spec") or {}).get("replicas", 1))
        members = {i: p for i, p in pods.items() if i < replicas}
        stale = sorted((i for i, p in members.items() if i >= partition and _revision(p) != revision), reverse=True)
        if stale and all(is_active(p) and is_ready(p) for p in members.values()):
            await self.api.delete(PODS, members[stale[0]])

    async def _create(self, sts: JsonObj, ordinal: int, revision: str) -> None:
        spec = sts.get("spec") or {}
        ns, name = key_of(sts)
        pod_name = f"{name}-{ordinal}"
        labels = {POD_NAME_LABEL: pod_name, POD_INDEX_LABEL: str(ordinal), REVISION_LABEL: revision}
        body = pod_from_template(sts, spec.get("template") or {}, labels)
        body["metadata"]["name"] = pod_name
        pod_spec = body["spec"]
        pod_spec["hostname"] = pod_name
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        for claim in spec.get("volumeClaimTemplates") or []:
            claim_name = str((claim.get("metadata") or {}).get("name", ""))
            pvc_name = f"{claim_name}-{name}-{ordinal}"
            await self._ensure_claim(sts, claim, pvc_name)
            volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") != claim_name]
            pod_spec["volumes"] = [*volumes, {"name": claim_name, "persistentVolumeClaim": {"claimName": pvc_name}}]
        await self.api.create(PODS, ns, body)

    async def _ensure_claim(self, sts: JsonObj, claim: JsonObj, name: str) -> None:
        ns = sts["metadata"]["namespace"]
        if self.api.get(PVCS, ns, name) is not None:
            return
        spec = sts.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        meta = claim.get("metadata") or {}
        body: JsonObj = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns, "labels": {**(meta.get("labels") or {}), **selector}},
            "spec": copy.deepcopy(claim.get("spec") or {}),
        }
        if (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted") == "Delete":
            body["metadata"]["ownerReferences"] = [{**owner_ref(sts), "controller": False}]
        await self.api.create(PVCS, ns, body)

    async def _write_status(self, key: Key, revision: str) -> None:
        sts = self.api.get(STATEFULSETS, *key)
        if sts is None:
            return
        replicas = int((sts.get("spec") or {}).get("replicas", 1))
        live = [p for p in self._pods(sts).values() if is_active(p)]
        updated = sum(1 for p in live if _revision(p) == revision)
        old: JsonObj = sts.get("status") or {}
        current_revision = str(old.get("currentRevision") or revision)
        if updated == replicas == len(live):
            current_revision = revision
        ready = sum(1 for p in live if is_ready(p))
        status = {
            **old,
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": sum(1 for p in live if _revision(p) == current_revision),
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        await self.api.update_status(STATEFULSETS, sts, status)
