"""Which replica takes a request: least outstanding requests, with prefix affinity while load allows.

Requests that share a long prompt prefix go to the same replica, so vLLM's prefix cache serves the shared part
once. The affinity is rendezvous hashing (each replica scores hash(key, replica); the highest score wins), so a
replica that comes or goes moves only its own share of prefixes. A preferred replica is used only while its
outstanding requests are within `slack` of the least loaded replica's; beyond that the next replica in the
key's own rendezvous order is tried, and the least loaded one always qualifies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Replica:
    """A ready child Workspace and where its Service answers."""

    name: str
    url: str  # http://<clusterIP>:80


@dataclass
class Load:
    outstanding: int = 0
    sent: int = 0  # requests sent so far: breaks ties so equal loads take turns


@dataclass
class Router:
    """The ready replicas and their outstanding requests; `slack` bounds how much load affinity may add."""

    slack: int = 4
    _replicas: dict[str, Replica] = field(default_factory=dict)
    _load: dict[str, Load] = field(default_factory=dict)

    def set_replicas(self, replicas: Iterable[Replica]) -> tuple[list[str], list[str]]:
        """Replace the ready set; returns the names added and removed. In-flight counts of kept replicas stay."""
        fresh = {replica.name: replica for replica in replicas}
        added = [name for name in fresh if name not in self._replicas]
        removed = [name for name in self._replicas if name not in fresh]
        for name in removed:
            self._load.pop(name, None)
        for name in added:
            self._load[name] = Load()
        self._replicas = fresh
        return added, removed

    @property
    def empty(self) -> bool:
        return not self._replicas

    def has(self, name: str) -> bool:
        return name in self._replicas

    def outstanding(self, name: str) -> int:
        load = self._load.get(name)
        return load.outstanding if load else 0

    def choose(self, key: str | None, *, exclude: frozenset[str] = frozenset()) -> Replica | None:
        """The replica for a request with affinity `key` (None: no affinity), skipping `exclude`."""
        names = [name for name in self._replicas if name not in exclude]
        if not names:
            return None
        if key is not None:
            least = min(self._load[name].outstanding for name in names)
            for name in sorted(names, key=lambda n: _score(key, n), reverse=True):
                if self._load[name].outstanding <= least + self.slack:
                    return self._replicas[name]
        best = min(names, key=lambda n: (self._load[n].outstanding, self._load[n].sent, n))
        return self._replicas[best]

    def started(self, replica: Replica) -> None:
        load = self._load.get(replica.name)
        if load is not None:
            load.outstanding += 1
            load.sent += 1

    def finished(self, replica: Replica) -> None:
        load = self._load.get(replica.name)
        if load is not None and load.outstanding > 0:
            load.outstanding -= 1


def _score(key: str, name: str) -> bytes:
    return hashlib.blake2b(f"{name}\0{key}".encode(), digest_size=8).digest()
