"""Which child Workspaces an InferenceSet creates and deletes in one pass: scaling and rolling replacement, pure.

Scaling down removes the least ready children first, the newest among equals. A template change replaces
children one at a time with one extra (surge): a new child is made, and an old one goes only once ready
capacity exceeds `replicas`; so ready capacity never drops below `replicas - 1` by our doing (it drops by one
only when a node count limit leaves no room for the extra child).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Child:
    name: str
    current: bool  # made from the set's current template
    ready: bool
    created: str  # creationTimestamp (RFC 3339 sorts as text); "" for one the cache has not shown yet
    nodes: int = 1  # the GPU nodes its plan takes (1 until planned)


@dataclass(frozen=True)
class Steps:
    create: int
    delete: tuple[str, ...]
    limited: bool = False  # the node count limit kept a child from being made


def removal_order(children: Sequence[Child]) -> list[Child]:
    """Least ready first, then newest first (an unseen child counts as the newest)."""
    newest_first = sorted(children, key=lambda c: (c.created or "~", c.name), reverse=True)
    return sorted(newest_first, key=lambda c: c.ready)


def plan(children: Sequence[Child], replicas: int, *, node_limit: int | None = None) -> Steps:
    """The creates and deletes that move `children` one step towards `replicas` current, ready children."""
    new = [c for c in children if c.current]
    old = [c for c in children if not c.current]
    extra_new = removal_order(new)[: max(0, len(new) - replicas)]
    delete = [c.name for c in extra_new]
    kept_new = [c for c in new if c not in extra_new]
    delete += [c.name for c in old if not c.ready]  # an old child that is not ready serves nothing
    ready_old = [c for c in old if c.ready]
    ready = len(ready_old) + sum(c.ready for c in kept_new)
    kept_old = list(ready_old)
    for child in removal_order(ready_old):
        if ready - 1 < replicas:
            break
        delete.append(child.name)
        kept_old.remove(child)
        ready -= 1
    unready_new = any(not c.ready for c in kept_new)
    room = replicas + (1 if kept_old and not unready_new else 0) - len(kept_new) - len(kept_old)
    create = max(0, min(replicas - len(kept_new), room))
    if node_limit is None:
        return Steps(create, tuple(delete))
    used = sum(c.nodes for c in [*kept_new, *kept_old])
    per_child = max((c.nodes for c in children), default=1)
    allowed = max(0, (node_limit - used) // per_child)
    if allowed >= create:
        return Steps(create, tuple(delete))
    if kept_old and not unready_new and allowed == 0 and len(kept_old) == len(ready_old):
        # No room for the extra child: one ready old child makes way for its replacement instead.
        delete.append(removal_order(kept_old)[0].name)
    return Steps(allowed, tuple(delete), limited=True)
