"""Merge patch, JSON patch and strategic merge patch as the simulated apiserver applies them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.apiserver.patch import json_patch, merge_patch, strategic_merge_patch

# ---------------------------------------------------------------------------------------------------------
# RFC 7386


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        pytest.param({"a": "b"}, {"a": "c"}, {"a": "c"}, id="replace-member"),
        pytest.param({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}, id="add-member"),
        pytest.param({"a": "b"}, {"a": None}, {}, id="null-deletes"),
        pytest.param({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}, id="null-deletes-one"),
        pytest.param({"a": ["b"]}, {"a": "c"}, {"a": "c"}, id="list-to-scalar"),
        pytest.param({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}, id="scalar-to-list"),
        pytest.param({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}, id="nested"),
        pytest.param({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}, id="list-replaced-whole"),
        pytest.param(["a", "b"], ["c", "d"], ["c", "d"], id="list-target-and-patch"),
        pytest.param({"a": "b"}, ["c"], ["c"], id="list-patch"),
        pytest.param({"a": "foo"}, None, None, id="null-patch"),
        pytest.param({"a": "foo"}, "bar", "bar", id="scalar-patch"),
        pytest.param({"e": None}, {"a": 1}, {"e": None, "a": 1}, id="null-in-target-kept"),
        pytest.param([1, 2], {"a": "b", "c": None}, {"a": "b"}, id="object-patch-on-list"),
        pytest.param({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}, id="nested-null-on-missing"),
    ],
)
def test_merge_patch_rfc7386_examples(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_does_not_mutate_or_alias() -> None:
    target: JsonObj = {"spec": {"a": {"x": 1}, "b": [1]}, "keep": {"deep": [{"k": "v"}]}}
    patch: JsonObj = {"spec": {"a": {"y": 2}, "b": None, "c": {"z": [3]}}}
    before_target, before_patch = copy.deepcopy(target), copy.deepcopy(patch)
    result = merge_patch(target, patch)
    assert result == {"spec": {"a": {"x": 1, "y": 2}, "c": {"z": [3]}}, "keep": {"deep": [{"k": "v"}]}}
    result["keep"]["deep"][0]["k"] = "changed"
    result["spec"]["c"]["z"].append(4)
    assert target == before_target
    assert patch == before_patch


# ---------------------------------------------------------------------------------------------------------
# RFC 6902


@pytest.mark.parametrize(
    ("target", "ops", "expected"),
    [
        pytest.param(
            {"foo": "bar"},
            [{"op": "add", "path": "/baz", "value": "qux"}],
            {"foo": "bar", "baz": "qux"},
            id="add-member",
        ),
        pytest.param(
            {"foo": ["bar", "baz"]},
            [{"op": "add", "path": "/foo/1", "value": "qux"}],
            {"foo": ["bar", "qux", "baz"]},
            id="add-array-element",
        ),
        pytest.param(
            {"foo": ["bar"]},
            [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
            {"foo": ["bar", ["abc", "def"]]},
            id="add-append-dash",
        ),
        pytest.param(
            {"foo": ["bar"]},
            [{"op": "add", "path": "/foo/1", "value": "x"}],
            {"foo": ["bar", "x"]},
            id="add-at-end-index",
        ),
        pytest.param(
            {"foo": "bar"},
            [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
            {"foo": "bar", "child": {"grandchild": {}}},
            id="add-nested-member",
        ),
        pytest.param(
            {"foo": "bar"},
            [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
            {"foo": "bar", "baz": "qux"},
            id="ignores-unknown-fields",
        ),
        pytest.param({"foo": 1}, [{"op": "add", "path": "/foo", "value": None}], {"foo": None}, id="add-null-value"),
        pytest.param(
            {"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}, id="remove-member"
        ),
        pytest.param(
            {"foo": ["bar", "qux", "baz"]},
            [{"op": "remove", "path": "/foo/1"}],
            {"foo": ["bar", "baz"]},
            id="remove-array-element",
        ),
        pytest.param(
            {"baz": "qux", "foo": "bar"},
            [{"op": "replace", "path": "/baz", "value": "boo"}],
            {"baz": "boo", "foo": "bar"},
            id="replace",
        ),
        pytest.param(
            {"a": [1, 2]}, [{"op": "replace", "path": "/a/0", "value": 9}], {"a": [9, 2]}, id="replace-array-element"
        ),
        pytest.param({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}, id="replace-root"),
        pytest.param(
            {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
            [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
            {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
            id="move-value",
        ),
        pytest.param(
            {"foo": ["all", "grass", "cows", "eat"]},
            [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
            {"foo": ["all", "cows", "eat", "grass"]},
            id="move-array-element",
        ),
        pytest.param({"a": 1}, [{"op": "move", "from": "/a", "path": "/a"}], {"a": 1}, id="move-to-self"),
        pytest.param(
            {"a": {"b": [1]}},
            [{"op": "copy", "from": "/a", "path": "/c"}],
            {"a": {"b": [1]}, "c": {"b": [1]}},
            id="copy",
        ),
        pytest.param(
            {"baz": "qux", "foo": ["a", 2, "c"]},
            [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2.0}],
            {"baz": "qux", "foo": ["a", 2, "c"]},
            id="test-success",
        ),
        pytest.param(
            {"/": 9, "~1": 10},
            [{"op": "test", "path": "/~01", "value": 10}, {"op": "replace", "path": "/~1", "value": 1}],
            {"/": 1, "~1": 10},
            id="tilde-escapes",
        ),
        pytest.param(
            {"metadata": {"annotations": {}}},
            [{"op": "add", "path": "/metadata/annotations/example.com~1x", "value": "y"}],
            {"metadata": {"annotations": {"example.com/x": "y"}}},
            id="slash-in-key",
        ),
        pytest.param({"a": 1}, [], {"a": 1}, id="empty-list"),
    ],
)
def test_json_patch_operations(target: JsonObj, ops: list[JsonObj], expected: JsonObj) -> None:
    before = copy.deepcopy(target)
    assert json_patch(target, ops) == expected
    assert target == before


@pytest.mark.parametrize(
    ("ops", "fragment"),
    [
        pytest.param({"op": "add", "path": "/a", "value": 1}, "cannot unmarshal object", id="object-body"),
        pytest.param("nope", "cannot unmarshal string", id="string-body"),
        pytest.param(None, "cannot unmarshal null", id="null-body"),
        pytest.param(["add"], "must be a JSON object", id="op-not-object"),
        pytest.param([{"op": "frob", "path": "/a"}], "Unexpected kind: frob", id="unknown-op"),
        pytest.param([{"path": "/a", "value": 1}], "Unexpected kind: None", id="missing-op"),
        pytest.param([{"op": "add", "value": 1}], "'path'", id="missing-path"),
        pytest.param([{"op": "replace", "path": "/a"}], "'value'", id="missing-value"),
        pytest.param([{"op": "copy", "path": "/b"}], "'from'", id="missing-from"),
        pytest.param([{"op": "add", "path": "a", "value": 1}], "JSON pointer", id="bad-pointer"),
    ],
)
def test_json_patch_malformed_is_400(ops: Any, fragment: str) -> None:
    with pytest.raises(ApiError) as caught:
        json_patch({"a": 1}, ops)
    assert (caught.value.code, caught.value.reason) == (400, "BadRequest")
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        pytest.param(
            [{"op": "replace", "path": "/spec/foo", "value": 1}],
            "jsonpatch replace operation does not apply: doc is missing path: /spec/foo",
            id="replace-missing",
        ),
        pytest.param(
            [{"op": "remove", "path": "/nope"}],
            "jsonpatch remove operation does not apply: doc is missing path: /nope",
            id="remove-missing",
        ),
        pytest.param(
            [{"op": "add", "path": "/missing/child", "value": 1}],
            "jsonpatch add operation does not apply: doc is missing path: /missing/child",
            id="add-missing-parent",
        ),
        pytest.param(
            [{"op": "add", "path": "/list/5", "value": 1}],
            "jsonpatch add operation does not apply: doc is missing path: /list/5",
            id="add-index-out-of-range",
        ),
        pytest.param(
            [{"op": "remove", "path": "/list/01"}],
            "jsonpatch remove operation does not apply: doc is missing path: /list/01",
            id="leading-zero-index",
        ),
        pytest.param(
            [{"op": "remove", "path": "/list/-"}],
            "jsonpatch remove operation does not apply: doc is missing path: /list/-",
            id="remove-dash",
        ),
        pytest.param(
            [{"op": "add", "path": "/spec/a/b", "value": 1}],
            "jsonpatch add operation does not apply: doc is missing path: /spec/a/b",
            id="add-under-scalar",
        ),
        pytest.param(
            [{"op": "move", "from": "/nope", "path": "/x"}],
            "jsonpatch move operation does not apply: doc is missing from path: /nope",
            id="move-missing-from",
        ),
        pytest.param(
            [{"op": "move", "from": "/spec", "path": "/spec/inner"}],
            "jsonpatch move operation does not apply: /spec/inner is a child of /spec",
            id="move-into-own-child",
        ),
        pytest.param(
            [{"op": "test", "path": "/spec/a", "value": "1"}],
            "jsonpatch test operation failed: testing value /spec/a",
            id="test-string-vs-number",
        ),
        pytest.param(
            [{"op": "test", "path": "/flag", "value": 1}],
            "jsonpatch test operation failed: testing value /flag",
            id="test-bool-vs-number",
        ),
        pytest.param(
            [{"op": "test", "path": "/nope", "value": 1}],
            "jsonpatch test operation does not apply: doc is missing path: /nope",
            id="test-missing",
        ),
        pytest.param(
            [{"op": "replace", "path": "", "value": [1]}], "jsonpatch result is not a JSON object", id="root-not-object"
        ),
        pytest.param(
            [{"op": "remove", "path": ""}],
            "jsonpatch remove operation does not apply: doc is missing path: ",
            id="remove-root",
        ),
    ],
)
def test_json_patch_unappliable_is_422(ops: list[JsonObj], message: str) -> None:
    target: JsonObj = {"spec": {"a": 1}, "list": [0], "flag": True}
    before = copy.deepcopy(target)
    with pytest.raises(ApiError) as caught:
        json_patch(target, ops)
    assert (caught.value.code, caught.value.reason, caught.value.message) == (422, "Invalid", message)
    assert target == before


def test_json_patch_is_atomic_and_does_not_alias_values() -> None:
    target: JsonObj = {"a": {"b": 1}}
    value: JsonObj = {"deep": [1]}
    result = json_patch(target, [{"op": "add", "path": "/v", "value": value}])
    result["v"]["deep"].append(2)
    result["a"]["b"] = 5
    assert value == {"deep": [1]}
    assert target == {"a": {"b": 1}}
    with pytest.raises(ApiError):
        json_patch(target, [{"op": "add", "path": "/a/c", "value": 2}, {"op": "remove", "path": "/zzz"}])
    assert target == {"a": {"b": 1}}


def test_json_patch_kubectl_ssa_migration_body() -> None:
    live: JsonObj = {"metadata": {"name": "ws", "resourceVersion": "7", "managedFields": [{"manager": "old"}]}}
    ops = [
        {"op": "replace", "path": "/metadata/managedFields", "value": [{"manager": "kubectl", "operation": "Apply"}]},
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"},
    ]
    result = json_patch(live, ops)
    assert result["metadata"]["managedFields"] == [{"manager": "kubectl", "operation": "Apply"}]


# ---------------------------------------------------------------------------------------------------------
# Strategic merge patch


def _deployment() -> JsonObj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default", "finalizers": ["a.example/x"], "labels": {"app": "d"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "d"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "nginx:1",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "args": ["--one", "--two"],
                        }
                    ],
                    "volumes": [{"name": "v1", "emptyDir": {}}, {"name": "v2", "emptyDir": {}}],
                },
            },
        },
    }


def _container(obj: JsonObj, index: int = 0) -> JsonObj:
    container: JsonObj = obj["spec"]["template"]["spec"]["containers"][index]
    return container


def _pod_spec_patch(pod_spec: JsonObj) -> JsonObj:
    return {"spec": {"template": {"spec": pod_spec}}}


def _has_directive(value: Any) -> bool:
    if isinstance(value, dict):
        return any(str(k).startswith("$") or _has_directive(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_directive(item) for item in value)
    return False


def test_smp_observed_kubectl_body_keeps_ports_and_changes_image() -> None:
    live = _deployment()
    before = copy.deepcopy(live)
    patch: JsonObj = {
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "c"}],
                    "containers": [{"image": "nginx:2", "name": "c"}],
                }
            },
        }
    }
    result = strategic_merge_patch(live, patch)
    assert result["spec"]["replicas"] == 2
    container = _container(result)
    assert container["image"] == "nginx:2"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert not _has_directive(result)
    assert live == before


@pytest.mark.parametrize(
    ("pod_spec", "expected_containers"),
    [
        pytest.param(
            {"containers": [{"name": "c", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}]},
            [{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
            id="env-merge-by-name",
        ),
        pytest.param(
            {"containers": [{"name": "c", "env": [{"name": "A", "$patch": "delete"}]}]},
            [{"name": "B", "value": "2"}],
            id="env-delete-directive",
        ),
        pytest.param(
            {"containers": [{"name": "c", "env": [{"name": "B", "value": None, "valueFrom": {"x": 1}}]}]},
            [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"x": 1}}],
            id="env-null-deletes-field",
        ),
        pytest.param(
            {"containers": [{"name": "c", "env": [{"$patch": "replace"}, {"name": "Z", "value": "26"}]}]},
            [{"name": "Z", "value": "26"}],
            id="env-list-replace-directive",
        ),
        pytest.param(
            {"containers": [{"name": "c", "$setElementOrder/env": [{"name": "B"}, {"name": "A"}]}]},
            [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
            id="env-set-element-order-only",
        ),
    ],
)
def test_smp_container_env(pod_spec: JsonObj, expected_containers: list[JsonObj]) -> None:
    result = strategic_merge_patch(_deployment(), _pod_spec_patch(pod_spec))
    assert _container(result)["env"] == expected_containers
    assert _container(result)["image"] == "nginx:1"
    assert not _has_directive(result)


@pytest.mark.parametrize(
    ("pod_spec", "expected_names"),
    [
        pytest.param({"containers": [{"name": "side", "image": "busybox"}]}, ["c", "side"], id="append-new"),
        pytest.param({"containers": [{"name": "c", "$patch": "delete"}]}, [], id="delete-item"),
        pytest.param({"containers": [{"name": "gone", "$patch": "delete"}]}, ["c"], id="delete-absent-item"),
        pytest.param(
            {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "c"}],
                "containers": [{"name": "side", "image": "busybox"}],
            },
            ["side", "c"],
            id="set-element-order-puts-new-first",
        ),
    ],
)
def test_smp_containers_by_name(pod_spec: JsonObj, expected_names: list[str]) -> None:
    result = strategic_merge_patch(_deployment(), _pod_spec_patch(pod_spec))
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == expected_names
    assert not _has_directive(result)


def test_smp_set_element_order_keeps_unlisted_items_after() -> None:
    live = _deployment()
    live["spec"]["template"]["spec"]["volumes"].append({"name": "v3", "emptyDir": {}})
    patch = _pod_spec_patch({"$setElementOrder/volumes": [{"name": "v3"}, {"name": "v1"}]})
    result = strategic_merge_patch(live, patch)
    assert [v["name"] for v in result["spec"]["template"]["spec"]["volumes"]] == ["v3", "v1", "v2"]


def test_smp_container_ports_merge_by_container_port() -> None:
    patch = _pod_spec_patch(
        {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 9090}]}]}
    )
    result = strategic_merge_patch(_deployment(), patch)
    assert _container(result)["ports"] == [
        {"containerPort": 80, "protocol": "TCP", "name": "http"},
        {"containerPort": 9090},
    ]


def test_smp_atomic_list_is_replaced_whole() -> None:
    result = strategic_merge_patch(_deployment(), _pod_spec_patch({"containers": [{"name": "c", "args": ["--x"]}]}))
    assert _container(result)["args"] == ["--x"]


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        pytest.param(
            {"metadata": {"finalizers": ["b.example/y", "a.example/x"]}},
            ["a.example/x", "b.example/y"],
            id="union-no-duplicates",
        ),
        pytest.param(
            {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example/x"]}}, [], id="delete-from-primitive-list"
        ),
        pytest.param(
            {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example/x"], "finalizers": ["c.example/z"]}},
            ["c.example/z"],
            id="delete-and-add",
        ),
        pytest.param(
            {
                "metadata": {
                    "$setElementOrder/finalizers": ["c.example/z", "a.example/x"],
                    "finalizers": ["c.example/z"],
                }
            },
            ["c.example/z", "a.example/x"],
            id="set-element-order-scalars",
        ),
        pytest.param({"metadata": {"finalizers": None}}, None, id="null-deletes-list"),
    ],
)
def test_smp_finalizers_set_list(patch: JsonObj, expected: list[str] | None) -> None:
    result = strategic_merge_patch(_deployment(), patch)
    assert result["metadata"].get("finalizers") == expected
    assert not _has_directive(result)


def test_smp_service_ports_merge_by_port() -> None:
    live: JsonObj = {
        "kind": "Service",
        "spec": {
            "selector": {"app": "d"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
            ],
        },
    }
    patch: JsonObj = {
        "spec": {
            "$setElementOrder/ports": [{"port": 80}, {"port": 9090}, {"port": 443}],
            "ports": [{"port": 80, "targetPort": 8081}, {"port": 443, "name": "https"}],
        }
    }
    result = strategic_merge_patch(live, patch)
    assert result["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 8081, "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
        {"port": 443, "name": "https"},
    ]
    assert result["spec"]["selector"] == {"app": "d"}


@pytest.mark.parametrize(
    ("strategy_patch", "expected"),
    [
        pytest.param({"$retainKeys": ["type"], "type": "Recreate"}, {"type": "Recreate"}, id="retain-clears-others"),
        pytest.param(
            {"$retainKeys": ["type", "rollingUpdate"], "rollingUpdate": {"maxSurge": 2}},
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}},
            id="retain-all-merges",
        ),
        pytest.param({"$patch": "replace", "type": "Recreate"}, {"type": "Recreate"}, id="map-replace"),
        pytest.param(
            {"rollingUpdate": {"$patch": "replace", "maxSurge": 3}},
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3}},
            id="nested-map-replace",
        ),
        pytest.param({"rollingUpdate": {"$patch": "delete"}}, {"type": "RollingUpdate"}, id="map-delete"),
        pytest.param({"rollingUpdate": None}, {"type": "RollingUpdate"}, id="null-deletes-map"),
    ],
)
def test_smp_map_directives(strategy_patch: JsonObj, expected: JsonObj) -> None:
    result = strategic_merge_patch(_deployment(), {"spec": {"strategy": strategy_patch}})
    assert result["spec"]["strategy"] == expected
    assert result["spec"]["replicas"] == 1
    assert not _has_directive(result)


def test_smp_new_subtree_is_stripped_of_directives() -> None:
    patch: JsonObj = {
        "spec": {
            "template": {
                "spec": {
                    "initContainers": [
                        {
                            "name": "i",
                            "env": [{"name": "X", "$patch": "delete"}],
                            "$setElementOrder/env": [{"name": "X"}],
                        }
                    ]
                }
            },
            "extra": {"$patch": "replace", "a": {"b": None}},
        }
    }
    result = strategic_merge_patch(_deployment(), patch)
    assert result["spec"]["template"]["spec"]["initContainers"] == [{"name": "i", "env": []}]
    assert result["spec"]["extra"] == {"a": {}}
    assert not _has_directive(result)


def test_smp_root_directives() -> None:
    assert strategic_merge_patch(_deployment(), {"$patch": "delete"}) == {}
    assert strategic_merge_patch(_deployment(), {"$patch": "replace", "kind": "X"}) == {"kind": "X"}


def test_smp_custom_schema_hooks() -> None:
    live: JsonObj = {"items": [{"id": 1, "v": "a"}], "tags": ["x"]}
    patch: JsonObj = {"items": [{"id": 1, "w": "b"}, {"id": 2}], "tags": ["y", "x"]}
    result = strategic_merge_patch(
        live, patch, key_for=lambda path: "id" if path == ("items",) else None, is_set=lambda path: path == ("tags",)
    )
    assert result == {"items": [{"id": 1, "v": "a", "w": "b"}, {"id": 2}], "tags": ["x", "y"]}


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        pytest.param(_pod_spec_patch({"containers": [{"image": "x"}]}), 400, id="missing-merge-key"),
        pytest.param(_pod_spec_patch({"containers": ["c"]}), 400, id="scalar-in-keyed-list"),
        pytest.param({"spec": {"$patch": "merge"}}, 400, id="unknown-directive"),
        pytest.param({"spec": {"strategy": {"$retainKeys": "type"}}}, 400, id="retain-keys-not-list"),
        pytest.param(
            {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, 422, id="retain-keys-mismatch"
        ),
        pytest.param({"metadata": {"$setElementOrder/finalizers": "x"}}, 400, id="order-not-list"),
        pytest.param({"metadata": {"$deleteFromPrimitiveList/finalizers": "x"}}, 400, id="delete-not-list"),
    ],
)
def test_smp_errors(patch: JsonObj, code: int) -> None:
    with pytest.raises(ApiError) as caught:
        strategic_merge_patch(_deployment(), patch)
    assert caught.value.code == code


def test_smp_rejects_non_objects() -> None:
    with pytest.raises(ApiError) as caught:
        strategic_merge_patch(_deployment(), [])  # type: ignore[arg-type]
    assert caught.value.code == 400


# ---------------------------------------------------------------------------------------------------------
# Properties

_KEYS = st.text(alphabet="abcxyz/~", min_size=1, max_size=3)
_SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=3)
_JSON: st.SearchStrategy[Any] = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3), max_leaves=12
)
_JSON_NO_NULL: st.SearchStrategy[Any] = st.recursive(
    _SCALARS.filter(lambda v: v is not None),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=12,
)
_OBJECTS = st.dictionaries(_KEYS, _JSON, max_size=4)


def _create_merge_patch(source: Any, target: Any) -> Any:
    """A merge patch that turns `source` into `target` (which holds no nulls)."""
    if not (isinstance(source, dict) and isinstance(target, dict)):
        return target
    patch: JsonObj = {key: None for key in source if key not in target}
    for key, value in target.items():
        if key not in source:
            patch[key] = value
        elif source[key] != value:
            patch[key] = _create_merge_patch(source[key], value)
    return patch


@given(source=_JSON, target=_JSON_NO_NULL)
def test_merge_patch_applies_created_diff(source: Any, target: Any) -> None:
    before = copy.deepcopy(source)
    assert merge_patch(source, _create_merge_patch(source, target)) == target
    assert source == before


@given(doc=_OBJECTS, key=_KEYS, value=_JSON)
def test_json_patch_add_then_remove_round_trips_without_mutation(doc: JsonObj, key: str, value: Any) -> None:
    before = copy.deepcopy(doc)
    pointer = "/" + key.replace("~", "~0").replace("/", "~1")
    added = json_patch(doc, [{"op": "add", "path": pointer, "value": value}])
    assert added[key] == value
    assert doc == before
    if key not in doc:
        assert json_patch(added, [{"op": "remove", "path": pointer}]) == doc


@given(source=_OBJECTS, patch=st.dictionaries(_KEYS, _JSON, max_size=4))
def test_smp_without_list_schema_is_a_merge_patch(source: JsonObj, patch: JsonObj) -> None:
    before_source, before_patch = copy.deepcopy(source), copy.deepcopy(patch)
    result = strategic_merge_patch(source, patch, key_for=lambda _path: None, is_set=lambda _path: False)
    assert result == merge_patch(source, patch)
    assert (source, patch) == (before_source, before_patch)
