"""Server-side apply and managedFields tracking as kubectl and controllers observe them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaito_sim.apiserver import managedfields as mf
from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.apiserver.fieldsets import Path, path_string

CR_VERSION = "kaito.sh/v1beta1"
CONTAINERS = ("spec", "template", "spec", "containers")


def list_keys(path: tuple[str, ...]) -> list[str] | None:
    return ["name"] if path == CONTAINERS else None


def set_list(path: tuple[str, ...]) -> bool:
    return path == ("metadata", "finalizers")


def apply(
    live: JsonObj | None,
    body: JsonObj,
    manager: str = "kubectl",
    *,
    force: bool = False,
    now: str = "2025-01-01T00:00:01Z",
) -> JsonObj:
    return mf.apply(
        live,
        body,
        manager=manager,
        force=force,
        api_version=CR_VERSION,
        now=now,
        list_keys=list_keys,
        set_list=set_list,
    )


def update(
    old: JsonObj | None,
    new: JsonObj,
    manager: str,
    *,
    subresource: str | None = None,
    now: str = "2025-01-01T00:00:02Z",
) -> JsonObj:
    """Run record_update and store its result on a copy of `new`, as the server core does."""
    out = copy.deepcopy(new)
    out.setdefault("metadata", {})["managedFields"] = mf.record_update(
        old,
        new,
        manager=manager,
        operation="Update",
        api_version=CR_VERSION,
        now=now,
        list_keys=list_keys,
        set_list=set_list,
        subresource=subresource,
    )
    return out


def ws(spec: JsonObj | None = None, **meta: Any) -> JsonObj:
    return {
        "apiVersion": CR_VERSION,
        "kind": "Workspace",
        "metadata": {"name": "ws1", "namespace": "default", **meta},
        **({"spec": spec} if spec else {}),
    }


def owned(obj: JsonObj) -> dict[tuple[str, str], set[Path]]:
    """(manager, operation) -> owned paths, from the object's managedFields."""
    return {
        (e["manager"], e["operation"]): mf.from_fields_v1(e["fieldsV1"])
        for e in obj["metadata"].get("managedFields", [])
    }


def f(*names: str) -> Path:
    return tuple("f:" + n for n in names)


# ---------------------------------------------------------------------------------------------------------
# FieldsV1 encoding


def test_apply_create_records_apply_entry_in_the_real_format() -> None:
    body = ws(
        {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i", "args": ["a"]}]}}},
        labels={"app": "x"},
        finalizers=["kaito.sh/f"],
        uid="client-uid",
        resourceVersion="9",
    )
    obj = apply(None, body)
    assert "uid" not in obj["metadata"] and "resourceVersion" not in obj["metadata"]
    assert obj["spec"] == body["spec"]
    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": CR_VERSION,
            "time": "2025-01-01T00:00:01Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:finalizers": {".": {}, 'v:"kaito.sh/f"': {}}, "f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:template": {
                        "f:spec": {
                            "f:containers": {'k:{"name":"c"}': {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}}
                        }
                    },
                },
            },
        }
    ]


@pytest.mark.parametrize(
    ("paths", "fields_v1"),
    [
        pytest.param({f("spec", "replicas")}, {"f:spec": {"f:replicas": {}}}, id="leaf"),
        pytest.param(
            {f("metadata", "labels"), f("metadata", "labels", "app")},
            {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
            id="member-with-children",
        ),
        pytest.param(
            {("f:c", 'k:{"name":"a"}'), ("f:c", 'k:{"name":"a"}', "f:name")},
            {"f:c": {'k:{"name":"a"}': {".": {}, "f:name": {}}}},
            id="keyed-item",
        ),
        pytest.param({("f:fin", 'v:"x"')}, {"f:fin": {'v:"x"': {}}}, id="set-value"),
        pytest.param(set(), {}, id="empty"),
    ],
)
def test_fields_v1_encoding(paths: set[Path], fields_v1: JsonObj) -> None:
    assert mf.to_fields_v1(paths) == fields_v1
    assert mf.from_fields_v1(fields_v1) == paths


_ELEMENTS = st.sampled_from(
    ["f:spec", "f:a", "f:b.c/d", 'k:{"name":"c"}', 'k:{"port":80,"protocol":"TCP"}', 'v:"x"', "v:3", "i:0"]
)


@given(st.sets(st.lists(_ELEMENTS, min_size=1, max_size=5).map(tuple), max_size=12))
def test_fields_v1_round_trip(paths: set[Path]) -> None:
    encoded = mf.to_fields_v1(paths)
    assert mf.from_fields_v1(encoded) == paths
    assert mf.to_fields_v1(mf.from_fields_v1(encoded)) == encoded


def test_fieldset_of_skips_type_meta_identity_and_server_fields() -> None:
    obj = ws({"x": 1}, uid="u", resourceVersion="1", generation=1, creationTimestamp="t", managedFields=[])
    assert mf.fieldset_of(obj, list_keys, set_list) == {f("spec", "x")}
    assert mf.fieldset_of({"metadata": {"name": "n"}}, list_keys, set_list) == set()


# ---------------------------------------------------------------------------------------------------------
# server-side apply


def test_reapply_dropping_a_field_removes_it() -> None:
    first = apply(None, ws({"a": 1, "b": {"c": 2}}, labels={"x": "1", "y": "2"}))
    second = apply(first, ws({"a": 1}, labels={"x": "1"}))
    assert second["spec"] == {"a": 1}
    assert second["metadata"]["labels"] == {"x": "1"}
    assert owned(second)[("kubectl", "Apply")] == {
        f("spec", "a"),
        f("metadata", "labels"),
        f("metadata", "labels", "x"),
    }


@pytest.mark.parametrize(
    ("other_write", "expected_spec"),
    [
        pytest.param("apply", {"a": 1, "b": 2}, id="co-applied-value"),
        pytest.param("update", {"a": 1, "b": 3}, id="updater-changed-it"),
    ],
)
def test_dropped_field_kept_when_another_manager_owns_it(other_write: str, expected_spec: JsonObj) -> None:
    first = apply(None, ws({"a": 1, "b": 2}))
    if other_write == "apply":
        shared = apply(first, ws({"b": 2}), "helm")
    else:
        changed = copy.deepcopy(first)
        changed["spec"]["b"] = 3
        shared = update(first, changed, "controller")
    second = apply(shared, ws({"a": 1}))
    assert second["spec"] == expected_spec
    assert f("spec", "b") not in owned(second)[("kubectl", "Apply")]


def test_dropping_the_last_field_of_a_label_map_removes_the_map() -> None:
    first = apply(None, ws({"a": 1}, labels={"x": "1"}))
    second = apply(first, ws({"a": 1}))
    assert "labels" not in second["metadata"]


@pytest.mark.parametrize(
    ("live_spec", "applied_spec", "message", "fields"),
    [
        pytest.param(
            {"replicas": 1},
            {"replicas": 2},
            'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using kaito.sh/v1beta1: '
            ".spec.replicas",
            [".spec.replicas"],
            id="one",
        ),
        pytest.param(
            {"a": 1, "b": 1},
            {"a": 2, "b": 2},
            'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using kaito.sh/v1beta1:\n'
            "- .spec.a\n- .spec.b",
            [".spec.a", ".spec.b"],
            id="two",
        ),
        pytest.param(
            {"template": {"spec": {"containers": [{"name": "c", "image": "old"}]}}},
            {"template": {"spec": {"containers": [{"name": "c", "image": "new"}]}}},
            'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using kaito.sh/v1beta1: '
            '.spec.template.spec.containers[name="c"].image',
            ['.spec.template.spec.containers[name="c"].image'],
            id="keyed-item",
        ),
    ],
)
def test_conflict_without_force(live_spec: JsonObj, applied_spec: JsonObj, message: str, fields: list[str]) -> None:
    live = update(None, ws(live_spec), "kubectl-client-side-apply")
    before = copy.deepcopy(live)
    with pytest.raises(ApiError) as caught:
        apply(live, ws(applied_spec))
    err = caught.value
    assert (err.code, err.reason, err.message) == (409, "Conflict", message)
    assert err.details == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "kubectl-client-side-apply" using kaito.sh/v1beta1',
                "field": field,
            }
            for field in fields
        ]
    }
    assert live == before


def test_conflict_with_an_applier_names_no_version() -> None:
    live = apply(None, ws({"replicas": 1}), "helm")
    with pytest.raises(ApiError) as caught:
        apply(live, ws({"replicas": 2}))
    assert caught.value.message == 'Apply failed with 1 conflict: conflict with "helm": .spec.replicas'


def test_same_value_is_shared_not_a_conflict() -> None:
    live = update(None, ws({"replicas": 1, "other": 1}), "kubectl-client-side-apply")
    obj = apply(live, ws({"replicas": 1}))
    assert f("spec", "replicas") in owned(obj)[("kubectl", "Apply")]
    assert f("spec", "replicas") in owned(obj)[("kubectl-client-side-apply", "Update")]


def test_force_moves_ownership_and_drops_emptied_entries() -> None:
    live = update(None, ws({"replicas": 1}), "kubectl-client-side-apply")
    obj = apply(live, ws({"replicas": 2}), force=True)
    assert obj["spec"] == {"replicas": 2}
    assert owned(obj) == {("kubectl", "Apply"): {f("spec", "replicas")}}


def test_force_keeps_the_other_managers_remaining_fields() -> None:
    live = update(None, ws({"replicas": 1, "keep": True}), "kubectl-client-side-apply")
    obj = apply(live, ws({"replicas": 2}), force=True)
    assert owned(obj)[("kubectl-client-side-apply", "Update")] == {f("spec", "keep")}


def test_associative_list_merges_by_name() -> None:
    live = update(
        None,
        ws(
            {
                "template": {
                    "spec": {
                        "containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1", "args": ["x"]}]
                    }
                }
            }
        ),
        "creator",
    )
    obj = apply(
        live,
        ws({"template": {"spec": {"containers": [{"name": "c", "image": "c:1"}, {"name": "b", "image": "b:2"}]}}}),
        force=True,
    )
    assert obj["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "a:1"},
        {"name": "b", "image": "b:2", "args": ["x"]},
        {"name": "c", "image": "c:1"},
    ]
    item_b = (*f(*CONTAINERS), 'k:{"name":"b"}')
    mine = owned(obj)[("kubectl", "Apply")]
    assert {item_b, (*item_b, "f:image"), (*item_b, "f:name")} <= mine
    assert (*item_b, "f:args") in owned(obj)[("creator", "Update")]


def test_dropped_list_item_goes_but_an_owned_field_keeps_it_with_its_key() -> None:
    containers = [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]
    first = apply(None, ws({"template": {"spec": {"containers": containers}}}))
    changed = copy.deepcopy(first)
    changed["spec"]["template"]["spec"]["containers"][1]["image"] = "b:2"
    shared = update(first, changed, "controller")
    obj = apply(shared, ws({"template": {"spec": {"containers": []}}}))
    assert obj["spec"]["template"]["spec"]["containers"] == [{"name": "b", "image": "b:2"}]


def test_set_lists_merge_as_a_union() -> None:
    live = update(None, ws({"a": 1}, finalizers=["x", "y"]), "controller")
    obj = apply(live, ws(None, finalizers=["y", "z"]))
    assert obj["metadata"]["finalizers"] == ["x", "y", "z"]
    assert owned(obj)[("kubectl", "Apply")] == {
        f("metadata", "finalizers"),
        (*f("metadata", "finalizers"), 'v:"y"'),
        (*f("metadata", "finalizers"), 'v:"z"'),
    }


def test_atomic_lists_and_scalars_are_replaced() -> None:
    first = apply(None, ws({"args": ["a", "b"], "n": 1}))
    second = apply(first, ws({"args": ["c"], "n": 2}))
    assert second["spec"] == {"args": ["c"], "n": 2}
    assert owned(second)[("kubectl", "Apply")] == {f("spec", "args"), f("spec", "n")}


def test_apply_leaves_inputs_untouched_and_ignores_server_metadata() -> None:
    live = apply(None, ws({"a": 1}))
    live["metadata"].update(uid="u1", resourceVersion="5", generation=3)
    body = ws({"b": 2}, uid="u2", resourceVersion="1", generation=1, managedFields=[{"manager": "x"}])
    live_before, body_before = copy.deepcopy(live), copy.deepcopy(body)
    obj = apply(live, body)
    assert (live, body) == (live_before, body_before)
    assert {k: obj["metadata"][k] for k in ("uid", "resourceVersion", "generation")} == {
        "uid": "u1",
        "resourceVersion": "5",
        "generation": 3,
    }
    assert obj["spec"] == {"b": 2}
    obj["spec"]["b"] = 3
    assert body["spec"]["b"] == 2


def test_noop_reapply_keeps_the_entry_time() -> None:
    first = apply(None, ws({"a": 1}), now="2025-01-01T00:00:01Z")
    again = apply(first, ws({"a": 1}), now="2025-01-01T00:09:00Z")
    assert again == first
    changed = apply(first, ws({"a": 2}), now="2025-01-01T00:09:00Z")
    assert changed["metadata"]["managedFields"][0]["time"] == "2025-01-01T00:09:00Z"


# ---------------------------------------------------------------------------------------------------------
# update tracking


def test_update_after_apply_takes_the_changed_field() -> None:
    applied = apply(None, ws({"replicas": 1, "image": "a"}))
    changed = copy.deepcopy(applied)
    changed["spec"]["replicas"] = 5
    obj = update(applied, changed, "hpa")
    assert owned(obj) == {("kubectl", "Apply"): {f("spec", "image")}, ("hpa", "Update"): {f("spec", "replicas")}}
    assert [e["manager"] for e in obj["metadata"]["managedFields"]] == ["kubectl", "hpa"]


def test_update_removing_a_field_removes_it_from_every_set() -> None:
    applied = apply(None, ws({"only": 1}))
    changed = copy.deepcopy(applied)
    del changed["spec"]
    changed["metadata"]["labels"] = {"a": "b"}
    obj = update(applied, changed, "editor")
    assert owned(obj) == {("editor", "Update"): {f("metadata", "labels"), f("metadata", "labels", "a")}}


def test_update_merges_with_what_the_manager_already_owned() -> None:
    first = update(None, ws({"a": 1}), "controller", now="2025-01-01T00:00:01Z")
    second_body = copy.deepcopy(first)
    second_body["spec"]["b"] = 2
    second = update(first, second_body, "controller", now="2025-01-01T00:00:05Z")
    (entry,) = second["metadata"]["managedFields"]
    assert mf.from_fields_v1(entry["fieldsV1"]) == {f("spec", "a"), f("spec", "b")}
    assert entry["time"] == "2025-01-01T00:00:05Z"


def test_status_subresource_entry_carries_subresource() -> None:
    created = update(None, ws({"a": 1}), "kubectl-client-side-apply")
    with_status = copy.deepcopy(created)
    with_status["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    obj = update(created, with_status, "kaito-controller", subresource="status")
    (status_entry,) = [e for e in obj["metadata"]["managedFields"] if e["manager"] == "kaito-controller"]
    assert status_entry == {
        "manager": "kaito-controller",
        "operation": "Update",
        "apiVersion": CR_VERSION,
        "time": "2025-01-01T00:00:02Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:status": {"f:conditions": {}}},
        "subresource": "status",
    }


def test_client_supplied_managed_fields_are_kept_as_given() -> None:
    live = update(None, ws({"a": 1}), "kubectl-client-side-apply")
    migrated = [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": CR_VERSION,
            "time": "2025-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:a": {}}},
        }
    ]
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = migrated
    assert record(live, new) == migrated


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"manager": "x"}, id="not-a-list"),
        pytest.param(["x"], id="not-objects"),
        pytest.param([{"operation": "Apply"}], id="no-manager"),
        pytest.param([{"manager": 3}], id="manager-not-string"),
        pytest.param([{"manager": "m", "fieldsV1": []}], id="fieldsV1-not-object"),
    ],
)
def test_bad_client_managed_fields_are_rejected(value: Any) -> None:
    with pytest.raises(ApiError) as caught:
        mf.validate_managed_fields(value)
    assert (caught.value.code, caught.value.message) == (
        400,
        "metadata.managedFields must be a list of objects with a manager",
    )
    live = update(None, ws({"a": 1}), "creator")
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = value
    with pytest.raises(ApiError):
        record(live, new)


@pytest.mark.parametrize(
    ("supplied", "expected_managers"),
    [
        pytest.param(None, ["creator", "editor"], id="omitted-keeps-recorded"),
        pytest.param([], ["creator", "editor"], id="empty-list-keeps-recorded"),
        pytest.param([{}], [], id="single-empty-entry-resets"),
    ],
)
def test_special_client_values(supplied: Any, expected_managers: list[str]) -> None:
    live = update(None, ws({"a": 1}), "creator")
    new = copy.deepcopy(live)
    new["spec"]["b"] = 2
    if supplied is None:
        del new["metadata"]["managedFields"]
    else:
        new["metadata"]["managedFields"] = supplied
    result = mf.record_update(
        live,
        new,
        manager="editor",
        operation="Update",
        api_version=CR_VERSION,
        now="t",
        list_keys=list_keys,
        set_list=set_list,
    )
    assert [e["manager"] for e in result] == expected_managers


def record(old: JsonObj, new: JsonObj) -> list[JsonObj]:
    return mf.record_update(
        old,
        new,
        manager="kubectl",
        operation="Update",
        api_version=CR_VERSION,
        now="2025-01-01T00:00:09Z",
        list_keys=list_keys,
        set_list=set_list,
    )


# ---------------------------------------------------------------------------------------------------------
# the kubectl client-side to server-side migration (apiserver-contract §3.4)


def test_kubectl_migration_sequence_keeps_spec() -> None:
    last_applied = "kubectl.kubernetes.io/last-applied-configuration"
    manifest = ws({"instanceType": "Standard_NC24ads_A100_v4", "count": 1})
    csa_body = copy.deepcopy(manifest)
    csa_body["metadata"]["annotations"] = {last_applied: '{"old":true}\n'}
    live = update(None, csa_body, "kubectl-client-side-apply")

    live = apply(live, manifest)  # 1. the SSA patch: same values, so shared ownership and no conflict
    assert live["spec"] == manifest["spec"]

    annotation_only = ws(None, annotations={last_applied: '{"new":true}\n'})
    live = apply(live, annotation_only, "kubectl-last-applied", force=True)  # 2. must merge, not replace
    assert live["spec"] == manifest["spec"]
    assert live["metadata"]["annotations"] == {last_applied: '{"new":true}\n'}
    assert owned(live)[("kubectl-last-applied", "Apply")] == {
        f("metadata", "annotations"),
        f("metadata", "annotations", last_applied),
    }

    migrated = [e for e in live["metadata"]["managedFields"] if e["manager"] != "kubectl-client-side-apply"]
    patched = copy.deepcopy(live)
    patched["metadata"]["managedFields"] = migrated  # 3. kubectl's JSON patch of /metadata/managedFields
    live["metadata"]["managedFields"] = record(live, patched)
    assert live["metadata"]["managedFields"] == migrated

    live = apply(live, manifest)  # 4. the SSA patch again
    assert live["spec"] == manifest["spec"]
    assert {m for m, _ in owned(live)} == {"kubectl", "kubectl-last-applied"}


def test_path_string_forms() -> None:
    path = ("f:spec", 'k:{"port":80,"protocol":"TCP"}', "f:name", 'v:"x"')
    assert path_string(path) == '.spec[port=80,protocol="TCP"].name[="x"]'
