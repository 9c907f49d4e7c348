"""The informer store: keys, named and label indexes kept in step with writes, shared reads, tombstones on replace."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kaito.runtime import mutation
from kaito.runtime.mutation import MutationDetector
from kaito.runtime.objects import Obj, deep_copy
from kaito.runtime.store import NAMESPACE_INDEX, Store


def cm(namespace: str, name: str, *, app: str = "", rv: str = "1") -> Obj:
    labels = {"app": app} if app else {}
    return {"metadata": {"namespace": namespace, "name": name, "labels": labels, "resourceVersion": rv}, "data": {}}


def by_app(obj: Obj) -> list[str]:
    app = obj["metadata"].get("labels", {}).get("app")
    return [app] if app else []


def test_keys_are_namespace_slash_name_and_cluster_scoped_plain() -> None:
    store = Store()
    store.upsert(cm("ns", "a"))
    store.upsert({"metadata": {"name": "node-1"}})
    assert sorted(store.keys()) == ["node-1", "ns/a"]
    assert store.get("ns/a") is not None
    assert store.get("a") is None


def names(objs: list[Obj]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_reads_share_the_stored_object() -> None:
    store = Store()
    stored = cm("ns", "a")
    store.upsert(stored)
    assert store.get("ns/a") is stored
    assert store.list()[0] is stored
    assert store.list(namespace="ns")[0] is stored


def test_detector_reports_a_mutated_read_once_and_a_copy_is_free_to_change() -> None:
    store = Store(detector=MutationDetector("configmaps"))
    store.upsert(cm("ns", "a"))
    store.upsert(cm("ns", "b"))
    copy = deep_copy(store.list()[0])
    copy["data"]["x"] = "mine"
    assert store.check_mutations() == []
    got = store.get("ns/b")
    assert got is not None
    got["data"]["x"] = "mutated"
    assert [m.key for m in store.check_mutations()] == ["ns/b"]
    assert store.check_mutations() == []  # reported once
    assert [(m.store, m.key) for m in mutation.clear()] == [("configmaps", "ns/b")]


@pytest.mark.parametrize(
    "leave",
    [
        pytest.param(lambda store: store.upsert(cm("ns", "a", rv="2")), id="replaced-by-watch"),
        pytest.param(lambda store: store.delete("ns/a"), id="deleted"),
        pytest.param(lambda store: store.replace([]), id="relisted-away"),
    ],
)
def test_detector_checks_an_object_as_it_leaves_the_store(leave: Callable[[Store], object]) -> None:
    store = Store(detector=MutationDetector("configmaps"))
    store.upsert(cm("ns", "a"))
    got = store.get("ns/a")
    assert got is not None
    got["metadata"]["labels"]["app"] = "mutated"
    leave(store)
    assert [m.key for m in mutation.clear()] == ["ns/a"]
    assert store.check_mutations() == []


def test_without_a_detector_nothing_is_checked() -> None:
    store = Store()
    store.upsert(cm("ns", "a"))
    got = store.get("ns/a")
    assert got is not None
    got["data"]["x"] = "mutated"
    assert store.check_mutations() == []


def test_label_index_answers_exact_selectors_and_counts_only_candidates() -> None:
    store = Store()
    for i in range(50):
        store.upsert(cm("ns", f"other-{i}", app=f"app-{i}"))
    store.upsert(cm("ns", "web-1", app="web"))
    store.upsert(cm("prod", "web-2", app="web"))
    assert store.add_label_index("app") == store.add_label_index("app")  # asking again is a no-op
    before = store.visited
    assert names(store.list(labels={"app": "web"})) == ["web-1", "web-2"]
    assert names(store.list(namespace="prod", labels={"app": "web"})) == ["web-2"]
    assert store.visited - before == 4  # two candidates per read, not the 52 objects


def test_label_index_covering_part_of_the_selector_narrows_then_filters() -> None:
    store = Store()
    a, b = cm("ns", "a", app="web"), cm("ns", "b", app="web")
    a["metadata"]["labels"]["tier"] = "gpu"
    store.upsert(a)
    store.upsert(b)
    store.add_label_index("app")
    assert names(store.list(labels={"app": "web", "tier": "gpu"})) == ["a"]
    assert names(store.list(labels={"tier": "gpu"})) == ["a"]  # no index covers it: scanned, still right


def test_composite_label_index_leaves_out_objects_missing_a_key_and_follows_relabels() -> None:
    store = Store()
    both = cm("ns", "both", app="web")
    both["metadata"]["labels"]["tier"] = "gpu"
    store.upsert(both)
    store.upsert(cm("ns", "app-only", app="web"))
    name = store.add_label_index("app", "tier")
    assert store.index_keys(name, "web\x00gpu") == ["ns/both"]
    assert sum(len(store.index_keys(name, v)) for v in ("web", "web\x00")) == 0
    relabelled = cm("ns", "both", app="db", rv="2")
    relabelled["metadata"]["labels"]["tier"] = "gpu"
    store.upsert(relabelled)
    assert store.list(labels={"app": "web", "tier": "gpu"}) == []
    assert names(store.list(labels={"app": "db", "tier": "gpu"})) == ["both"]


def test_a_label_index_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Store().add_label_index()


def test_index_follows_updates_and_deletes() -> None:
    store = Store({"app": by_app})
    store.upsert(cm("ns", "a", app="web"))
    store.upsert(cm("ns", "b", app="web"))
    store.upsert(cm("other", "c", app="db"))
    assert [o["metadata"]["name"] for o in store.by_index("app", "web")] == ["a", "b"]
    store.upsert(cm("ns", "b", app="db", rv="2"))
    assert store.index_keys("app", "web") == ["ns/a"]
    assert store.index_keys("app", "db") == ["ns/b", "other/c"]
    store.delete("ns/a")
    assert store.index_keys("app", "web") == []
    assert store.index_keys(NAMESPACE_INDEX, "ns") == ["ns/b"]


def test_indexer_added_late_indexes_existing_objects() -> None:
    store = Store()
    store.upsert(cm("ns", "a", app="web"))
    store.add_indexer("app", by_app)
    assert store.index_keys("app", "web") == ["ns/a"]
    with pytest.raises(ValueError, match="already exists"):
        store.add_indexer("app", by_app)


def test_unknown_index_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="namespace"):
        Store().by_index("nope", "x")


def test_list_by_namespace() -> None:
    store = Store()
    for ns, name in [("a", "1"), ("a", "2"), ("b", "3")]:
        store.upsert(cm(ns, name))
    assert [o["metadata"]["name"] for o in store.list(namespace="a")] == ["1", "2"]
    assert len(store.list()) == 3


def test_replace_returns_tombstones_for_vanished_keys_and_reindexes() -> None:
    store = Store({"app": by_app})
    store.upsert(cm("ns", "keep", app="web"))
    store.upsert(cm("ns", "gone", app="web", rv="7"))
    tombstones = store.replace([cm("ns", "keep", app="db", rv="9"), cm("ns", "new")])
    assert [(t.key, t.obj["metadata"]["resourceVersion"]) for t in tombstones] == [("ns/gone", "7")]
    assert sorted(store.keys()) == ["ns/keep", "ns/new"]
    assert store.index_keys("app", "web") == []
    assert store.index_keys("app", "db") == ["ns/keep"]
