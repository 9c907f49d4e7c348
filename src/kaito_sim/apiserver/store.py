"""Object storage with one global resourceVersion, a bounded event history for watches, and owner indexes.

Everything runs on one asyncio loop, so a read-modify-write that does not await between its read
and its `put` is atomic; writers that must await (admission webhooks) re-check the stored
resourceVersion before committing.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

JsonObj = dict[str, Any]
StorageKey = tuple[str, str]  # (group, plural)
ObjectKey = tuple[str, str]  # (namespace, name)

DEFAULT_HISTORY = 10_000
CLOSE = "CLOSE"  # a queue sentinel, never sent to clients


@dataclass(frozen=True)
class WatchEvent:
    """One change, as watchers see it; `old` lets selector watches turn updates into ADDED/DELETED."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    storage_key: StorageKey
    obj: JsonObj
    old: JsonObj | None


class Subscription:
    """A watcher's queue of events for one storage key (all namespaces; the watcher filters)."""

    def __init__(self, store: Store, storage_key: StorageKey) -> None:
        self.store = store
        self.storage_key = storage_key
        self.queue: asyncio.Queue[WatchEvent] = asyncio.Queue()

    def close(self) -> None:
        self.store._subscriptions.get(self.storage_key, set()).discard(self)


class Store:
    """In-memory objects keyed by storage key and (namespace, name). Stored dicts are never mutated."""

    def __init__(self, *, history_size: int = DEFAULT_HISTORY) -> None:
        self._objects: dict[StorageKey, dict[ObjectKey, JsonObj]] = {}
        self._history: deque[WatchEvent] = deque(maxlen=max(1, history_size))
        self._subscriptions: dict[StorageKey, set[Subscription]] = {}
        self._dependents: dict[str, set[tuple[StorageKey, ObjectKey]]] = {}
        self._uids: dict[str, tuple[StorageKey, ObjectKey]] = {}
        self._terminating: set[tuple[StorageKey, ObjectKey]] = set()
        self.rv = 1
        self.compacted_rv = 0  # watches must start at or after this resourceVersion
        self.changed = asyncio.Event()  # set after every write; the garbage collector waits on it
        # Watch lines already encoded, by (resourceVersion, event type, apiVersion): each change is encoded once
        # however many watchers send it. Bounded: only the latest changes are still being fanned out.
        self.encoded: OrderedDict[tuple[int, str, str], bytes] = OrderedDict()

    def set_history_size(self, size: int) -> None:
        self._history = deque(self._history, maxlen=max(1, size))
        self._recompute_compacted()

    def _recompute_compacted(self) -> None:
        if self._history and len(self._history) == self._history.maxlen:
            self.compacted_rv = self._history[0].rv - 1

    # reads

    def get(self, key: StorageKey, ns: str, name: str) -> JsonObj | None:
        return self._objects.get(key, {}).get((ns, name))

    def items(self, key: StorageKey, ns: str | None = None) -> list[JsonObj]:
        """Objects in key order (namespace, name), like etcd's key-ordered ranges."""
        bucket = self._objects.get(key, {})
        keys = sorted(k for k in bucket if ns is None or k[0] == ns)
        return [bucket[k] for k in keys]

    def count(self, key: StorageKey) -> int:
        return len(self._objects.get(key, {}))

    def storage_keys(self) -> list[StorageKey]:
        return list(self._objects)

    def dependents(self, owner_uid: str) -> list[tuple[StorageKey, ObjectKey]]:
        return sorted(self._dependents.get(owner_uid, set()))

    def by_uid(self, uid: str) -> tuple[StorageKey, ObjectKey] | None:
        return self._uids.get(uid)

    def owner_uids(self) -> list[str]:
        """UIDs that some stored object names as an owner."""
        return list(self._dependents)

    def terminating(self) -> list[tuple[StorageKey, ObjectKey]]:
        """Objects with a deletionTimestamp that still wait on finalizers."""
        return sorted(self._terminating)

    def events_since(self, rv: int, key: StorageKey) -> Iterator[WatchEvent]:
        for event in self._history:
            if event.rv > rv and event.storage_key == key:
                yield event

    # writes

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, key: StorageKey, obj: JsonObj, *, old: JsonObj | None) -> None:
        """Store `obj` (its metadata.resourceVersion already set by the caller from `next_rv`)."""
        meta = obj["metadata"]
        okey = (meta.get("namespace", ""), meta["name"])
        if old is not None:
            self._unindex(key, okey, old)
        self._objects.setdefault(key, {})[okey] = obj
        self._index(key, okey, obj)
        self._record(WatchEvent(int(meta["resourceVersion"]), "MODIFIED" if old else "ADDED", key, obj, old))

    def remove(self, key: StorageKey, obj: JsonObj) -> None:
        """Remove the stored object; `obj` is its final state carrying the deletion's resourceVersion."""
        meta = obj["metadata"]
        okey = (meta.get("namespace", ""), meta["name"])
        old = self._objects.get(key, {}).pop(okey, None)
        if old is not None:
            self._unindex(key, okey, old)
        self._record(WatchEvent(int(meta["resourceVersion"]), "DELETED", key, obj, old))

    def _record(self, event: WatchEvent) -> None:
        self._history.append(event)
        self._recompute_compacted()
        for sub in list(self._subscriptions.get(event.storage_key, ())):
            sub.queue.put_nowait(event)
        self.changed.set()

    def close_subscriptions(self, key: StorageKey) -> None:
        """End every watch on `key` (its resource stopped being served), as a real server closes them."""
        for sub in list(self._subscriptions.get(key, ())):
            sub.queue.put_nowait(WatchEvent(self.rv, CLOSE, key, {}, None))

    @property
    def open_subscriptions(self) -> int:
        return sum(len(subs) for subs in self._subscriptions.values())

    def close_all_subscriptions(self) -> None:
        """End every open watch, as an API server restart or a load-balancer timeout would."""
        for key in list(self._subscriptions):
            self.close_subscriptions(key)

    def subscribe(self, key: StorageKey) -> Subscription:
        sub = Subscription(self, key)
        self._subscriptions.setdefault(key, set()).add(sub)
        return sub

    def _index(self, key: StorageKey, okey: ObjectKey, obj: JsonObj) -> None:
        meta = obj["metadata"]
        if meta.get("uid"):
            self._uids[meta["uid"]] = (key, okey)
        if meta.get("deletionTimestamp"):
            self._terminating.add((key, okey))
        for ref in obj["metadata"].get("ownerReferences") or ():
            self._dependents.setdefault(ref.get("uid", ""), set()).add((key, okey))

    def _unindex(self, key: StorageKey, okey: ObjectKey, obj: JsonObj) -> None:
        self._uids.pop(obj["metadata"].get("uid", ""), None)
        self._terminating.discard((key, okey))
        for ref in obj["metadata"].get("ownerReferences") or ():
            deps = self._dependents.get(ref.get("uid", ""))
            if deps is not None:
                deps.discard((key, okey))
                if not deps:
                    del self._dependents[ref.get("uid", "")]
