"""DELETE semantics: preconditions, finalizers and deletionTimestamp, propagation policies, delete-collection."""

from __future__ import annotations

import copy
from typing import Any

from kaito_sim.apiserver import errors, hooks
from kaito_sim.apiserver.cluster import Cluster, WriteOptions
from kaito_sim.apiserver.conversion import as_version
from kaito_sim.apiserver.crds import CLEANUP_FINALIZER
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.objects import now_rfc3339
from kaito_sim.apiserver.resources import ResourceType

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
POLICIES = ("Background", "Foreground", "Orphan")
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})


def parse_delete_options(body: Any, query_policy: str | None) -> tuple[str, JsonObj]:
    """(propagation policy, preconditions) from a DeleteOptions body and the query string."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise errors.bad_request("DeleteOptions must be a JSON object")
    policy = body.get("propagationPolicy") or query_policy
    if policy is None and body.get("orphanDependents") is not None:
        policy = ORPHAN.capitalize() if body["orphanDependents"] else "Background"
    policy = policy or "Background"
    if policy not in POLICIES:
        raise errors.invalid(
            "DeleteOptions",
            "",
            "",
            [
                errors.cause(
                    "FieldValueNotSupported",
                    f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan"',
                    "propagationPolicy",
                )
            ],
        )
    return policy, body.get("preconditions") or {}


class Deleter:
    """Deletes objects the way the apiserver's generic registry does."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def delete(
        self, rt: ResourceType, ns: str, name: str, *, policy: str, preconditions: JsonObj, opts: WriteOptions
    ) -> JsonObj:
        if rt.storage_key == ("", "namespaces") and name in PROTECTED_NAMESPACES:
            raise errors.forbidden(
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                {"name": name, "kind": "namespaces"},
            )
        live = self.cluster.get(rt, ns, name)
        self._check_preconditions(rt, live, preconditions)
        if self.cluster.validating_webhooks():
            await self.cluster.admit(rt, "DELETE", obj=None, old=live, opts=opts)
            live = self.cluster.get(rt, ns, name)
        if opts.dry_run:
            return live
        return self.delete_now(rt, live, policy)

    def _check_preconditions(self, rt: ResourceType, live: JsonObj, pre: JsonObj) -> None:
        meta = live["metadata"]
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(
                rt.plural,
                rt.group,
                meta["name"],
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise errors.conflict(
                rt.plural,
                rt.group,
                meta["name"],
                f"Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                f"{meta['resourceVersion']}",
            )

    def delete_now(self, rt: ResourceType, live: JsonObj, policy: str) -> JsonObj:
        """Mark for deletion (finalizers pending) or remove at once; no admission. Returns the final state."""
        meta = live["metadata"]
        if meta.get("deletionTimestamp"):
            return live
        finalizers = list(meta.get("finalizers") or [])
        extra = {"Foreground": FOREGROUND, "Orphan": ORPHAN}.get(policy)
        if extra and extra not in finalizers:
            finalizers.append(extra)
        if rt.storage_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            finalizers.append(CLEANUP_FINALIZER)
        is_namespace = rt.storage_key == ("", "namespaces")
        if not finalizers and not is_namespace:
            return self.remove(rt, live)
        obj = copy.deepcopy(live)
        obj["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0, finalizers=finalizers)
        if not finalizers:
            del obj["metadata"]["finalizers"]
        obj["metadata"]["generation"] = int(meta.get("generation") or 1) + 1
        if is_namespace:
            obj.setdefault("status", {})["phase"] = "Terminating"
        self._store(rt, obj, live)
        return obj

    def remove(self, rt: ResourceType, live: JsonObj) -> JsonObj:
        obj = copy.deepcopy(live)
        obj["metadata"]["resourceVersion"] = str(self.cluster.store.next_rv())
        self.cluster.store.remove(rt.storage_key, as_version(obj, rt.stored_api_version))
        hooks.after_remove(self.cluster, rt, obj)
        return obj

    def _store(self, rt: ResourceType, obj: JsonObj, old: JsonObj) -> None:
        store = self.cluster.store
        obj["metadata"]["resourceVersion"] = str(store.next_rv())
        stored_old = store.get(rt.storage_key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        store.put(rt.storage_key, as_version(obj, rt.stored_api_version), old=stored_old)

    def drop_finalizer(self, rt: ResourceType, live: JsonObj, finalizer: str) -> None:
        """Remove one finalizer (a controller's update); the last one going removes the object."""
        finalizers = [f for f in live["metadata"].get("finalizers") or [] if f != finalizer]
        if finalizers == list(live["metadata"].get("finalizers") or []):
            return
        obj = copy.deepcopy(live)
        obj["metadata"]["finalizers"] = finalizers
        if not finalizers:
            del obj["metadata"]["finalizers"]
            if obj["metadata"].get("deletionTimestamp"):
                self.remove(rt, obj)
                return
        self._store(rt, obj, live)

    def update_now(self, rt: ResourceType, live: JsonObj, obj: JsonObj) -> None:
        """Store a garbage-collector edit (e.g. dropping an ownerReference)."""
        self._store(rt, obj, live)
