"""Catching code that mutates a shared cached object, which would silently corrupt every other reader's view.

Cache reads hand out the stored objects themselves (see `store`), so the contract is "never mutate
what you read; copy first". The detector makes that contract checkable, as client-go's
KUBE_CACHE_MUTATION_DETECTOR does: it keeps a private copy of every object the store takes and
compares the two when the object is replaced or removed and whenever `sweep` is called (the
controller sweeps after each reconcile). It costs a deep copy per stored object, so it is off unless
`KAITO_CACHE_MUTATION_DETECTOR` is set (the test suite sets it) or a cache is built with it.

Every mutation found is logged and kept in `detected()` for the whole process, because the code that
notices it (an informer task, a controller worker) cannot fail the test that caused it; the suite's
fixture fails any test that leaves a detection behind.
"""

from __future__ import annotations

import logging
import os

from kaito.runtime.objects import Obj, deep_copy

log = logging.getLogger(__name__)

ENV = "KAITO_CACHE_MUTATION_DETECTOR"

_detected: list[CacheMutated] = []


class CacheMutated(AssertionError):
    """Someone changed an object while it sat in the cache."""

    def __init__(self, store: str, key: str) -> None:
        super().__init__(f"cached {store} {key!r} was mutated by a reader; copy objects read from the cache first")
        self.store = store
        self.key = key


def enabled_by_env() -> bool:
    return os.environ.get(ENV, "").lower() in ("1", "true", "yes")


def detected() -> list[CacheMutated]:
    """Every mutation found in this process so far, oldest first."""
    return list(_detected)


def clear() -> list[CacheMutated]:
    """Forget the detections so far and return them."""
    found = list(_detected)
    _detected.clear()
    return found


class MutationDetector:
    """One store's private copies of what it holds, compared with the shared objects on demand."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._copies: dict[str, Obj] = {}

    def stored(self, key: str, obj: Obj) -> None:
        self._copies[key] = deep_copy(obj)

    def removed(self, key: str, obj: Obj) -> CacheMutated | None:
        """Check the object leaving the store (replaced or deleted) one last time."""
        found = self._check(key, obj)
        self._copies.pop(key, None)
        return found

    def sweep(self, items: dict[str, Obj]) -> list[CacheMutated]:
        """Check every object; each mutation is reported once (the mutated state becomes the reference)."""
        return [found for key, obj in items.items() if (found := self._check(key, obj)) is not None]

    def _check(self, key: str, obj: Obj) -> CacheMutated | None:
        copy = self._copies.get(key)
        if copy is None or copy == obj:
            return None
        self._copies[key] = deep_copy(obj)
        found = CacheMutated(self.name, key)
        log.error("%s", found)
        _detected.append(found)
        return found
