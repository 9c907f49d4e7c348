"""Built-in kinds validated against the official Kubernetes JSON schemas, with causes worded like the apiserver."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from kaito.sim.builtin_schemas import validate_builtin
from kaito.sim.errors import JsonObj

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


def test_cached_validation_is_fast() -> None:
    validate_builtin(DEPLOYMENT)
    started = time.perf_counter()
    for _ in range(20):
        validate_builtin(DEPLOYMENT)
    assert (time.perf_counter() - started) / 20 < 0.002
