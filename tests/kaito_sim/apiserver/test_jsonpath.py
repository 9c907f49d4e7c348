"""The JSONPath subset used by CRD printer columns and kubectl."""

from __future__ import annotations

from typing import Any

import pytest

from kaito_sim.apiserver.jsonpath import evaluate

OBJ: dict[str, Any] = {
    "metadata": {"name": "ws1", "labels": {"app.kubernetes.io/name": "kaito"}},
    "spec": {
        "containers": [{"name": "a", "image": "img:1", "ports": [{"port": 80}]}, {"name": "b", "image": "img:2"}],
        "flag": False,
    },
    "status": {
        "conditions": [
            {"type": "ResourceReady", "status": "False", "n": 1},
            {"type": "Ready", "status": "True", "n": 3, "reason": "Done"},
        ],
        "nothing": None,
    },
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param(".metadata.name", ["ws1"], id="dotted"),
        pytest.param("{.metadata.name}", ["ws1"], id="braces"),
        pytest.param("metadata.name", ["ws1"], id="relaxed-leading-dot"),
        pytest.param("{.}", [OBJ], id="root"),
        pytest.param(".metadata['name']", ["ws1"], id="single-quoted-key"),
        pytest.param('.metadata["labels"]["app.kubernetes.io/name"]', ["kaito"], id="double-quoted-dotted-key"),
        pytest.param(r".metadata.labels.app\.kubernetes\.io/name", ["kaito"], id="escaped-dots"),
        pytest.param(".spec.containers[0].name", ["a"], id="index"),
        pytest.param(".spec.containers[-1].name", ["b"], id="negative-index"),
        pytest.param(".spec.containers[5].name", [], id="index-out-of-range"),
        pytest.param(".spec.containers[*].image", ["img:1", "img:2"], id="wildcard"),
        pytest.param(".spec.containers[0:1].name", ["a"], id="slice"),
        pytest.param("..image", ["img:1", "img:2"], id="recursive"),
        pytest.param("..port", [80], id="recursive-deep"),
        pytest.param('.status.conditions[?(@.type=="Ready")].status', ["True"], id="filter-equals"),
        pytest.param(".status.conditions[?(@.type!='Ready')].type", ["ResourceReady"], id="filter-not-equals"),
        pytest.param(".status.conditions[?(@.n>1)].type", ["Ready"], id="filter-greater"),
        pytest.param(".status.conditions[?(@.n<=1)].type", ["ResourceReady"], id="filter-less-equal"),
        pytest.param(".status.conditions[?(@.reason)].type", ["Ready"], id="filter-exists"),
        pytest.param('.status.conditions[?(@.n=="3")].type', [], id="filter-type-mismatch"),
        pytest.param(".spec.flag", [False], id="false-value"),
        pytest.param(".status.nothing", [None], id="null-value"),
        pytest.param(".status.missing.deeper", [], id="missing"),
        pytest.param(".metadata.name.more", [], id="through-scalar"),
    ],
)
def test_evaluate(expr: str, expected: list[Any]) -> None:
    assert evaluate(OBJ, expr) == expected


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        pytest.param("", "empty expression", id="empty"),
        pytest.param("{.a", "unclosed '{'", id="unclosed-brace"),
        pytest.param(".a[", "unterminated '['", id="unclosed-bracket"),
        pytest.param(".a.", "expected a field name", id="trailing-dot"),
        pytest.param(".a[foo]", "unsupported subscript", id="bad-subscript"),
        pytest.param(".a[::0]", "step cannot be 0", id="zero-step"),
        pytest.param(".a[?@.x]", "filter must be written", id="filter-without-parens"),
        pytest.param(".a[?(@.x == bare)]", "bad filter operand", id="bad-literal"),
        pytest.param(".a b", "unexpected character", id="space"),
    ],
)
def test_syntax_errors(expr: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="invalid JSONPath") as caught:
        evaluate(OBJ, expr)
    assert fragment in str(caught.value)
