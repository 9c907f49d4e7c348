"""Built-in kinds validated against the official Kubernetes JSON schemas, with causes worded like the apiserver."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kaito_sim.apiserver import builtin_schemas
from kaito_sim.apiserver.builtin_schemas import prune_builtin, validate_builtin
from kaito_sim.apiserver.errors import JsonObj

DEPLOYMENT: JsonObj = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "creationTimestamp": None, "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]},
        },
    },
    "status": None,
}
SERVICE: JsonObj = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web"},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}]},
}
POD: JsonObj = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "uid": None},
    "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "500m", "memory": 1}}}]},
}
CONFIG_MAP: JsonObj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a.b": "c"}}
ROLE: JsonObj = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "Role",
    "metadata": {"name": "r"},
    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
}


def _with(base: JsonObj, path: str, value: Any) -> JsonObj:
    """A deep copy of `base` with the dotted `path` set to `value` (a `[n]` step indexes a list)."""
    obj = copy.deepcopy(base)
    node: Any = obj
    steps = path.replace("[", ".").replace("]", "").split(".")
    for step in steps[:-1]:
        node = node[int(step)] if step.isdigit() else node[step]
    last = steps[-1]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return obj


_DELETE = object()
CRD: JsonObj = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "cards.demo.kaito.sh"},
    "spec": {
        "group": "demo.kaito.sh",
        "names": {"plural": "cards", "kind": "Card"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": {"type": "object", "default": {"free": {"form": 1}}}},
                    }
                },
            }
        ],
    },
}
REVISION: JsonObj = {
    "apiVersion": "apps/v1",
    "kind": "ControllerRevision",
    "metadata": {"name": "rev"},
    "revision": 1,
    "data": {"spec": {"anything": {"goes": [1, {"here": True}]}}},
}


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(DEPLOYMENT, id="deployment"),
        pytest.param(SERVICE, id="service"),
        pytest.param(POD, id="pod"),
        pytest.param(CONFIG_MAP, id="configmap"),
        pytest.param(ROLE, id="role"),
        pytest.param(_with(DEPLOYMENT, "spec.replicas", None), id="null-means-absent"),
    ],
)
def test_valid_objects_have_no_causes(obj: JsonObj) -> None:
    assert validate_builtin(obj) == []


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            _with(DEPLOYMENT, "spec.replicas", "two"),
            {
                "reason": "FieldValueTypeInvalid",
                "field": "spec.replicas",
                "message": 'Invalid value: "string": spec.replicas in body must be of type integer: "string"',
            },
            id="replicas-type",
        ),
        pytest.param(
            _with(DEPLOYMENT, "spec.template.spec.containers", _DELETE),
            {"reason": "FieldValueRequired", "field": "spec.template.spec.containers", "message": "Required value"},
            id="containers-required",
        ),
        pytest.param(
            _with(DEPLOYMENT, "spec.template.spec.containers[0].name", _DELETE),
            {
                "reason": "FieldValueRequired",
                "field": "spec.template.spec.containers[0].name",
                "message": "Required value",
            },
            id="container-name-required",
        ),
        pytest.param(
            _with(POD, "spec.containers[0].image", ""),
            {"reason": "FieldValueRequired", "field": "spec.containers[0].image", "message": "Required value"},
            id="container-image-required",
        ),
        pytest.param(
            _with(DEPLOYMENT, "spec.selector.matchLabels.app", "api"),
            {
                "reason": "FieldValueInvalid",
                "field": "spec.template.metadata.labels",
                "message": 'Invalid value: map[string]string{"app":"web", "tier":"front"}: '
                "`selector` does not match template `labels`",
            },
            id="selector-template-mismatch",
        ),
        pytest.param(
            CONFIG_MAP | {"data": {"a.b": 1}},
            {
                "reason": "FieldValueTypeInvalid",
                "field": "data[a.b]",
                "message": 'Invalid value: "integer": data[a.b] in body must be of type string: "integer"',
            },
            id="map-key-in-brackets",
        ),
        pytest.param(
            ROLE | {"rules": [{"verbs": "get"}]},
            {
                "reason": "FieldValueTypeInvalid",
                "field": "rules[0].verbs",
                "message": 'Invalid value: "string": rules[0].verbs in body must be of type array: "string"',
            },
            id="list-index",
        ),
        pytest.param(
            _with(SERVICE, "spec.ports[0].targetPort", True),
            {
                "reason": "FieldValueInvalid",
                "field": "spec.ports[0].targetPort",
                "message": "Invalid value: true: spec.ports[0].targetPort in body "
                "is not valid under any of the given schemas",
            },
            id="int-or-string",
        ),
    ],
)
def test_invalid_objects_name_the_field(obj: JsonObj, expected: JsonObj) -> None:
    assert validate_builtin(obj) == [expected]


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param({"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "spec": 1}, id="custom-kind"),
        pytest.param({"apiVersion": "v9", "kind": "Pod", "spec": 1}, id="unknown-version"),
        pytest.param({"kind": "Pod"}, id="no-api-version"),
        pytest.param({"apiVersion": "v1", "kind": "../_definitions"}, id="path-like-kind"),
    ],
)
def test_unknown_kinds_are_not_validated(obj: JsonObj) -> None:
    assert validate_builtin(obj) == []


def test_unknown_kubernetes_version_validates_nothing() -> None:
    assert validate_builtin(_with(DEPLOYMENT, "spec.replicas", "two"), version="0.1") == []


def test_metadata_is_left_to_the_core() -> None:
    assert validate_builtin(_with(DEPLOYMENT, "metadata.labels", "not-a-map")) == []


def test_validation_compiles_each_schema_once() -> None:
    """Validating every write stays cheap because validators are compiled once; speed is `sim_bench.py`'s."""
    validate_builtin(DEPLOYMENT)
    compiled = builtin_schemas._validator.cache_info().misses
    for _ in range(20):
        assert validate_builtin(DEPLOYMENT) == []
    assert builtin_schemas._validator.cache_info().misses == compiled


# ----------------------------------------------------------------------------------------------- pruning
@pytest.mark.parametrize(
    ("obj", "path"),
    [
        pytest.param(_with(DEPLOYMENT, "spec.foo", 1), "spec.foo", id="spec-field"),
        pytest.param(
            _with(DEPLOYMENT, "spec.template.spec.containers[0].imagee", "nginx"),
            "spec.template.spec.containers[0].imagee",
            id="list-item-field",
        ),
        pytest.param(
            _with(DEPLOYMENT, "spec.template.metadata.bogus", "x"),
            "spec.template.metadata.bogus",
            id="nested-object-meta",
        ),
        pytest.param(DEPLOYMENT | {"extra": {"a": 1}}, "extra", id="root-field"),
        pytest.param(_with(DEPLOYMENT, "status", {"ready": 1}), "status.ready", id="status-field"),
        pytest.param(_with(DEPLOYMENT, "spec.paused2", None), "spec.paused2", id="null-unknown-field"),
        pytest.param(_with(SERVICE, "spec.ports[0].hostPort", 8080), "spec.ports[0].hostPort", id="nested-list-item"),
        pytest.param(
            _with(CRD, "spec.versions[0].schema.openAPIV3Schema.properties.spec.typo", "string"),
            "spec.versions[0].schema.openAPIV3Schema.properties.spec.typo",
            id="map-value-struct",
        ),
        pytest.param(ROLE | {"rules": [{"verbs": ["get"], "verb": "list"}]}, "rules[0].verb", id="root-list"),
    ],
)
def test_prune_removes_undeclared_fields(obj: JsonObj, path: str) -> None:
    pruned = copy.deepcopy(obj)
    assert prune_builtin(pruned) == [path]
    assert pruned == _with(obj, path, _DELETE)


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(DEPLOYMENT, id="deployment"),
        pytest.param(SERVICE, id="service-int-or-string"),
        pytest.param(POD, id="pod-quantity-map"),
        pytest.param(CONFIG_MAP, id="configmap-string-map"),
        pytest.param(ROLE, id="role"),
        pytest.param(CRD, id="crd-json-default"),
        pytest.param(REVISION, id="raw-extension"),
        pytest.param(_with(DEPLOYMENT, "metadata.bogus", 1), id="root-metadata-left-to-core"),
        pytest.param(_with(DEPLOYMENT, "spec.template.spec.containers", "not-a-list"), id="wrong-type-kept"),
        pytest.param({"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "spec": {"x": 1}}, id="custom-kind"),
        pytest.param({"apiVersion": "v9", "kind": "Pod", "spec": {"x": 1}}, id="unknown-version"),
        pytest.param({"kind": "Pod", "spec": {"x": 1}}, id="no-api-version"),
        pytest.param({"apiVersion": "v1", "kind": "../_definitions", "x": 1}, id="path-like-kind"),
    ],
)
def test_prune_keeps_declared_and_free_form_fields(obj: JsonObj) -> None:
    pruned = copy.deepcopy(obj)
    assert prune_builtin(pruned) == []
    assert pruned == obj


def test_prune_reports_every_field_in_document_order() -> None:
    obj = _with(DEPLOYMENT, "spec.template.spec.containers[0].b", 2)
    obj["spec"] = {"a": 1, **obj["spec"]}
    assert prune_builtin(obj) == ["spec.a", "spec.template.spec.containers[0].b"]


def test_prune_for_an_unknown_kubernetes_version_removes_nothing() -> None:
    obj = _with(DEPLOYMENT, "spec.foo", 1)
    assert prune_builtin(obj, version="0.1") == [] and obj["spec"]["foo"] == 1


def test_pruning_reads_each_schema_once() -> None:
    """Pruning every write stays cheap because schemas are parsed once; its speed is `benchmarks/sim_bench.py`'s."""
    prune_builtin(copy.deepcopy(DEPLOYMENT))

    def loads() -> tuple[int, int]:
        return builtin_schemas._kind_schema.cache_info().misses, builtin_schemas.definition_map.cache_info().misses

    before = loads()
    for _ in range(50):
        assert prune_builtin(_with(DEPLOYMENT, "spec.foo", 1)) == ["spec.foo"]
    assert loads() == before
