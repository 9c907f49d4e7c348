"""The InferenceSet's scaling and rolling replacement, pure: which children go first, and the surge invariant."""

from __future__ import annotations

import pytest

from kaito.controllers.inferenceset_plan import Child, Steps, plan, removal_order


def child(name: str, *, current: bool = True, ready: bool = True, created: str = "", nodes: int = 1) -> Child:
    return Child(name, current=current, ready=ready, created=created or f"2026-01-01T00:00:0{name[-1]}Z", nodes=nodes)


def test_scaling_up_creates_the_missing_children() -> None:
    assert plan([child("a1")], 3) == Steps(create=2, delete=())


def test_scaling_down_removes_the_least_ready_then_the_newest() -> None:
    children = [child("a1"), child("a2"), child("a3", ready=False), child("a4")]
    assert plan(children, 2).delete == ("a3", "a4")
    assert [c.name for c in removal_order(children)] == ["a3", "a4", "a2", "a1"]


def test_to_zero_removes_every_child() -> None:
    assert set(plan([child("a1"), child("a2", ready=False)], 0).delete) == {"a1", "a2"}


def test_a_template_change_surges_by_one_and_removes_an_old_child_only_for_a_ready_new_one() -> None:
    old = [child("o1", current=False), child("o2", current=False)]
    assert plan(old, 2) == Steps(create=1, delete=())
    assert plan([*old, child("n1", ready=False)], 2) == Steps(create=0, delete=())
    assert plan([*old, child("n1")], 2) == Steps(create=1, delete=("o2",))


def test_old_children_that_are_not_ready_go_at_once() -> None:
    children = [child("o1", current=False, ready=False), child("o2", current=False)]
    assert plan(children, 2) == Steps(create=2, delete=("o1",))  # its place, and the one extra


@pytest.mark.parametrize("replicas", [1, 2, 3, 5])
def test_a_replacement_never_leaves_fewer_than_replicas_minus_one_ready(replicas: int) -> None:
    """Play the replacement out: each round applies the plan, then one unready child becomes ready."""
    children = [child(f"o{i}", current=False) for i in range(replicas)]
    made = 0
    for _ in range(10 * replicas):
        steps = plan(children, replicas)
        children = [c for c in children if c.name not in steps.delete]
        assert sum(c.ready for c in children) >= replicas - 1
        assert len(children) + steps.create <= replicas + 1
        for _ in range(steps.create):
            made += 1
            children.append(child(f"n{made}", ready=False, created=f"2026-01-02T00:00:{made:02d}Z"))
        waiting = next((c for c in children if not c.ready), None)
        if waiting is not None:
            children = [Child(c.name, c.current, True, c.created) if c is waiting else c for c in children]
        if all(c.current and c.ready for c in children) and len(children) == replicas:
            break
    assert len(children) == replicas and all(c.current and c.ready for c in children)
    assert made == replicas, "one new child per old one"


def test_the_node_count_limit_caps_creation_and_says_so() -> None:
    steps = plan([child("a1", nodes=2)], 3, node_limit=4)
    assert steps == Steps(create=1, delete=(), limited=True)


def test_with_no_room_for_the_extra_child_one_old_child_makes_way() -> None:
    old = [child("o1", current=False), child("o2", current=False)]
    steps = plan(old, 2, node_limit=2)
    assert steps.create == 0 and steps.limited and len(steps.delete) == 1
