"""InferenceSet admission: the template judged as the Workspace it makes, errors named by the set's own fields."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from kaito.api.fielderrors import FieldError
from kaito.presets.catalog import Catalog
from kaito.webhook.inferenceset import inferenceset_validator, set_path
from kaito.webhook.server import AdmissionRequest, Verdict
from kaito.webhook.workspace import workspace_validator

SET: dict[str, Any] = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "InferenceSet",
    "metadata": {"name": "phi"},
    "spec": {
        "replicas": 2,
        "labelSelector": {"matchLabels": {"apps": "phi"}},
        "template": {
            "metadata": {"annotations": {"kaito.sh/runtime": "vllm"}},
            "resource": {"instanceType": "Standard_NC24ads_A100_v4"},
            "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
        },
    },
}


def request(obj: dict[str, Any]) -> AdmissionRequest:
    kind = {"group": "kaito.sh", "version": "v1beta1", "kind": "InferenceSet"}
    resource = {"group": "kaito.sh", "version": "v1beta1", "resource": "inferencesets"}
    return AdmissionRequest("uid", "CREATE", kind, resource, "ns", obj["metadata"]["name"], obj, None, False, "tester")


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        pytest.param("", "spec.template", id="whole"),
        pytest.param("resource.instanceType", "spec.template.resource.instanceType", id="resource"),
        pytest.param("resource.labelSelector.matchExpressions[0]", "spec.labelSelector.matchExpressions[0]", id="sel"),
        pytest.param("inference.adapters[1].strength", "spec.template.inference.adapters[1].strength", id="adapter"),
        pytest.param("metadata.annotations[kaito.sh/runtime]", "spec.template.metadata.annotations[kaito.sh/runtime]"),
        pytest.param("metadata.name", "metadata.name", id="name"),
    ],
)
def test_a_child_field_is_named_by_the_set_field_it_comes_from(child: str, parent: str) -> None:
    assert set_path(child) == parent


async def test_the_workspace_validator_sees_the_child_workspace() -> None:
    seen: list[AdmissionRequest] = []

    async def workspace(req: AdmissionRequest) -> Verdict:
        seen.append(req)
        return Verdict(errors=(FieldError("inference.preset.name", "unknown"),))

    verdict = await inferenceset_validator(workspace)(request(SET))
    [child] = seen
    assert child.kind["kind"] == "Workspace" and child.object is not None
    assert child.object["resource"]["labelSelector"] == {"matchLabels": {"apps": "phi"}}
    assert child.object["metadata"]["annotations"] == {"kaito.sh/runtime": "vllm"}
    assert verdict.errors == (FieldError("spec.template.inference.preset.name", "unknown"),)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        pytest.param("template.inference.preset.name", "no-such-model", "spec.template.inference.preset.name"),
        pytest.param("template.resource.instanceType", "Standard_D2s_v3", "spec.template.resource.instanceType"),
        pytest.param("template.metadata.annotations", {"kaito.sh/runtime": "x"}, "spec.template.metadata.annotations"),
        pytest.param("autoscaling", {"minReplicas": 3, "maxReplicas": 2}, "spec.autoscaling.minReplicas"),
    ],
)
async def test_bad_sets_are_refused_naming_the_field(path: str, value: Any, field: str) -> None:
    catalog = Catalog.builtin()
    validate = inferenceset_validator(workspace_validator(catalog=lambda: catalog, cloud="azure", client=None))
    assert (await validate(request(SET))).allowed
    bad = copy.deepcopy(SET)
    *parents, leaf = path.split(".")
    node = bad["spec"]
    for part in parents:
        node = node[part]
    node[leaf] = value
    verdict = await validate(request(bad))
    assert any(e.path.startswith(field) for e in verdict.errors), verdict.errors


async def test_a_name_too_long_for_its_children_is_refused() -> None:
    long = copy.deepcopy(SET)
    long["metadata"]["name"] = "x" * 58

    async def workspace(req: AdmissionRequest) -> Verdict:
        return Verdict()

    verdict = await inferenceset_validator(workspace)(request(long))
    assert [e.path for e in verdict.errors] == ["metadata.name"]


async def test_an_update_that_leaves_the_spec_alone_is_not_judged_again() -> None:
    async def workspace(req: AdmissionRequest) -> Verdict:
        return Verdict(errors=(FieldError("inference.preset.name", "the hub cannot be reached"),))

    annotated = copy.deepcopy(SET)
    annotated["metadata"]["annotations"] = {"kaito.sh/demand": "2026-01-01T00:00:00Z"}
    update = dataclasses.replace(request(annotated), operation="UPDATE", old_object=SET)
    assert (await inferenceset_validator(workspace)(update)).allowed
    respec = dataclasses.replace(update, object={**annotated, "spec": {**SET["spec"], "replicas": 3}})
    assert not (await inferenceset_validator(workspace)(respec)).allowed
