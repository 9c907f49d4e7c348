"""The CRD structural-schema engine: defaulting, pruning, validation and list types of custom resources."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.schema import (
    apply_defaults,
    list_map_keys,
    list_type,
    prune,
    validate,
    validate_crd_schema,
)

INT_OR_STRING: JsonObj = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}

RESOURCE: JsonObj = {
    "type": "object",
    "required": ["instanceType"],
    "properties": {
        "count": {"type": "integer", "minimum": 1, "maximum": 8, "default": 1},
        "instanceType": {"type": "string", "pattern": "^[A-Za-z0-9_]+$", "minLength": 1, "maxLength": 32},
        "labelSelector": {
            "type": "object",
            "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
        },
        "preferredNodes": {
            "type": "array",
            "x-kubernetes-list-type": "set",
            "maxItems": 3,
            "items": {"type": "string", "minLength": 1, "maxLength": 8},
        },
    },
}

ADAPTERS: JsonObj = {
    "type": "array",
    "minItems": 1,
    "maxItems": 3,
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
    "items": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z]{1,6}$"},
            "strength": {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 1,
                "exclusiveMaximum": True,
            },
            "volumes": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["mountPath"],
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "required": ["mountPath"],
                    "properties": {"mountPath": {"type": "string", "enum": ["/a", "/b", "/c"]}},
                },
            },
        },
    },
}

INFERENCE: JsonObj = {
    "type": "object",
    "properties": {
        "preset": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": ["falcon-7b", "phi-3"]},
                "accessMode": {"type": "string", "enum": ["public", "private"], "default": "public"},
            },
        },
        "config": {"type": "string", "nullable": True},
        "template": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "adapters": ADAPTERS,
    },
}

PORTS: JsonObj = {
    "type": "array",
    "maxItems": 3,
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name", "protocol"],
    "items": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 6},
            "protocol": {"type": "string", "enum": ["TCP", "UDP"], "default": "TCP"},
            "port": INT_OR_STRING,
        },
    },
}

SPEC: JsonObj = {
    "type": "object",
    "required": ["resource"],
    "properties": {
        "resource": RESOURCE,
        "inference": INFERENCE,
        "ports": PORTS,
        "tuning": {
            "type": "object",
            "properties": {"epochs": {"type": "integer", "format": "int32", "minimum": 1, "default": 3}},
        },
        "extras": {
            "type": "object",
            "maxProperties": 2,
            "additionalProperties": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
        "pod": {
            "type": "object",
            "x-kubernetes-embedded-resource": True,
            "properties": {"spec": {"type": "object", "properties": {"nodeName": {"type": "string"}}}},
        },
    },
}

STATUS: JsonObj = {
    "type": "object",
    "properties": {
        "conditions": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "maxItems": 3,
            "items": {
                "type": "object",
                "required": ["type", "status"],
                "properties": {
                    "type": {"type": "string", "minLength": 1, "maxLength": 10},
                    "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                    "lastTransitionTime": {"type": "string", "format": "date-time"},
                },
            },
        },
        "workerNodes": {"type": "array", "x-kubernetes-list-type": "atomic", "items": {"type": "string"}},
        "plain": {"type": "array", "maxItems": 2, "items": {"type": "integer"}},
    },
}

WORKSPACE: JsonObj = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": SPEC,
        "status": STATUS,
    },
}


def _workspace() -> JsonObj:
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "ws1", "namespace": "default", "labels": {"a": "b"}},
        "spec": {
            "resource": {
                "instanceType": "Standard_NC12s_v3",
                "count": 2,
                "labelSelector": {"matchLabels": {"apps": "falcon"}},
                "preferredNodes": ["n1", "n2"],
            },
            "inference": {
                "preset": {"name": "falcon-7b"},
                "adapters": [{"name": "one", "strength": 0.5, "volumes": [{"mountPath": "/a"}]}],
                "template": {"spec": {"containers": [{"name": "c"}]}},
            },
            "ports": [{"name": "http", "port": 80}, {"name": "http", "protocol": "UDP", "port": "dns"}],
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"}],
        },
    }


_DELETE = object()


def _changed(path: tuple[str | int, ...], value: Any) -> JsonObj:
    """A valid workspace with the value at `path` replaced (or removed, for `_DELETE`)."""
    obj = _workspace()
    parent: Any = obj
    for step in path[:-1]:
        parent = parent[step]
    if value is _DELETE:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return obj


def _cause(reason: str, message: str, field: str) -> JsonObj:
    return {"reason": reason, "message": message, "field": field}


# ----------------------------------------------------------------------------------------------- validation
def test_valid_workspace_has_no_causes() -> None:
    assert validate(_workspace(), WORKSPACE) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        pytest.param(
            ("spec", "resource", "count"),
            "string",
            [
                _cause(
                    "FieldValueTypeInvalid",
                    'Invalid value: "string": spec.resource.count in body must be of type integer: "string"',
                    "spec.resource.count",
                )
            ],
            id="type-integer-got-string",
        ),
        pytest.param(
            ("spec", "resource", "count"),
            1.5,
            [
                _cause(
                    "FieldValueTypeInvalid",
                    'Invalid value: "number": spec.resource.count in body must be of type integer: "number"',
                    "spec.resource.count",
                )
            ],
            id="type-integer-got-float",
        ),
        pytest.param(
            ("spec", "resource", "count"),
            True,
            [
                _cause(
                    "FieldValueTypeInvalid",
                    'Invalid value: "boolean": spec.resource.count in body must be of type integer: "boolean"',
                    "spec.resource.count",
                )
            ],
            id="type-integer-got-bool",
        ),
        pytest.param(
            ("spec", "resource"),
            [],
            [
                _cause(
                    "FieldValueTypeInvalid",
                    'Invalid value: "array": spec.resource in body must be of type object: "array"',
                    "spec.resource",
                )
            ],
            id="type-object-got-array",
        ),
        pytest.param(
            ("spec", "resource", "instanceType"),
            None,
            [
                _cause(
                    "FieldValueTypeInvalid",
                    'Invalid value: "null": spec.resource.instanceType in body must be of type string: "null"',
                    "spec.resource.instanceType",
                )
            ],
            id="null-not-nullable",
        ),
        pytest.param(("spec", "inference", "config"), None, [], id="null-nullable"),
        pytest.param(
            ("spec", "resource", "instanceType"),
            _DELETE,
            [_cause("FieldValueRequired", "Required value", "spec.resource.instanceType")],
            id="required-leaf",
        ),
        pytest.param(
            ("spec", "resource"),
            _DELETE,
            [_cause("FieldValueRequired", "Required value", "spec.resource")],
            id="required-object",
        ),
        pytest.param(
            ("spec", "inference", "preset", "name"),
            "llama",
            [
                _cause(
                    "FieldValueNotSupported",
                    'Unsupported value: "llama": supported values: "falcon-7b", "phi-3"',
                    "spec.inference.preset.name",
                )
            ],
            id="enum",
        ),
        pytest.param(
            ("spec", "resource", "instanceType"),
            "bad-type!",
            [
                _cause(
                    "FieldValueInvalid",
                    "Invalid value: \"bad-type!\": spec.resource.instanceType in body should match '^[A-Za-z0-9_]+$'",
                    "spec.resource.instanceType",
                )
            ],
            id="pattern",
        ),
        pytest.param(
            ("spec", "resource", "instanceType"),
            "abc\n",
            [
                _cause(
                    "FieldValueInvalid",
                    "Invalid value: \"abc\\n\": spec.resource.instanceType in body should match '^[A-Za-z0-9_]+$'",
                    "spec.resource.instanceType",
                )
            ],
            id="pattern-dollar-is-end-of-text",
        ),
        pytest.param(
            ("spec", "resource", "count"),
            0,
            [
                _cause(
                    "FieldValueInvalid",
                    "Invalid value: 0: spec.resource.count in body should be greater than or equal to 1",
                    "spec.resource.count",
                )
            ],
            id="minimum",
        ),
        pytest.param(
            ("spec", "resource", "count"),
            9,
            [
                _cause(
                    "FieldValueInvalid",
                    "Invalid value: 9: spec.resource.count in body should be less than or equal to 8",
                    "spec.resource.count",
                )
            ],
            id="maximum",
        ),
        pytest.param(
            ("spec", "inference", "adapters", 0, "strength"),
            0,
            [
                _cause(
                    "FieldValueInvalid",
                    "Invalid value: 0: spec.inference.adapters[0].strength in body should be greater than 0",
                    "spec.inference.adapters[0].strength",
                )
            ],
            id="exclusive-minimum",
        ),
        pytest.param(
            ("spec", "inference", "adapters", 0, "strength"),
            1.0,
            [
                _cause(
                    "FieldValueInvalid",
                    "Invalid value: 1: spec.inference.adapters[0].strength in body should be less than 1",
                    "spec.inference.adapters[0].strength",
                )
            ],
            id="exclusive-maximum",
        ),
        pytest.param(
            ("spec", "resource", "instanceType"),
            "A" * 33,
            [
                _cause(
                    "FieldValueTooLong",
                    f'Invalid value: "{"A" * 33}": spec.resource.instanceType in body should be at most 32 chars long',
                    "spec.resource.instanceType",
                )
            ],
            id="max-length",
        ),
        pytest.param(
            ("spec", "resource", "instanceType"),
            "",
            [
                _cause(
                    "FieldValueInvalid",
                    'Invalid value: "": spec.resource.instanceType in body should be at least 1 chars long',
                    "spec.resource.instanceType",
                ),
                _cause(
                    "FieldValueInvalid",
                    "Invalid value: \"\": spec.resource.instanceType in body should match '^[A-Za-z0-9_]+$'",
                    "spec.resource.instanceType",
                ),
            ],
            id="min-length-and-pattern",
        ),
        pytest.param(
            ("spec", "resource", "preferredNodes"),
            ["a", "b", "c", "d"],
            [
                _cause(
                    "FieldValueTooMany",
                    "Too many: 4: must have at most 3 items",
                    "spec.resource.preferredNodes",
                )
            ],
            id="max-items",
        ),
        pytest.param(
            ("spec", "inference", "adapters"),
            [],
            [
                _cause(
                    "FieldValueInvalid",
                    "Invalid value: 0: spec.inference.adapters in body should have at least 1 items",
                    "spec.inference.adapters",
                )
            ],
            id="min-items",
        ),
        pytest.param(
            ("spec", "resource", "preferredNodes"),
            ["a", "b", "a"],
            [_cause("FieldValueDuplicate", 'Duplicate value: "a"', "spec.resource.preferredNodes[2]")],
            id="list-type-set-duplicate",
        ),
        pytest.param(
            ("spec", "inference", "adapters"),
            [{"name": "x"}, {"name": "x", "strength": 0.5}],
            [_cause("FieldValueDuplicate", 'Duplicate value: {"name":"x"}', "spec.inference.adapters[1]")],
            id="list-type-map-duplicate",
        ),
        pytest.param(
            ("spec", "ports"),
            [{"name": "a", "protocol": "TCP"}, {"name": "a", "protocol": "UDP"}, {"name": "a", "protocol": "TCP"}],
            [
                _cause(
                    "FieldValueDuplicate",
                    'Duplicate value: {"name":"a","protocol":"TCP"}',
                    "spec.ports[2]",
                )
            ],
            id="list-type-map-compound-key-duplicate",
        ),
        pytest.param(
            ("spec", "inference", "adapters"),
            [{"strength": 0.5}],
            [_cause("FieldValueRequired", "Required value", "spec.inference.adapters[0].name")],
            id="items-recurse",
        ),
        pytest.param(
            ("spec", "resource", "labelSelector", "matchLabels"),
            {"ok": "v", "bad": 1},
            [
                _cause(
                    "FieldValueTypeInvalid",
                    'Invalid value: "integer": spec.resource.labelSelector.matchLabels.bad in body '
                    'must be of type string: "integer"',
                    "spec.resource.labelSelector.matchLabels.bad",
                )
            ],
            id="additional-properties-schema",
        ),
        pytest.param(
            ("spec", "extras"),
            {"a": {}, "b": {}, "c": {}},
            [_cause("FieldValueTooMany", "Too many: 3: must have at most 2 items", "spec.extras")],
            id="max-properties",
        ),
        pytest.param(("spec", "ports", 0, "port"), "http", [], id="int-or-string-string"),
        pytest.param(("spec", "ports", 0, "port"), 8080, [], id="int-or-string-int"),
        pytest.param(
            ("spec", "ports", 0, "port"),
            False,
            [
                _cause(
                    "FieldValueTypeInvalid",
                    'Invalid value: "boolean": spec.ports[0].port in body must be of type integer,string: "boolean"',
                    "spec.ports[0].port",
                )
            ],
            id="int-or-string-bool",
        ),
        pytest.param(
            ("status", "conditions", 0, "lastTransitionTime"),
            "yesterday",
            [
                _cause(
                    "FieldValueTypeInvalid",
                    'Invalid value: "yesterday": status.conditions[0].lastTransitionTime in body '
                    'must be of type date-time: "yesterday"',
                    "status.conditions[0].lastTransitionTime",
                )
            ],
            id="format-date-time",
        ),
        pytest.param(
            ("spec", "tuning"),
            {"epochs": 2**31},
            [
                _cause(
                    "FieldValueTypeInvalid",
                    'Invalid value: 2147483648: spec.tuning.epochs in body must be of type int32: "2147483648"',
                    "spec.tuning.epochs",
                )
            ],
            id="format-int32",
        ),
        pytest.param(("metadata",), "not an object", [], id="root-metadata-skipped"),
        pytest.param(("spec", "unknown"), {"x": 1}, [], id="unknown-fields-are-pruned-not-rejected"),
    ],
)
def test_validate_rules(path: tuple[str | int, ...], value: Any, expected: list[JsonObj]) -> None:
    assert validate(_changed(path, value), WORKSPACE) == expected


def test_validate_reports_every_cause() -> None:
    obj = _changed(("spec", "resource", "count"), "many")
    del obj["spec"]["resource"]["instanceType"]
    fields = [c["field"] for c in validate(obj, WORKSPACE)]
    assert sorted(fields) == ["spec.resource.count", "spec.resource.instanceType"]


def _value_schema(**keywords: Any) -> JsonObj:
    return {"type": "object", "properties": {"v": keywords}}


@pytest.mark.parametrize(
    ("schema", "value", "messages"),
    [
        pytest.param(_value_schema(type="string", format="date-time"), "2024-02-29T23:59:59.5+01:00", [], id="dt-ok"),
        pytest.param(
            _value_schema(type="string", format="date-time"),
            "2023-02-30T00:00:00Z",
            ['Invalid value: "2023-02-30T00:00:00Z": v in body must be of type date-time: "2023-02-30T00:00:00Z"'],
            id="dt-bad-day",
        ),
        pytest.param(_value_schema(type="string", format="byte"), "aGVsbG8=", [], id="byte-ok"),
        pytest.param(
            _value_schema(type="string", format="byte"),
            "not base64!",
            ['Invalid value: "not base64!": v in body must be of type byte: "not base64!"'],
            id="byte-bad",
        ),
        pytest.param(
            _value_schema(type="string", format="uuid"), "0b7c9a3e-6f3e-4a55-9d0e-2b8e5b8f1c11", [], id="uuid-ok"
        ),
        pytest.param(
            _value_schema(type="string", format="uuid"),
            "1234",
            ['Invalid value: "1234": v in body must be of type uuid: "1234"'],
            id="uuid-bad",
        ),
        pytest.param(_value_schema(type="integer", format="int64"), 2**63 - 1, [], id="int64-ok"),
        pytest.param(
            _value_schema(type="integer", format="int64"),
            2**63,
            [f'Invalid value: {2**63}: v in body must be of type int64: "{2**63}"'],
            id="int64-overflow",
        ),
        pytest.param(_value_schema(type="string", format="hostname-ish"), "any", [], id="unknown-format-ignored"),
        pytest.param(_value_schema(type="number", minimum=0.5), 1, [], id="number-accepts-int"),
        pytest.param(
            _value_schema(type="integer", multipleOf=5),
            7,
            ["Invalid value: 7: v in body should be a multiple of 5"],
            id="multiple-of",
        ),
        pytest.param(
            _value_schema(type="array", uniqueItems=True, items={"type": "integer"}),
            [1, 2, 1],
            ["Duplicate value: 1"],
            id="unique-items",
        ),
        pytest.param(
            _value_schema(type="array", uniqueItems=True, items={}),
            [1, True, "1"],
            [],
            id="unique-items-distinguishes-json-types",
        ),
        pytest.param(
            _value_schema(type="object", minProperties=2, additionalProperties={"type": "string"}),
            {"a": "x"},
            ["Invalid value: 1: v in body should have at least 2 properties"],
            id="min-properties",
        ),
        pytest.param(
            _value_schema(type="object", properties={"a": {"type": "string"}}, additionalProperties=False),
            {"a": "x", "b": "y"},
            ["Forbidden: v.b in body is a forbidden property"],
            id="additional-properties-false",
        ),
        pytest.param(
            _value_schema(type="object", additionalProperties=True),
            {"anything": [1]},
            [],
            id="additional-properties-true",
        ),
        pytest.param(
            _value_schema(allOf=[{"minimum": 1}, {"maximum": 3}]),
            5,
            ["Invalid value: 5: v in body should be less than or equal to 3"],
            id="all-of",
        ),
        pytest.param(_value_schema(anyOf=[{"required": ["a"]}, {"required": ["b"]}]), {"b": 1}, [], id="any-of-ok"),
        pytest.param(
            _value_schema(anyOf=[{"required": ["a"]}, {"required": ["b"]}]),
            {"c": 1},
            ['Invalid value: {"c":1}: v in body must validate at least one schema (anyOf)'],
            id="any-of-none",
        ),
        pytest.param(
            _value_schema(oneOf=[{"required": ["a"]}, {"required": ["b"]}]),
            {"a": 1, "b": 2},
            ['Invalid value: {"a":1,"b":2}: v in body must validate one and only one schema (oneOf)'],
            id="one-of-both",
        ),
        pytest.param(_value_schema(oneOf=[{"required": ["a"]}, {"required": ["b"]}]), {"a": 1}, [], id="one-of-ok"),
        pytest.param(
            _value_schema(type="string", **{"not": {"enum": ["forbidden"]}}),
            "forbidden",
            ['Invalid value: "forbidden": v in body must not validate the schema (not)'],
            id="not",
        ),
        pytest.param(_value_schema(type="string", enum=["a", None], nullable=True), None, [], id="nullable-with-enum"),
        pytest.param(_value_schema(), None, [], id="untyped-accepts-null"),
        pytest.param(
            _value_schema(type="integer", enum=[1, 2]),
            3,
            ["Unsupported value: 3: supported values: 1, 2"],
            id="enum-numbers",
        ),
    ],
)
def test_value_keywords(schema: JsonObj, value: Any, messages: list[str]) -> None:
    assert [c["message"] for c in validate({"v": value}, schema)] == messages


# ----------------------------------------------------------------------------------------------- defaulting
@pytest.mark.parametrize(
    ("path", "value", "expect_path", "expected"),
    [
        pytest.param(("spec", "resource", "count"), _DELETE, ("spec", "resource", "count"), 1, id="leaf-default"),
        pytest.param(("spec", "resource", "count"), 5, ("spec", "resource", "count"), 5, id="present-kept"),
        pytest.param(("spec", "resource", "count"), None, ("spec", "resource", "count"), 1, id="null-replaced"),
        pytest.param(
            ("spec", "inference", "preset"),
            {},
            ("spec", "inference", "preset", "accessMode"),
            "public",
            id="parent-present-empty",
        ),
        pytest.param(("spec", "inference"), _DELETE, ("spec", "inference"), _DELETE, id="parent-absent-untouched"),
        pytest.param(("spec", "tuning"), _DELETE, ("spec", "tuning"), _DELETE, id="no-default-for-parent"),
        pytest.param(("spec", "tuning"), {}, ("spec", "tuning", "epochs"), 3, id="child-of-present-parent"),
        pytest.param(("spec", "ports", 0, "protocol"), _DELETE, ("spec", "ports", 0, "protocol"), "TCP", id="item"),
    ],
)
def test_defaults(path: tuple[str | int, ...], value: Any, expect_path: tuple[str | int, ...], expected: Any) -> None:
    obj = _changed(path, value)
    apply_defaults(obj, WORKSPACE)
    parent: Any = obj
    for step in expect_path[:-1]:
        parent = parent[step]
    if expected is _DELETE:
        assert expect_path[-1] not in parent
    else:
        assert parent[expect_path[-1]] == expected


def test_defaults_are_deep_copies_and_nested_defaults_apply() -> None:
    schema: JsonObj = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "opts": {
                        "type": "object",
                        "default": {"tags": ["a"]},
                        "properties": {
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "level": {"type": "integer", "default": 2},
                        },
                    },
                    "byName": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {"on": {"type": "boolean", "default": True}},
                        },
                    },
                },
            }
        },
    }
    first: JsonObj = {"spec": {"byName": {"x": {}, "y": {"on": False}}}}
    second: JsonObj = {"spec": {}}
    apply_defaults(first, schema)
    apply_defaults(second, schema)
    assert first["spec"]["opts"] == {"tags": ["a"], "level": 2}
    assert first["spec"]["byName"] == {"x": {"on": True}, "y": {"on": False}}
    first["spec"]["opts"]["tags"].append("b")
    assert second["spec"]["opts"]["tags"] == ["a"]
    assert schema["properties"]["spec"]["properties"]["opts"]["default"] == {"tags": ["a"]}


def test_defaults_skip_root_metadata_and_keep_nullable_null() -> None:
    schema: JsonObj = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object", "default": {"x": "y"}}}},
            "spec": {
                "type": "object",
                "properties": {"note": {"type": "string", "nullable": True, "default": "hi"}},
            },
        },
    }
    obj: JsonObj = {"metadata": {"name": "a"}, "spec": {"note": None}}
    apply_defaults(obj, schema)
    assert obj == {"metadata": {"name": "a"}, "spec": {"note": None}}


# ----------------------------------------------------------------------------------------------- pruning
def test_prune_removes_undeclared_fields_and_reports_paths() -> None:
    obj = _workspace()
    obj["extra"] = 1
    obj["metadata"]["unknownMeta"] = True
    obj["spec"]["foo"] = {"deep": 1}
    obj["spec"]["resource"]["bar"] = 2
    obj["spec"]["ports"][1]["extra"] = "x"
    obj["spec"]["extras"] = {"k": {"a": "kept", "b": "dropped"}}
    obj["status"]["bar"] = []
    removed = prune(obj, WORKSPACE)
    assert removed == [
        "spec.resource.bar",
        "spec.ports[1].extra",
        "spec.foo",
        "spec.extras.k.b",
        "status.bar",
        "extra",
    ]
    expected = _workspace()
    expected["metadata"]["unknownMeta"] = True
    expected["spec"]["extras"] = {"k": {"a": "kept"}}
    assert obj == expected
    assert prune(obj, WORKSPACE) == []


@pytest.mark.parametrize(
    ("schema", "obj", "kept", "removed"),
    [
        pytest.param(
            {"type": "object", "properties": {"spec": {"type": "object"}}},
            {"apiVersion": "v1", "kind": "K", "metadata": {"anything": {"goes": 1}}, "spec": {"a": 1}},
            {"apiVersion": "v1", "kind": "K", "metadata": {"anything": {"goes": 1}}, "spec": {}},
            ["spec.a"],
            id="root-keeps-type-meta-and-metadata",
        ),
        pytest.param(
            WORKSPACE,
            {"spec": {"inference": {"template": {"any": {"thing": [1, {"x": 2}]}}}}},
            {"spec": {"inference": {"template": {"any": {"thing": [1, {"x": 2}]}}}}},
            [],
            id="preserve-unknown-fields",
        ),
        pytest.param(
            {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}},
            },
            {"other": {"x": 1}, "spec": {"a": "x", "b": "y"}},
            {"other": {"x": 1}, "spec": {"a": "x"}},
            ["spec.b"],
            id="preserve-still-prunes-declared-children",
        ),
        pytest.param(
            WORKSPACE,
            {
                "spec": {
                    "pod": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": "p"},
                        "spec": {"nodeName": "n", "bogus": 1},
                        "bogus": 2,
                    }
                }
            },
            {
                "spec": {
                    "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"nodeName": "n"}}
                }
            },
            ["spec.pod.spec.bogus", "spec.pod.bogus"],
            id="embedded-resource",
        ),
        pytest.param(
            WORKSPACE,
            {"spec": {"resource": "not-an-object", "ports": "nor-a-list"}},
            {"spec": {"resource": "not-an-object", "ports": "nor-a-list"}},
            [],
            id="type-mismatch-left-for-validation",
        ),
    ],
)
def test_prune_cases(schema: JsonObj, obj: JsonObj, kept: JsonObj, removed: list[str]) -> None:
    assert prune(obj, schema) == removed
    assert obj == kept


# ----------------------------------------------------------------------------------------------- list types
@pytest.mark.parametrize(
    ("path", "kind", "keys"),
    [
        pytest.param(("spec", "ports"), "map", ["name", "protocol"], id="compound-map"),
        pytest.param(("status", "conditions"), "map", ["type"], id="conditions"),
        pytest.param(("spec", "inference", "adapters", "volumes"), "map", ["mountPath"], id="list-inside-list"),
        pytest.param(("spec", "resource", "preferredNodes"), "set", None, id="set"),
        pytest.param(("status", "workerNodes"), "atomic", None, id="atomic"),
        pytest.param(("status", "plain"), None, None, id="list-without-type"),
        pytest.param(("spec", "resource"), None, None, id="not-a-list"),
        pytest.param(("spec", "nope", "deeper"), None, None, id="unknown-path"),
        pytest.param(("spec", "extras", "k", "a"), None, None, id="through-additional-properties"),
    ],
)
def test_list_types(path: tuple[str, ...], kind: str | None, keys: list[str] | None) -> None:
    assert list_type(WORKSPACE, path) == kind
    assert list_map_keys(WORKSPACE, path) == keys


def test_list_map_keys_through_additional_properties() -> None:
    schema: JsonObj = {
        "type": "object",
        "properties": {
            "groups": {
                "type": "object",
                "additionalProperties": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["id"],
                    "items": {"type": "object", "properties": {"id": {"type": "string"}}},
                },
            }
        },
    }
    assert list_map_keys(schema, ("groups", "anyKey")) == ["id"]


# ----------------------------------------------------------------------------------------------- CRD schema
_BASE = "spec.versions[0].schema.openAPIV3Schema"


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(WORKSPACE, [], id="structural"),
        pytest.param(
            {"properties": {"spec": {"type": "object"}}},
            [("FieldValueRequired", "Required value: must not be empty at the root", f"{_BASE}.type")],
            id="root-type-missing",
        ),
        pytest.param(
            {"type": "string"},
            [("FieldValueInvalid", 'Invalid value: "string": must be object at the root', f"{_BASE}.type")],
            id="root-not-object",
        ),
        pytest.param(
            {"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}},
            [
                (
                    "FieldValueRequired",
                    "Required value: must not be empty for specified object fields",
                    f"{_BASE}.properties[spec].type",
                )
            ],
            id="properties-without-type",
        ),
        pytest.param(
            {"type": "object", "properties": {"spec": {"type": "object", "properties": {"l": {"type": "array"}}}}},
            [
                (
                    "FieldValueRequired",
                    "Required value: must be specified",
                    f"{_BASE}.properties[spec].properties[l].items",
                )
            ],
            id="array-without-items",
        ),
        pytest.param(
            {"type": "object", "properties": {"n": {"type": "int"}}},
            [
                (
                    "FieldValueNotSupported",
                    'Unsupported value: "int": supported values: "array", "boolean", "integer", "number", '
                    '"object", "string"',
                    f"{_BASE}.properties[n].type",
                )
            ],
            id="unknown-type",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {
                    "m": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {}}
                },
            },
            [
                (
                    "FieldValueForbidden",
                    "Forbidden: additionalProperties and properties are mutual exclusive",
                    f"{_BASE}.properties[m].additionalProperties",
                )
            ],
            id="properties-and-additional-properties",
        ),
        pytest.param(
            {"type": "object", "properties": {"l": {"type": "array", "items": {"properties": {}}}}},
            [
                (
                    "FieldValueRequired",
                    "Required value: must not be empty for specified object fields",
                    f"{_BASE}.properties[l].items.type",
                )
            ],
            id="items-object-without-type",
        ),
    ],
)
def test_validate_crd_schema(schema: JsonObj, expected: list[tuple[str, str, str]]) -> None:
    assert validate_crd_schema(schema) == [_cause(*e) for e in expected]


def test_validate_crd_schema_uses_given_base_path() -> None:
    causes = validate_crd_schema({}, base="spec.versions[2].schema.openAPIV3Schema")
    assert [c["field"] for c in causes] == ["spec.versions[2].schema.openAPIV3Schema.type"]


# ----------------------------------------------------------------------------------------------- property
_UNKNOWN = "zzUnknown"
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-9, 9) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=6,
)


def _values(schema: JsonObj) -> st.SearchStrategy[Any]:
    """Values that satisfy `schema` once defaulted and pruned (undeclared `zzUnknown` fields included)."""
    if "enum" in schema:
        base: st.SearchStrategy[Any] = st.sampled_from([v for v in schema["enum"] if v is not None])
    elif schema.get("x-kubernetes-int-or-string"):
        base = st.integers(-5, 5) | st.text(max_size=4)
    else:
        base = _BY_TYPE[schema["type"]](schema)
    return st.none() | base if schema.get("nullable") else base


def _objects(schema: JsonObj) -> st.SearchStrategy[Any]:
    properties: dict[str, JsonObj] = schema.get("properties", {})
    required = set(schema.get("required", []))
    optional = {k: _values(v) for k, v in properties.items() if k not in required}
    extra = schema.get("additionalProperties")
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        optional["kept"] = _JSON
    elif not isinstance(extra, dict):
        optional[_UNKNOWN] = _JSON
    fixed = st.fixed_dictionaries({k: _values(properties[k]) for k in required}, optional=optional)
    if not isinstance(extra, dict):
        return fixed
    most = min(schema.get("maxProperties", 3), 3)
    return st.dictionaries(st.sampled_from(["k1", "k2", "k3"]), _values(extra), max_size=most)


def _arrays(schema: JsonObj) -> st.SearchStrategy[Any]:
    items: JsonObj = schema["items"]
    keys: list[str] = schema.get("x-kubernetes-list-map-keys", [])
    defaults = {k: items.get("properties", {}).get(k, {}).get("default") for k in keys}

    def identity(item: Any) -> Any:
        if schema.get("x-kubernetes-list-type") == "map":
            return tuple(item.get(k, defaults[k]) for k in keys)
        return item if schema.get("x-kubernetes-list-type") == "set" else object()

    return st.lists(
        _values(items),
        min_size=schema.get("minItems", 0),
        max_size=schema.get("maxItems", 3),
        unique_by=identity,
    )


def _booleans(schema: JsonObj) -> st.SearchStrategy[Any]:
    return st.booleans()


def _strings(schema: JsonObj) -> st.SearchStrategy[Any]:
    if schema.get("format") == "date-time":
        return st.datetimes(min_value=datetime(1900, 1, 1)).map(lambda d: d.isoformat(timespec="seconds") + "Z")
    shortest, longest = schema.get("minLength", 0), schema.get("maxLength", 8)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: shortest <= len(s) <= longest)
    return st.text(min_size=shortest, max_size=longest)


def _integers(schema: JsonObj) -> st.SearchStrategy[Any]:
    return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31 - 1))


def _numbers(schema: JsonObj) -> st.SearchStrategy[Any]:
    return st.floats(
        schema.get("minimum"),
        schema.get("maximum"),
        exclude_min=schema.get("exclusiveMinimum", False),
        exclude_max=schema.get("exclusiveMaximum", False),
        allow_nan=False,
        allow_infinity=False,
    )


def _count_unknown(value: Any) -> int:
    if isinstance(value, dict):
        return (_UNKNOWN in value) + sum(_count_unknown(v) for k, v in value.items() if k != _UNKNOWN)
    if isinstance(value, list):
        return sum(_count_unknown(v) for v in value)
    return 0


_BY_TYPE: dict[str, Callable[[JsonObj], st.SearchStrategy[Any]]] = {
    "object": _objects,
    "array": _arrays,
    "string": _strings,
    "integer": _integers,
    "number": _numbers,
    "boolean": _booleans,
}


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=_values(WORKSPACE))
def test_generated_objects_default_prune_and_validate_clean(obj: JsonObj) -> None:
    obj.update({"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "w"}})
    planted = _count_unknown(obj)
    apply_defaults(obj, WORKSPACE)
    removed = prune(obj, WORKSPACE)
    assert all(path.endswith(_UNKNOWN) for path in removed)
    assert len(removed) == planted
    assert validate(obj, WORKSPACE) == []
    assert prune(obj, WORKSPACE) == []
