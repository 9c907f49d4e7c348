"""Writing children only when they differ from what the cache holds, plus finalizer edits."""

from __future__ import annotations

from typing import Any

from kaito.controllers.kinds import ANNOTATION_DESIRED, FIELD_MANAGER, WORKSPACE
from kaito.runtime import errors
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.kinds import DEPLOYMENT, JOB, SERVICE, STATEFUL_SET, Kind
from kaito.runtime.objects import content_hash

_BY_KIND = {k.kind: k for k in (DEPLOYMENT, STATEFUL_SET, JOB, SERVICE)}


def kind_of(obj: dict[str, Any]) -> Kind:
    return _BY_KIND[obj["kind"]]


async def ensure(
    client: Client, cache: Cache, kind: Kind, desired: dict[str, Any], *, create_only: bool = False
) -> None:
    """Server-side apply `desired` unless the cached object already carries the same desired-state hash."""
    meta = desired["metadata"]
    digest = content_hash(desired, length=16)
    meta.setdefault("annotations", {})[ANNOTATION_DESIRED] = digest
    current = cache.find(kind, meta["name"], namespace=meta.get("namespace"))
    same = current is not None and (current["metadata"].get("annotations") or {}).get(ANNOTATION_DESIRED) == digest
    if current is not None and (create_only or same):
        return
    await client.apply(kind, desired, field_manager=FIELD_MANAGER, force=True)


async def add_finalizer(
    client: Client, obj: dict[str, Any], finalizer: str, kind: Kind | None = None
) -> dict[str, Any]:
    """Returns the object as patched, so the rest of the pass works on the version it made."""
    meta = obj["metadata"]
    finalizers = [*(meta.get("finalizers") or []), finalizer]
    patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
    return await client.patch(kind or WORKSPACE, meta["name"], patch, namespace=meta.get("namespace"))


async def remove_finalizer(client: Client, obj: dict[str, Any], finalizer: str, kind: Kind | None = None) -> None:
    meta = obj["metadata"]
    finalizers = [f for f in meta.get("finalizers") or [] if f != finalizer]
    patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
    await errors.ignore_not_found(client.patch(kind or WORKSPACE, meta["name"], patch, namespace=meta.get("namespace")))
