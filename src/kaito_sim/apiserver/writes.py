"""Create, update and patch: the write pipeline every kind goes through, as the real server's registry does.

Each write builds a candidate from a snapshot of the live object, runs mutating admission webhooks on
it, validates it, runs validating admission webhooks (both await), then commits only if the live object
is still the snapshot; otherwise the whole write is retried against the newer object, like the
apiserver's GuaranteedUpdate.
"""

from __future__ import annotations

import copy
from typing import Any

from kaito_sim.apiserver import errors, hooks, managedfields, patch, schema
from kaito_sim.apiserver.cluster import CRDS, Cluster, WriteOptions
from kaito_sim.apiserver.conversion import as_version
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.immutability import update_causes
from kaito_sim.apiserver.listkeys import is_set_list, merge_key
from kaito_sim.apiserver.objects import (
    SERVER_OWNED_META,
    generated_name,
    new_uid,
    now_rfc3339,
    spec_changed,
)
from kaito_sim.apiserver.resources import ResourceType
from kaito_sim.apiserver.validation import check_type_meta, validate_object

MAX_ATTEMPTS = 8
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


class _Retry(Exception):
    """The live object changed while admission webhooks ran; build the write again."""


def _comparable(obj: JsonObj) -> JsonObj:
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    meta["managedFields"] = [
        {k: v for k, v in entry.items() if k != "time"} for entry in meta.get("managedFields") or []
    ]
    return {**obj, "metadata": meta}


def list_key_fns(rt: ResourceType) -> tuple[managedfields.ListKeyFn, managedfields.SetListFn]:
    """How lists merge for server-side apply: CRD list-type annotations, or the built-in key table."""
    if rt.is_custom and rt.schema is not None:
        crd_schema = rt.schema

        def crd_keys(path: tuple[str, ...]) -> list[str] | None:
            if path == ("metadata", "ownerReferences"):
                return ["uid"]
            return schema.list_map_keys(crd_schema, path)

        def crd_set(path: tuple[str, ...]) -> bool:
            return path == ("metadata", "finalizers") or schema.list_type(crd_schema, path) == "set"

        return crd_keys, crd_set

    def builtin_keys(path: tuple[str, ...]) -> list[str] | None:
        key = merge_key(path)
        return None if key is None else [key]

    return builtin_keys, is_set_list


class Writer:
    """Runs writes against a `Cluster`."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    # ----- public operations

    async def create(self, rt: ResourceType, ns: str, body: Any, opts: WriteOptions) -> JsonObj:
        for _ in range(MAX_ATTEMPTS):
            try:
                return await self._create(rt, ns, copy.deepcopy(body), opts, managed=None)
            except _Retry:
                continue
        raise errors.ApiError(500, "InternalError", "too many concurrent writes; try again")

    async def update(
        self, rt: ResourceType, ns: str, name: str, body: Any, opts: WriteOptions, *, subresource: str = ""
    ) -> JsonObj:
        for _ in range(MAX_ATTEMPTS):
            try:
                return await self._update(rt, ns, name, copy.deepcopy(body), opts, subresource)
            except _Retry:
                continue
        raise errors.conflict(rt.plural, rt.group, name)

    async def patch(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        content_type: str,
        body: Any,
        opts: WriteOptions,
        *,
        subresource: str = "",
    ) -> tuple[JsonObj, bool]:
        """Apply a patch; returns the result and whether it created the object (server-side apply only)."""
        if content_type not in PATCH_TYPES:
            raise errors.unsupported_media_type(content_type, list(PATCH_TYPES))
        if content_type == "application/strategic-merge-patch+json" and rt.is_custom:
            raise errors.unsupported_media_type(content_type, [t for t in PATCH_TYPES if "strategic" not in t])
        for _ in range(MAX_ATTEMPTS):
            try:
                return await self._patch(rt, ns, name, content_type, body, opts, subresource)
            except _Retry:
                continue
        raise errors.conflict(rt.plural, rt.group, name)

    # ----- create

    async def _create(
        self, rt: ResourceType, ns: str, body: Any, opts: WriteOptions, *, managed: list[JsonObj] | None
    ) -> JsonObj:
        obj = check_type_meta(rt, body)
        if rt.crd_name is not None:
            crd = self.cluster.store.get(CRDS, "", rt.crd_name)
            if crd is not None and crd["metadata"].get("deletionTimestamp"):
                raise errors.method_not_allowed("create not allowed while custom resource definition is terminating")
        meta = obj["metadata"]
        self._place(rt, ns, meta)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generated_name(str(meta["generateName"]))
        for key in SERVER_OWNED_META:
            meta.pop(key, None)
        obj = await self._mutate(rt, "CREATE", obj, None, opts)
        meta = obj["metadata"]
        self._place(rt, ns, meta)
        for key in SERVER_OWNED_META:
            meta.pop(key, None)
        meta.update(uid=new_uid(), creationTimestamp=now_rfc3339(), generation=1)
        if rt.has("status"):
            obj.pop("status", None)
        validate_object(rt, obj, opts)
        if rt.namespaced:
            self.cluster.require_namespace(ns, creating=True)
        name = meta["name"]
        if self.cluster.find(rt, ns, name) is not None:
            raise errors.already_exists(rt.plural, rt.group, name)
        hooks.before_create(self.cluster, rt, obj)
        if managed is None:
            managed = self._record(rt, None, obj, opts, operation="Update")
        meta["managedFields"] = managed
        try:
            await self._admit(rt, "CREATE", obj, None, opts)
            if self.cluster.find(rt, ns, name) is not None:
                raise errors.already_exists(rt.plural, rt.group, name)
        except BaseException:
            hooks.abandon_create(self.cluster, rt, obj)
            raise
        if opts.dry_run:
            hooks.abandon_create(self.cluster, rt, obj)
        return self._commit(rt, obj, None, opts)

    def _place(self, rt: ResourceType, ns: str, meta: JsonObj) -> None:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace") not in (None, "", ns):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = ns

    # ----- update and patch

    async def _update(
        self, rt: ResourceType, ns: str, name: str, body: Any, opts: WriteOptions, subresource: str
    ) -> JsonObj:
        candidate = check_type_meta(rt, body)
        meta = candidate["metadata"]
        if meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        meta["name"] = name
        self._place(rt, ns, meta)
        old = self.cluster.get(rt, ns, name)
        rv = meta.get("resourceVersion")
        if not rv and rt.is_custom:
            raise errors.invalid(
                rt.kind,
                rt.group,
                name,
                [
                    errors.cause(
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update",
                        "metadata.resourceVersion",
                    )
                ],
            )
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name)
        self._check_identity(rt, old, candidate)
        return await self._finish(rt, old, candidate, opts, subresource, managed=None, patching=False)

    async def _patch(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        content_type: str,
        body: Any,
        opts: WriteOptions,
        subresource: str,
    ) -> tuple[JsonObj, bool]:
        old = self.cluster.find(rt, ns, name)
        if content_type == "application/apply-patch+yaml":
            return await self._apply(rt, ns, name, old, body, opts, subresource)
        if old is None:
            raise errors.not_found(rt.plural, rt.group, name)
        if content_type == "application/json-patch+json":
            candidate = patch.json_patch(old, body)
        elif not isinstance(body, dict):
            raise errors.bad_request("the patch body must be a JSON object")
        elif content_type == "application/merge-patch+json":
            candidate = patch.merge_patch(old, body)
        else:
            candidate = patch.strategic_merge_patch(old, body)
        if not isinstance(candidate, dict):
            raise errors.bad_request("the patched object must be a JSON object")
        candidate = check_type_meta(rt, candidate)
        self._check_identity(rt, old, candidate)
        result = await self._finish(rt, old, candidate, opts, subresource, managed=None, patching=True)
        return result, False

    async def _apply(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        old: JsonObj | None,
        body: Any,
        opts: WriteOptions,
        subresource: str,
    ) -> tuple[JsonObj, bool]:
        if not opts.field_manager:
            raise errors.bad_request("PATCH requests with server-side apply require a fieldManager")
        applied = check_type_meta(rt, body)
        if applied["metadata"].get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({applied['metadata'].get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        applied["metadata"]["name"] = name
        if old is None and subresource:
            raise errors.not_found(rt.plural, rt.group, name)
        keys, sets = list_key_fns(rt)
        merged = managedfields.apply(
            old,
            applied,
            manager=opts.field_manager,
            force=opts.force,
            api_version=rt.group_version,
            now=now_rfc3339(),
            list_keys=keys,
            set_list=sets,
        )
        if old is None:
            managed = merged["metadata"].get("managedFields") or []
            return await self._create(rt, ns, merged, opts, managed=managed), True
        merged = check_type_meta(rt, merged)
        self._check_identity(rt, old, merged)
        managed = merged["metadata"].get("managedFields") or []
        result = await self._finish(rt, old, merged, opts, subresource, managed=managed, patching=True)
        return result, False

    def _check_identity(self, rt: ResourceType, old: JsonObj, candidate: JsonObj) -> None:
        meta, old_meta = candidate["metadata"], old["metadata"]
        if meta.get("name") != old_meta["name"] or meta.get("namespace") != old_meta.get("namespace"):
            raise errors.bad_request("metadata.name and metadata.namespace cannot be changed by a patch")
        if meta.get("resourceVersion") not in (None, old_meta["resourceVersion"]):
            raise errors.conflict(rt.plural, rt.group, old_meta["name"])
        if meta.get("uid") not in (None, old_meta.get("uid")):
            raise errors.conflict(
                rt.plural,
                rt.group,
                old_meta["name"],
                f"Precondition failed: UID in precondition: {meta.get('uid')}, "
                f"UID in object meta: {old_meta.get('uid')}",
            )

    async def _finish(
        self,
        rt: ResourceType,
        old: JsonObj,
        candidate: JsonObj,
        opts: WriteOptions,
        subresource: str,
        *,
        managed: list[JsonObj] | None,
        patching: bool,
    ) -> JsonObj:
        candidate = await self._mutate(rt, "UPDATE", candidate, old, opts, subresource=subresource)
        self._check_identity(rt, old, candidate)
        candidate = self._carry_over(rt, old, candidate, subresource)
        validate_object(rt, candidate, opts, patching=patching)
        if causes := update_causes(rt, old, candidate):
            raise errors.invalid(rt.kind, rt.group, old["metadata"]["name"], causes)
        self._check_finalizers(rt, old, candidate)
        meta = candidate["metadata"]
        bump = spec_changed(old, candidate, status_is_subresource=rt.has("status"))
        meta["generation"] = int(old["metadata"].get("generation") or 1) + (1 if bump else 0)
        hooks.before_update(self.cluster, rt, old, candidate)
        if managed is not None:
            meta["managedFields"] = managed
        if _comparable(candidate) == _comparable(old):
            return old
        if managed is None:
            meta["managedFields"] = self._record(
                rt, old, candidate, opts, operation="Update", subresource=subresource or None
            )
        await self._admit(rt, "UPDATE", candidate, old, opts, subresource=subresource)
        return self._commit(rt, candidate, old, opts)

    def _carry_over(self, rt: ResourceType, old: JsonObj, candidate: JsonObj, subresource: str) -> JsonObj:
        """Keep server-owned metadata, and split spec from status between the two endpoints."""
        if subresource == "status":
            status = candidate.get("status")
            managed = candidate["metadata"].get("managedFields")
            candidate = copy.deepcopy(old)
            if status is None:
                candidate.pop("status", None)
            else:
                candidate["status"] = status
            if managed is not None:
                candidate["metadata"]["managedFields"] = managed
        elif rt.has("status"):
            if "status" in old:
                candidate["status"] = copy.deepcopy(old["status"])
            else:
                candidate.pop("status", None)
        meta, old_meta = candidate["metadata"], old["metadata"]
        for key in SERVER_OWNED_META:
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        return candidate

    def _check_finalizers(self, rt: ResourceType, old: JsonObj, candidate: JsonObj) -> None:
        if not old["metadata"].get("deletionTimestamp"):
            return
        before = set(old["metadata"].get("finalizers") or [])
        added = [f for f in candidate["metadata"].get("finalizers") or [] if f not in before]
        if added:
            raise errors.invalid(
                rt.kind,
                rt.group,
                old["metadata"]["name"],
                [
                    errors.cause(
                        "FieldValueForbidden",
                        f"Forbidden: no new finalizers can be added if the object is being deleted, found new "
                        f"finalizers {added!r}",
                        "metadata.finalizers",
                    )
                ],
            )

    # ----- shared steps

    def _record(
        self,
        rt: ResourceType,
        old: JsonObj | None,
        new: JsonObj,
        opts: WriteOptions,
        *,
        operation: str,
        subresource: str | None = None,
    ) -> list[JsonObj]:
        keys, sets = list_key_fns(rt)
        return managedfields.record_update(
            old,
            new,
            manager=opts.field_manager or "unknown",
            operation=operation,
            api_version=rt.group_version,
            now=now_rfc3339(),
            list_keys=keys,
            set_list=sets,
            subresource=subresource,
        )

    async def _mutate(
        self,
        rt: ResourceType,
        operation: str,
        obj: JsonObj,
        old: JsonObj | None,
        opts: WriteOptions,
        *,
        subresource: str = "",
    ) -> JsonObj:
        """Mutating admission; what the webhooks return is checked again as a request body is."""
        mutated = await self.cluster.mutate(rt, operation, obj=obj, old=old, opts=opts, subresource=subresource)
        if old is not None:
            meta = old["metadata"]
            live = self.cluster.find(rt, meta.get("namespace", ""), meta["name"])
            if live is None or live["metadata"]["resourceVersion"] != meta["resourceVersion"]:
                raise _Retry()
        return obj if mutated is obj else check_type_meta(rt, mutated)

    async def _admit(
        self,
        rt: ResourceType,
        operation: str,
        obj: JsonObj | None,
        old: JsonObj | None,
        opts: WriteOptions,
        *,
        subresource: str = "",
    ) -> None:
        target = obj if obj is not None else old
        assert target is not None
        meta = target["metadata"]
        ns = meta.get("namespace", "")
        snapshot = self.cluster.find(rt, ns, meta["name"]) if old is not None else None
        await self.cluster.admit(rt, operation, obj=obj, old=old, opts=opts, subresource=subresource)
        if old is not None:
            live = self.cluster.find(rt, ns, meta["name"])
            if (
                live is None
                or snapshot is None
                or (live["metadata"]["resourceVersion"] != snapshot["metadata"]["resourceVersion"])
            ):
                raise _Retry()

    def _commit(self, rt: ResourceType, obj: JsonObj, old: JsonObj | None, opts: WriteOptions) -> JsonObj:
        if opts.dry_run:
            return obj
        store = self.cluster.store
        obj["metadata"]["resourceVersion"] = str(store.next_rv())
        stored_old = store.get(rt.storage_key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        meta = obj["metadata"]
        # A terminating namespace goes only once the collector has emptied it.
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and rt.storage_key != ("", "namespaces"):
            store.remove(rt.storage_key, as_version(obj, rt.stored_api_version))
            hooks.after_remove(self.cluster, rt, obj)
            return obj
        store.put(rt.storage_key, as_version(obj, rt.stored_api_version), old=stored_old)
        hooks.after_write(self.cluster, rt, obj, created=old is None)
        return obj
