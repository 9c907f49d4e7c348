"""The shared cache: one informer per kind however many controllers watch it, and cached reads for reconcilers.

Reads return the cached objects themselves, shared with every other reader: never mutate them, copy
first (`objects.deep_copy`). See `store` for why, and `mutation` for how tests catch a mutation.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kaito.runtime import errors, mutation
from kaito.runtime.clock import REAL_CLOCK, Clock
from kaito.runtime.informer import Informer, Selectors, Transform
from kaito.runtime.kinds import Kind
from kaito.runtime.objects import Obj, ObjectKey, strip_managed_fields
from kaito.runtime.store import IndexFunc
from kaito.runtime.tasks import CrashRecorder, spawn

if TYPE_CHECKING:
    from kaito.runtime.client import Client

log = logging.getLogger(__name__)


class Cache:
    """Informers by kind, started together; reads come from memory, never from the API server."""

    def __init__(
        self,
        client: Client,
        *,
        clock: Clock = REAL_CLOCK,
        selectors: Mapping[Kind, Selectors] | None = None,
        default_namespace: str | None = None,
        crashes: CrashRecorder | None = None,
        relist_backoff: tuple[float, float] = (0.8, 30.0),
        detect_mutations: bool | None = None,
        transform: Transform | None = strip_managed_fields,
    ) -> None:
        """`selectors` bound what each kind's informer lists and watches (controller-runtime's `ByObject`).

        `transform` edits each object before it is cached; by default it drops `metadata.managedFields`, which
        no reader needs (about 40% of a workspace's cached bytes).

        `detect_mutations` keeps a private copy of each cached object to catch readers that mutate
        shared objects (see `mutation`); None follows the `KAITO_CACHE_MUTATION_DETECTOR` variable.
        """
        self.client = client
        self.clock = clock
        self._selectors = dict(selectors or {})
        self._default_namespace = default_namespace
        self._crashes = crashes
        self._relist_backoff = relist_backoff
        self._transform = transform
        self.detect_mutations = mutation.enabled_by_env() if detect_mutations is None else detect_mutations
        self._informers: dict[Kind, Informer] = {}
        self._group: asyncio.TaskGroup | None = None
        self._stop: asyncio.Event | None = None

    def informer(self, kind: Kind) -> Informer:
        """The one informer for `kind`, created (and started, if the cache runs) on first use."""
        informer = self._informers.get(kind)
        if informer is None:
            selectors = self._selectors.get(kind) or Selectors(
                namespace=self._default_namespace if kind.namespaced else None
            )
            informer = Informer(
                self.client,
                kind,
                selectors=selectors,
                clock=self.clock,
                relist_backoff=self._relist_backoff,
                detect_mutations=self.detect_mutations,
                transform=self._transform,
            )
            self._informers[kind] = informer
            if self._group is not None and self._stop is not None:
                self._start(informer)
        return informer

    @property
    def kinds(self) -> builtins.list[Kind]:
        return list(self._informers)

    def add_index(self, kind: Kind, name: str, func: IndexFunc) -> None:
        self.informer(kind).store.add_indexer(name, func)

    def add_label_index(self, kind: Kind, *keys: str) -> str:
        """Index `kind` by the values of label `keys`; `list(kind, labels=...)` uses it whenever it covers the
        selector. Adding the same index twice is a no-op, so each controller can ask for what it reads."""
        return self.informer(kind).store.add_label_index(*keys)

    async def run(self, stop: asyncio.Event) -> None:
        """Run every informer (and any added later) until `stop` is set."""
        async with asyncio.TaskGroup() as group:
            self._group, self._stop = group, stop
            for informer in list(self._informers.values()):
                self._start(informer)
            await stop.wait()
        self._group = None

    def _start(self, informer: Informer) -> None:
        assert self._group is not None and self._stop is not None
        spawn(
            self._group,
            f"informer-{informer.kind.plural}.{informer.kind.group}",
            informer.run(self._stop),
            self._crashes,
        )

    @property
    def synced(self) -> bool:
        return all(informer.has_synced for informer in self._informers.values())

    async def wait_for_sync(self, kinds: builtins.list[Kind] | None = None) -> None:
        """Return once every informer (or those of `kinds`) has completed its first list."""
        targets = [self.informer(kind) for kind in kinds] if kinds is not None else list(self._informers.values())
        await asyncio.gather(*(informer.wait_for_sync() for informer in targets))

    # ----- reads

    def get(self, kind: Kind, name: str, *, namespace: str | None = None) -> Obj:
        """The cached object (shared: do not mutate); raises `errors.NotFound` like the API would."""
        key = str(ObjectKey(namespace or "", name)) if kind.namespaced else name
        obj = self._synced_informer(kind).store.get(key)
        if obj is None:
            raise errors.NotFound(404, reason="NotFound", message=f'{kind.plural} "{name}" not found (in cache)')
        return obj

    def find(self, kind: Kind, name: str, *, namespace: str | None = None) -> Obj | None:
        """Like `get`, but None when absent."""
        try:
            return self.get(kind, name, namespace=namespace)
        except errors.NotFound:
            return None

    def list(
        self, kind: Kind, *, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> builtins.list[Obj]:
        """Cached objects (shared), optionally in one namespace and carrying all of `labels` (exact matches).

        A label index covering some of `labels` narrows the search first; otherwise the namespace index.
        """
        return self._synced_informer(kind).store.list(namespace=namespace, labels=labels)

    def by_index(self, kind: Kind, index: str, value: str) -> builtins.list[Obj]:
        return self._synced_informer(kind).store.by_index(index, value)

    @property
    def objects_visited(self) -> int:
        """How many cached objects reads have looked at so far, across kinds: what a read costs."""
        return sum(informer.store.visited for informer in self._informers.values())

    def check_mutations(self) -> None:
        """Raise `mutation.CacheMutated` when a reader mutated a cached object (a no-op unless detecting)."""
        if not self.detect_mutations:
            return
        found = [m for informer in self._informers.values() for m in informer.store.check_mutations()]
        if found:
            raise found[0]

    def _synced_informer(self, kind: Kind) -> Informer:
        informer = self.informer(kind)
        if not informer.has_synced:
            # Reading an unsynced store would report objects as missing; callers must wait_for_sync first.
            raise RuntimeError(f"cache for {kind} has not synced; call wait_for_sync first")
        return informer
