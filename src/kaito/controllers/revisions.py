"""ControllerRevisions: a record of each spec a workspace's pods have run, and the revision number they carry."""

from __future__ import annotations

from typing import Any

from kaito.controllers.kinds import (
    ANNOTATION_REVISION,
    CONTROLLER_REVISION,
    FIELD_MANAGER,
    owner_reference,
)
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.objects import content_hash

KEEP = 10
LABEL = "workspace.kaito.io/name"


async def sync_revision(client: Client, cache: Cache, ws: dict[str, Any]) -> str:
    """Ensure a ControllerRevision for the current spec exists; returns its revision number as a string."""
    meta = ws["metadata"]
    spec = {key: ws.get(key) for key in ("resource", "inference", "tuning")}
    if isinstance(spec["inference"], dict) and "adapters" in spec["inference"]:
        # Adapters load at runtime from the engine ConfigMap: an edit of them is no new revision of the pods.
        spec["inference"] = {k: v for k, v in spec["inference"].items() if k != "adapters"}
    digest = content_hash(spec, length=5)
    name = f"{meta['name'][:56]}-{digest}"
    existing = cache.list(CONTROLLER_REVISION, namespace=meta["namespace"], labels={LABEL: meta["name"]})
    mine = next((r for r in existing if r["metadata"]["name"] == name), None)
    if mine is not None:
        return str(mine.get("revision", 1))
    revision = max((int(r.get("revision", 0)) for r in existing), default=0) + 1
    body = {
        "apiVersion": CONTROLLER_REVISION.api_version,
        "kind": CONTROLLER_REVISION.kind,
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {LABEL: meta["name"]},
            "annotations": {ANNOTATION_REVISION: str(revision)},
            "ownerReferences": [
                owner_reference(ws["apiVersion"], name=meta["name"], uid=meta["uid"], block_owner_deletion=False)
            ],
        },
        "data": spec,
        "revision": revision,
    }
    await client.apply(CONTROLLER_REVISION, body, field_manager=FIELD_MANAGER, force=True)
    for old in sorted(existing, key=lambda r: int(r.get("revision", 0)))[: max(0, len(existing) + 1 - KEEP)]:
        await client.delete(CONTROLLER_REVISION, old["metadata"]["name"], namespace=meta["namespace"])
    return str(revision)
