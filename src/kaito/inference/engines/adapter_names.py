"""Adapter names as clients say them, mapped to the engine's internal ones, so a replacement can switch atomically.

A replaced (or removed) internal adapter is retired: it is dropped as soon as no request is running on it, so requests
that started on the old weights finish on them.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator


class AdapterNames:
    def __init__(self, *, drop: Callable[[str], None]) -> None:
        """`drop(internal)` is called once for each retired internal name, when no request runs on it any more."""
        self._current: dict[str, str] = {}
        self._running: Counter[str] = Counter()
        self._retired: set[str] = set()
        self._drop = drop

    def public(self) -> list[str]:
        return list(self._current)

    def internal(self, name: str) -> str | None:
        return self._current.get(name)

    def publish(self, name: str, internal: str) -> None:
        """From now on `name` means `internal`; what it meant before is retired."""
        old = self._current.pop(name, None)
        self._current[name] = internal
        if old is not None and old != internal:
            self._retire(old)

    def remove(self, name: str) -> bool:
        """Stop serving `name`; False if it was not served."""
        old = self._current.pop(name, None)
        if old is None:
            return False
        self._retire(old)
        return True

    @contextlib.contextmanager
    def using(self, internal: str) -> Iterator[None]:
        """One request running on `internal` until the block ends."""
        self._running[internal] += 1
        try:
            yield
        finally:
            self._running[internal] -= 1
            if not self._running[internal]:
                del self._running[internal]
                if internal in self._retired:
                    self._retired.discard(internal)
                    self._drop(internal)

    def running(self, internal: str) -> int:
        return self._running[internal]

    def _retire(self, internal: str) -> None:
        if self._running[internal]:
            self._retired.add(internal)
        else:
            self._running.pop(internal, None)
            self._drop(internal)
