"""The InferenceSet type: durations, the child it makes, and what changes the template hash."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.api.inferenceset import LABEL_SET, LABEL_TEMPLATE_HASH, InferenceSet, child_workspace, parse_duration

SET: dict[str, Any] = {
    "metadata": {"name": "phi", "namespace": "ns"},
    "spec": {
        "labelSelector": {"matchLabels": {"apps": "phi"}},
        "template": {
            "metadata": {"labels": {"team": "a"}},
            "resource": {"instanceType": "Standard_NC6s_v3"},
            "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
        },
    },
}


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0.0), ("30s", 30.0), ("10m", 600.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("250ms", 0.25)]
)
def test_go_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "soon", "5 m", "-1s", "1d"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_the_child_is_the_template_on_the_sets_nodes_labelled_with_the_set() -> None:
    iset = InferenceSet.parse(SET)
    assert iset.spec.replicas == 1
    child = child_workspace(iset)
    assert child["resource"] == {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": "phi"}}}
    assert child["inference"] == {"preset": {"name": "phi-3-mini-4k-instruct"}}
    labels = child["metadata"]["labels"]
    assert labels["team"] == "a" and labels[LABEL_SET] == "phi" and child["metadata"]["namespace"] == "ns"
    scaled = InferenceSet.parse({**SET, "spec": {**SET["spec"], "replicas": 5}})
    assert child_workspace(scaled)["metadata"]["labels"][LABEL_TEMPLATE_HASH] == labels[LABEL_TEMPLATE_HASH]
    moved = InferenceSet.parse({**SET, "spec": {**SET["spec"], "labelSelector": {"matchLabels": {"apps": "b"}}}})
    assert child_workspace(moved)["metadata"]["labels"][LABEL_TEMPLATE_HASH] != labels[LABEL_TEMPLATE_HASH]
