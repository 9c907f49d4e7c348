"""The informer's local copy of one kind: objects keyed `namespace/name`, with named and label indexes, read shared.

Reads hand out the stored objects themselves, never copies: client-go's listers do the same under a
do-not-mutate contract, and copying was most of a reconcile's cost (a reconcile reads a few objects
but used to copy every object of the kind it filtered). A caller that wants to change what it read
copies it first (`objects.deep_copy`). Read-only views were the alternative, but building a
recursive `MappingProxyType` view of a 2.7 KB pod takes 36 us against 43 us for the deep copy (and
0.02 us to share it), and a view is not a `dict`, so every reader's types would change. The
contract is enforced in tests by `mutation.MutationDetector`.

A label index maps the values of a few label keys to object keys, so `list(labels=...)` with an
exact-match selector touches only the objects that can match; `visited` counts every object a read
looked at, the number that must not grow with objects a reader does not ask for.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kaito.runtime.mutation import CacheMutated, MutationDetector
from kaito.runtime.objects import Obj, key_of

IndexFunc = Callable[[Obj], Iterable[str]]

NAMESPACE_INDEX = "namespace"
_LABEL_INDEX_PREFIX = "labels:"


def index_by_namespace(obj: Obj) -> list[str]:
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


def label_index_name(keys: Iterable[str]) -> str:
    return _LABEL_INDEX_PREFIX + ",".join(keys)


def _label_values(keys: tuple[str, ...], labels: Mapping[str, str]) -> str | None:
    """The index value for `labels`: the values of all `keys` joined, or None when one is missing."""
    values = [labels.get(key) for key in keys]
    return None if any(value is None for value in values) else "\x00".join(str(v) for v in values)


def _labels(obj: Obj) -> Mapping[str, str]:
    labels: Mapping[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    return labels


def _matches(obj: Obj, namespace: str | None, labels: Mapping[str, str] | None) -> bool:
    if namespace is not None and str((obj.get("metadata") or {}).get("namespace") or "") != namespace:
        return False
    if not labels:
        return True
    have = _labels(obj)
    return all(have.get(key) == value for key, value in labels.items())


@dataclass(frozen=True)
class Tombstone:
    """A delete the informer inferred on relist: it never saw the DELETED event, so `obj` may be stale."""

    key: str
    obj: Obj


class Store:
    """A keyed object store with indexes; readers share the stored objects and must not mutate them."""

    def __init__(
        self, indexers: dict[str, IndexFunc] | None = None, *, detector: MutationDetector | None = None
    ) -> None:
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: index_by_namespace}
        self._indexes: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}
        self._label_indexes: dict[tuple[str, ...], str] = {}
        self._detector = detector
        self.visited = 0  # objects looked at by reads, for tests and benchmarks that count read cost
        for name, func in (indexers or {}).items():
            self.add_indexer(name, func)

    # ----- reads (shared: do not mutate)

    def get(self, key: str) -> Obj | None:
        obj = self._items.get(key)
        self.visited += obj is not None
        return obj

    def list(self, *, namespace: str | None = None, labels: Mapping[str, str] | None = None) -> builtins.list[Obj]:
        """Objects in `namespace` (all when None) carrying every label in `labels`, through an index when one fits."""
        keys = self._candidates(namespace, labels)
        candidates = self._items.values() if keys is None else (self._items[k] for k in keys)
        found = []
        for obj in candidates:
            self.visited += 1
            if _matches(obj, namespace, labels):
                found.append(obj)
        return found

    def by_index(self, index: str, value: str) -> builtins.list[Obj]:
        keys = self.index_keys(index, value)
        self.visited += len(keys)
        return [self._items[k] for k in keys]

    def index_keys(self, index: str, value: str) -> builtins.list[str]:
        return sorted(self._index(index).get(value, set()))

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def snapshot(self) -> dict[str, Obj]:
        """Every stored object by key, for the informer's own bookkeeping (not counted as reads)."""
        return dict(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def _candidates(self, namespace: str | None, labels: Mapping[str, str] | None) -> builtins.list[str] | None:
        """The keys worth looking at, narrowest index first; None means every object."""
        if labels:
            covering = [keys for keys in self._label_indexes if set(keys) <= labels.keys()]
            if covering:
                keys = max(covering, key=len)
                value = _label_values(keys, labels)
                assert value is not None  # every key of a covering index is in `labels`
                return self.index_keys(self._label_indexes[keys], value)
        if namespace is not None:
            return self.index_keys(NAMESPACE_INDEX, namespace)
        return None

    # ----- mutation detection

    def check_mutations(self) -> builtins.list[CacheMutated]:
        """Compare every stored object with its private copy (only when built with a detector)."""
        return self._detector.sweep(self._items) if self._detector is not None else []

    # ----- writes (informer only)

    def add_indexer(self, name: str, func: IndexFunc) -> None:
        if name in self._indexers:
            raise ValueError(f"indexer {name!r} already exists")
        self._indexers[name] = func
        self._indexes[name] = {}
        for key, obj in self._items.items():
            self._index_one(name, key, obj)

    def add_label_index(self, *keys: str) -> str:
        """Index by the values of label `keys` (objects lacking one are left out); adding it again is a no-op."""
        if not keys:
            raise ValueError("a label index needs at least one label key")
        if keys in self._label_indexes:
            return self._label_indexes[keys]
        name = label_index_name(keys)

        def values(obj: Obj) -> list[str]:
            value = _label_values(keys, _labels(obj))
            return [] if value is None else [value]

        self.add_indexer(name, values)
        self._label_indexes[keys] = name
        return name

    def upsert(self, obj: Obj) -> Obj | None:
        """Store `obj` (the store keeps it; callers hand over ownership) and return the previous version."""
        key = key_of(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
            if self._detector is not None:
                self._detector.removed(key, old)
        self._items[key] = obj
        for name in self._indexers:
            self._index_one(name, key, obj)
        if self._detector is not None:
            self._detector.stored(key, obj)
        return old

    def delete(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
            if self._detector is not None:
                self._detector.removed(key, old)
        return old

    def replace(self, objs: Iterable[Obj]) -> builtins.list[Tombstone]:
        """Swap in a fresh list; keys that vanished come back as tombstones."""
        fresh = {key_of(obj): obj for obj in objs}
        gone = [Tombstone(key, obj) for key, obj in self._items.items() if key not in fresh]
        for key in list(self._items):
            self.delete(key)
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
