"""Children an InferenceSet created or deleted that the cache does not show yet, so a stale pass never repeats them.

A child is created with generateName, so a pass that ran before the cache showed the last create would make
another: the ledger remembers each create until the cache holds the child (and each delete until the cache
drops it or shows it terminating), for at most `CATCH_UP_S`.
"""

from __future__ import annotations

from typing import Any

from kaito.runtime.clock import Clock
from kaito.runtime.objects import ObjectKey

Obj = dict[str, Any]
CATCH_UP_S = 10.0  # how long a write of ours may take to come back through the watch


class Ledger:
    def __init__(self, *, clock: Clock) -> None:
        self.clock = clock
        self._created: dict[ObjectKey, dict[str, tuple[Obj, float]]] = {}
        self._deleted: dict[ObjectKey, dict[str, float]] = {}

    def created(self, key: ObjectKey, child: Obj) -> None:
        self._created.setdefault(key, {})[child["metadata"]["name"]] = (child, self.clock.now())

    def deleted(self, key: ObjectKey, name: str) -> None:
        self._deleted.setdefault(key, {})[name] = self.clock.now()

    def forget(self, key: ObjectKey) -> None:
        self._created.pop(key, None)
        self._deleted.pop(key, None)

    def children(self, key: ObjectKey, cached: list[Obj]) -> list[Obj]:
        """The set's live children: `cached` (not terminating) less our deletes, plus our creates not yet cached."""
        now = self.clock.now()
        names = {c["metadata"]["name"] for c in cached}
        created = {
            name: entry
            for name, entry in self._created.get(key, {}).items()
            if name not in names and now - entry[1] < CATCH_UP_S
        }
        deleted = {
            name: at for name, at in self._deleted.get(key, {}).items() if name in names and now - at < CATCH_UP_S
        }
        self._created[key], self._deleted[key] = created, deleted
        return [c for c in cached if c["metadata"]["name"] not in deleted] + [child for child, _ in created.values()]

    def pending_for(self, key: ObjectKey) -> float | None:
        """When to look again, while a remembered write stands in for the cache (None when none does)."""
        times = [at for _, at in self._created.get(key, {}).values()] + list(self._deleted.get(key, {}).values())
        return CATCH_UP_S - (self.clock.now() - min(times)) if times else None
