"""Writing children only when they differ from what the cache holds, and not again while it catches up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kaito.controllers.kinds import ANNOTATION_DESIRED, FIELD_MANAGER, WORKSPACE
from kaito.runtime import errors
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.clock import Clock
from kaito.runtime.kinds import DEPLOYMENT, JOB, SERVICE, STATEFUL_SET, Kind
from kaito.runtime.objects import content_hash, resource_version

_BY_KIND = {k.kind: k for k in (DEPLOYMENT, STATEFUL_SET, JOB, SERVICE)}


def kind_of(obj: dict[str, Any]) -> Kind:
    return _BY_KIND[obj["kind"]]


# How long a write of ours may take to come back through the watch. Within it, a pass that still sees the
# object as it was before our write (or not at all) trusts the write rather than repeating it.
CATCH_UP_S = 10.0


@dataclass(frozen=True)
class _Written:
    digest: str
    seen: str | None  # the cached resourceVersion when we wrote (None: not cached yet)
    at: float


class Applier:
    """Server-side apply of children, written only when they differ from what the cache holds.

    The cache lags our own writes by a watch round trip; under load a pass can run inside that gap and,
    seeing the old object (or none), would apply the same state again: a write that changes nothing. So
    the applier remembers what it wrote and over which cached version, and for `CATCH_UP_S` skips the
    same state over that same version. A skip asks for a look again when the window closes, in case the
    object changed under us (deleted, say) in a way the cache has not shown either.
    """

    def __init__(self, client: Client, cache: Cache, *, clock: Clock) -> None:
        self.client, self.cache, self.clock = client, cache, clock
        self._written: dict[tuple[str, str, str], _Written] = {}

    async def ensure(self, kind: Kind, desired: dict[str, Any], *, create_only: bool = False) -> float | None:
        """Apply `desired` unless the cached object carries the same desired-state hash; returns the seconds
        after which to look again when only our memory of a write in flight stood in for the cache."""
        meta = desired["metadata"]
        digest = content_hash(desired, length=16)
        meta.setdefault("annotations", {})[ANNOTATION_DESIRED] = digest
        namespace = str(meta.get("namespace") or "")
        current = self.cache.find(kind, meta["name"], namespace=namespace or None)
        same = current is not None and (current["metadata"].get("annotations") or {}).get(ANNOTATION_DESIRED) == digest
        key = (kind.plural, namespace, str(meta["name"]))
        if current is not None and (create_only or same):
            self._written.pop(key, None)
            return None
        seen = None if current is None else resource_version(current)
        now = self.clock.now()
        written = self._written.get(key)
        if written is not None and (written.digest, written.seen) == (digest, seen) and now - written.at < CATCH_UP_S:
            return written.at + CATCH_UP_S - now
        await self.client.apply(kind, desired, field_manager=FIELD_MANAGER, force=True)
        self._forget_stale(now)
        self._written[key] = _Written(digest, seen, now)
        return None

    def _forget_stale(self, now: float) -> None:
        if len(self._written) >= _PRUNE_AT:
            self._written = {k: w for k, w in self._written.items() if now - w.at < CATCH_UP_S}


_PRUNE_AT = 1024


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
