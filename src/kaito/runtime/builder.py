"""Fluent wiring of a controller onto a manager: `for_` the primary kind, `owns` children, `watches` anything else.

`Builder(mgr, "name").for_(KIND).owns(OTHER).complete(reconcile)`. The builder knows the manager; the
manager only takes the finished controller (`add_controller`), as in controller-runtime.
"""

from __future__ import annotations

from kaito.runtime.controller import Controller, Watch
from kaito.runtime.handler import Mapper, Predicate, enqueue_object, enqueue_owner
from kaito.runtime.kinds import Kind
from kaito.runtime.manager import Manager
from kaito.runtime.objects import ObjectKey
from kaito.runtime.ratelimit import RateLimiter
from kaito.runtime.reconcile import Reconciler


class Builder:
    """Collects watches and options, then `complete` creates the controller and adds it to the manager."""

    def __init__(self, manager: Manager, name: str) -> None:
        self.manager = manager
        self.name = name
        self._primary: Kind | None = None
        self._watches: list[Watch] = []
        self._max_concurrent = 1
        self._rate_limiter: RateLimiter[ObjectKey] | None = None

    def for_(self, kind: Kind, *predicates: Predicate) -> Builder:
        """The kind this controller reconciles: its events enqueue the object's own key."""
        if self._primary is not None:
            raise ValueError(f"controller {self.name}: for_ already set to {self._primary}")
        self._primary = kind
        self._watches.append(Watch(kind, enqueue_object, predicates))
        return self

    def owns(self, kind: Kind, *predicates: Predicate, controller_only: bool = True) -> Builder:
        """Objects this controller creates: their events enqueue the owning primary object."""
        if self._primary is None:
            raise ValueError(f"controller {self.name}: call for_ before owns")
        self._watches.append(Watch(kind, enqueue_owner(self._primary, controller_only=controller_only), predicates))
        return self

    def watches(self, kind: Kind, mapper: Mapper, *predicates: Predicate) -> Builder:
        """Any other kind, mapped to keys by `mapper` (see `handler.enqueue_mapped`)."""
        self._watches.append(Watch(kind, mapper, predicates))
        return self

    def with_options(
        self, *, max_concurrent_reconciles: int | None = None, rate_limiter: RateLimiter[ObjectKey] | None = None
    ) -> Builder:
        if max_concurrent_reconciles is not None:
            self._max_concurrent = max_concurrent_reconciles
        if rate_limiter is not None:
            self._rate_limiter = rate_limiter
        return self

    def complete(self, reconcile: Reconciler) -> Controller:
        if not self._watches:
            raise ValueError(f"controller {self.name}: nothing to watch; call for_ or watches")
        controller = Controller(
            self.name,
            reconcile,
            cache=self.manager.cache,
            watches=self._watches,
            max_concurrent_reconciles=self._max_concurrent,
            rate_limiter=self._rate_limiter,
            clock=self.manager.clock,
            metrics=self.manager.metrics,
        )
        self.manager.add_controller(controller)
        return controller
