"""Turning informer events into reconcile keys: three stock mappers and the stock predicates."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kaito.runtime.informer import Event, EventType
from kaito.runtime.kinds import Kind
from kaito.runtime.objects import Obj, ObjectKey, generation, labels_of, owner_references

Mapper = Callable[[Event], Iterable[ObjectKey]]
Predicate = Callable[[Event], bool]


def enqueue_object(event: Event) -> list[ObjectKey]:
    """The object itself (what `for_` uses)."""
    return [ObjectKey.of(event.obj)]


def enqueue_owner(owner: Kind, *, controller_only: bool = True) -> Mapper:
    """The owner of kind `owner` named in ownerReferences (what `owns` uses); old and new owners on update."""

    def mapper(event: Event) -> list[ObjectKey]:
        keys: dict[ObjectKey, None] = {}
        for obj in (event.old, event.obj):
            if obj is not None:
                for key in _owners(obj, owner, controller_only=controller_only):
                    keys[key] = None
        return list(keys)

    return mapper


def enqueue_mapped(func: Callable[[Obj], Iterable[ObjectKey]]) -> Mapper:
    """Whatever `func` says the object relates to (e.g. nodes -> the workspace named in a label)."""

    def mapper(event: Event) -> list[ObjectKey]:
        keys: dict[ObjectKey, None] = {}
        for obj in (event.old, event.obj):
            if obj is not None:
                for key in func(obj):
                    keys[key] = None
        return list(keys)

    return mapper


def _owners(obj: Obj, owner: Kind, *, controller_only: bool) -> Iterable[ObjectKey]:
    namespace = str((obj.get("metadata") or {}).get("namespace") or "") if owner.namespaced else ""
    for ref in owner_references(obj):
        if controller_only and not ref.get("controller"):
            continue
        group = str(ref.get("apiVersion") or "").rpartition("/")[0]
        if ref.get("kind") == owner.kind and group == owner.group:
            yield ObjectKey(namespace, str(ref.get("name") or ""))


# ----- predicates: True lets the event through; adds and deletes always pass the "changed" ones


def generation_changed(event: Event) -> bool:
    """Spec changes only: status-only updates (which do not bump generation) are dropped."""
    if event.type is not EventType.MODIFIED or event.old is None:
        return True
    return generation(event.old) != generation(event.obj)


def any_of(*predicates: Predicate) -> Predicate:
    """Passes when at least one predicate passes."""
    return lambda event: any(predicate(event) for predicate in predicates)


def has_label(key: str, value: str | None = None) -> Predicate:
    """Only objects carrying label `key` (with `value`, when given) before or after the change."""

    def carries(obj: Obj | None) -> bool:
        have = labels_of(obj) if obj is not None else {}
        return key in have and (value is None or have[key] == value)

    def predicate(event: Event) -> bool:
        return carries(event.obj) or carries(event.old)

    return predicate
