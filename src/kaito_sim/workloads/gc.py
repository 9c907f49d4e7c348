"""The garbage collector and namespace/CRD cleanup loops that a real control plane runs beside the API server."""

from __future__ import annotations

import asyncio
import copy
import logging

from kaito_sim.apiserver.cluster import CRDS, NAMESPACES, Cluster
from kaito_sim.apiserver.crds import CLEANUP_FINALIZER
from kaito_sim.apiserver.deletion import FOREGROUND, ORPHAN, Deleter
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.resources import ResourceType
from kaito_sim.apiserver.store import ObjectKey, StorageKey

log = logging.getLogger(__name__)


class GarbageCollector:
    """Sweeps after every batch of writes: owner cascades, terminating namespaces and CRDs."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.deleter = Deleter(cluster)

    async def run(self, stop: asyncio.Event) -> None:
        changed = self.cluster.store.changed
        while not stop.is_set():
            await changed.wait()
            changed.clear()
            try:
                self.sweep()
            except Exception:  # a bad object must not stop collection of the rest
                log.exception("garbage collection sweep failed")
            await asyncio.sleep(0)

    def sweep(self) -> None:
        for key, okey in self.cluster.store.terminating():
            self._finish_terminating(key, okey)
        self._collect_orphans()

    def _get(self, key: StorageKey, okey: ObjectKey) -> tuple[ResourceType, JsonObj] | None:
        rt = self.cluster.type_for_storage(key)
        obj = self.cluster.store.get(key, *okey)
        return None if rt is None or obj is None else (rt, obj)

    def _finish_terminating(self, key: StorageKey, okey: ObjectKey) -> None:
        found = self._get(key, okey)
        if found is None:
            return
        rt, obj = found
        finalizers = obj["metadata"].get("finalizers") or []
        if key == NAMESPACES:
            self._drain_namespace(rt, obj)
        if key == CRDS and CLEANUP_FINALIZER in finalizers:
            self._drain_crd(rt, obj)
        if FOREGROUND in finalizers:
            self._foreground(rt, obj)
        if ORPHAN in finalizers:
            self._orphan(rt, obj)

    def _dependents(self, uid: str) -> list[tuple[ResourceType, JsonObj]]:
        out = []
        for key, okey in self.cluster.store.dependents(uid):
            found = self._get(key, okey)
            if found is not None:
                out.append(found)
        return out

    def _foreground(self, rt: ResourceType, owner: JsonObj) -> None:
        uid = owner["metadata"]["uid"]
        for dep_rt, dep in self._dependents(uid):
            refs = dep["metadata"].get("ownerReferences") or []
            if any(r.get("uid") != uid and self.cluster.store.by_uid(r.get("uid", "")) for r in refs):
                self._drop_owner(dep_rt, dep, uid)  # another owner still holds it: only let go of this one
            else:
                self.deleter.delete_now(dep_rt, dep, "Foreground")
        blocking = [d for _, d in self._dependents(owner["metadata"]["uid"]) if self._blocks(d, owner)]
        if not blocking:
            self.deleter.drop_finalizer(rt, self.cluster.store.get(rt.storage_key, *_okey(owner)) or owner, FOREGROUND)

    @staticmethod
    def _blocks(dependent: JsonObj, owner: JsonObj) -> bool:
        return any(
            ref.get("uid") == owner["metadata"]["uid"] and ref.get("blockOwnerDeletion")
            for ref in dependent["metadata"].get("ownerReferences") or []
        )

    def _orphan(self, rt: ResourceType, owner: JsonObj) -> None:
        uid = owner["metadata"]["uid"]
        for dep_rt, dep in self._dependents(uid):
            self._drop_owner(dep_rt, dep, uid)
        self.deleter.drop_finalizer(rt, self.cluster.store.get(rt.storage_key, *_okey(owner)) or owner, ORPHAN)

    def _drop_owner(self, rt: ResourceType, dependent: JsonObj, owner_uid: str) -> None:
        obj = copy.deepcopy(dependent)
        refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
        if refs:
            obj["metadata"]["ownerReferences"] = refs
        else:
            obj["metadata"].pop("ownerReferences", None)
        self.deleter.update_now(rt, dependent, obj)

    def _collect_orphans(self) -> None:
        """Background propagation: delete dependents all of whose owners are gone."""
        store = self.cluster.store
        for uid in store.owner_uids():
            if store.by_uid(uid) is not None:
                continue
            for dep_rt, dep in self._dependents(uid):
                refs = dep["metadata"].get("ownerReferences") or []
                if all(store.by_uid(r.get("uid", "")) is None for r in refs):
                    self.deleter.delete_now(dep_rt, dep, "Background")

    def _drain_namespace(self, rt: ResourceType, namespace: JsonObj) -> None:
        name = namespace["metadata"]["name"]
        remaining = 0
        for key in self.cluster.store.storage_keys():
            obj_rt = self.cluster.type_for_storage(key)
            if obj_rt is None or not obj_rt.namespaced:
                continue
            for obj in self.cluster.store.items(key, name):
                remaining += 1
                self.deleter.delete_now(obj_rt, obj, "Background")
        if remaining == 0 and not namespace["metadata"].get("finalizers"):
            self.deleter.remove(rt, namespace)

    def _drain_crd(self, rt: ResourceType, crd: JsonObj) -> None:
        spec = crd["spec"]
        key = (spec["group"], spec["names"]["plural"])
        cr_type = self.cluster.type_for_storage(key)
        items = self.cluster.store.items(key)
        if cr_type is not None:
            for obj in items:
                self.deleter.delete_now(cr_type, obj, "Background")
        if not self.cluster.store.items(key):
            self.deleter.drop_finalizer(rt, crd, CLEANUP_FINALIZER)


def _okey(obj: JsonObj) -> ObjectKey:
    return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
