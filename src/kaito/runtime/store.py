"""The informer's local copy of one kind: objects keyed `namespace/name`, with named indexes, read as copies."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kaito.runtime.objects import Obj, deep_copy, key_of

IndexFunc = Callable[[Obj], Iterable[str]]

NAMESPACE_INDEX = "namespace"


def index_by_namespace(obj: Obj) -> list[str]:
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


@dataclass(frozen=True)
class Tombstone:
    """A delete the informer inferred on relist: it never saw the DELETED event, so `obj` may be stale."""

    key: str
    obj: Obj


class Store:
    """A keyed object store with indexes; readers get deep copies so nobody can mutate the cache by accident."""

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: index_by_namespace}
        self._indexes: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}
        for name, func in (indexers or {}).items():
            self.add_indexer(name, func)

    # ----- reads (copies)

    def get(self, key: str) -> Obj | None:
        obj = self._items.get(key)
        return deep_copy(obj) if obj is not None else None

    def list(self, *, namespace: str | None = None) -> builtins.list[Obj]:
        if namespace is None:
            return [deep_copy(obj) for obj in self._items.values()]
        return self.by_index(NAMESPACE_INDEX, namespace)

    def by_index(self, index: str, value: str) -> builtins.list[Obj]:
        keys = self._index(index).get(value, set())
        return [deep_copy(self._items[k]) for k in sorted(keys)]

    def index_keys(self, index: str, value: str) -> builtins.list[str]:
        return sorted(self._index(index).get(value, set()))

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def peek(self, key: str) -> Obj | None:
        """The cached object itself, not a copy: only for the informer, which never mutates it."""
        return self._items.get(key)

    def peek_all(self) -> builtins.list[Obj]:
        """The cached objects themselves (see `peek`)."""
        return list(self._items.values())

    # ----- writes (informer only)

    def add_indexer(self, name: str, func: IndexFunc) -> None:
        if name in self._indexers:
            raise ValueError(f"indexer {name!r} already exists")
        self._indexers[name] = func
        self._indexes[name] = {}
        for key, obj in self._items.items():
            self._index_one(name, key, obj)

    def upsert(self, obj: Obj) -> Obj | None:
        """Store `obj` (the store keeps it; callers hand over ownership) and return the previous version."""
        key = key_of(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name in self._indexers:
            self._index_one(name, key, obj)
        return old

    def delete(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace(self, objs: Iterable[Obj]) -> builtins.list[Tombstone]:
        """Swap in a fresh list; keys that vanished come back as tombstones."""
        fresh = {key_of(obj): obj for obj in objs}
        gone = [Tombstone(key, obj) for key, obj in self._items.items() if key not in fresh]
        self._items = {}
        self._indexes = {name: {} for name in self._indexers}
        for obj in fresh.values():
            self.upsert(obj)
        return gone

    def _index(self, name: str) -> dict[str, set[str]]:
        try:
            return self._indexes[name]
        except KeyError:
            raise KeyError(f"no indexer named {name!r}; known: {sorted(self._indexers)}") from None

    def _index_one(self, name: str, key: str, obj: Obj) -> None:
        for value in self._indexers[name](obj):
            self._indexes[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, func in self._indexers.items():
            index = self._indexes[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
