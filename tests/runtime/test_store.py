"""The informer store: keys, named indexes kept in step with writes, copies on read, tombstones on replace."""

from __future__ import annotations

import pytest

from kaito.runtime.objects import Obj
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


def test_reads_are_copies() -> None:
    store = Store()
    store.upsert(cm("ns", "a"))
    got = store.get("ns/a")
    assert got is not None
    got["data"]["x"] = "mutated"
    listed = store.list()
    listed[0]["metadata"]["name"] = "renamed"
    assert store.get("ns/a") == cm("ns", "a")


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
