"""The one planning call: one sizing run for a new workspace, none while its pinned plan's inputs hold."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.api.workspace import PlanStatus, Workspace
from kaito.presets.catalog import Catalog
from kaito.presets.choice import fitting
from kaito.workspaces.plan import Invalid, instance_candidates, plan_workspace, validate_and_plan
from tests.workspaces.counting import CountingSizing

ROOT = Path(__file__).resolve().parents[2]
CATALOG = Catalog.builtin()
CHEAP_A100 = {"prices.yaml": "prices:\n  Standard_NC24ads_A100_v4: 0.01\n"}


def example(instance_type: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples/inference/kaito_workspace_phi_3.yaml").read_text())
    doc["metadata"]["namespace"] = "default"
    if instance_type is not None:
        doc["resource"]["instanceType"] = instance_type
    return doc


def pinned(doc: dict[str, Any], plan: PlanStatus) -> dict[str, Any]:
    """`doc` as the controller leaves it: with the plan in its status."""
    return {**copy.deepcopy(doc), "status": {"plan": plan.to_wire()}}


def without_sku(catalog: Catalog, name: str) -> Catalog:
    return Catalog(catalog.models.values(), [sku for sku in catalog.skus.values() if sku.name != name])


def test_a_new_workspace_is_sized_once_and_its_pinned_plan_is_reused_without_sizing() -> None:
    sizing = CountingSizing()
    doc = example()
    plan, model = plan_workspace(Workspace.parse(doc), catalog=CATALOG, cloud="azure", sizing=sizing)
    assert sizing.runs == 1
    assert model is not None and plan.model == model.name and plan.instance_type == "Standard_NC6s_v3"
    again = validate_and_plan(pinned(doc, plan), catalog=CATALOG, cloud="azure", sizing=sizing)
    assert sizing.runs == 1
    assert again.plan == plan


def test_the_inputs_hash_matches_the_plans_already_stored() -> None:
    plan, _ = plan_workspace(Workspace.parse(example()), catalog=CATALOG, cloud="azure")
    assert plan.inputs_hash == "b2ac88b6cf7dc3b6"


def test_a_pinned_plan_outlives_a_catalog_without_its_instance_type() -> None:
    doc = example()
    plan, _ = plan_workspace(Workspace.parse(doc), catalog=CATALOG, cloud="azure")
    smaller = without_sku(CATALOG, "Standard_NC6s_v3")
    sizing = CountingSizing()
    kept = validate_and_plan(pinned(doc, plan), catalog=smaller, cloud="azure", sizing=sizing)
    assert kept.plan == plan and sizing.runs == 0
    with pytest.raises(Invalid) as refused:
        validate_and_plan(doc, catalog=smaller, cloud="azure", sizing=sizing)
    assert [p.path for p in refused.value.problems] == ["resource.instanceType"]
    assert "(use `auto` to let kaito choose)" in str(refused.value)


def test_a_pinned_auto_plan_keeps_its_instance_type_when_another_becomes_cheapest() -> None:
    doc = example("auto")
    plan, _ = plan_workspace(Workspace.parse(doc), catalog=CATALOG, cloud="azure")
    repriced = CATALOG.with_overrides(CHEAP_A100)
    fresh, _ = plan_workspace(Workspace.parse(doc), catalog=repriced, cloud="azure")
    assert (plan.instance_type, fresh.instance_type) == ("Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4")
    sizing = CountingSizing()
    assert validate_and_plan(pinned(doc, plan), catalog=repriced, cloud="azure", sizing=sizing).plan == plan
    assert sizing.runs == 0
    adapter = {"source": {"name": "a", "image": "registry.example.com/adapters/a:1"}}
    changed = pinned({**doc, "inference": {**doc["inference"], "adapters": [adapter]}}, plan)
    replanned = validate_and_plan(changed, catalog=repriced, cloud="azure", sizing=sizing).plan
    assert sizing.runs == 1
    assert replanned.instance_type == "Standard_NC4as_T4_v3" and replanned.inputs_hash != plan.inputs_hash


def test_rule_problems_are_reported_without_sizing() -> None:
    sizing = CountingSizing()
    doc = example()
    doc["metadata"]["annotations"] = {"kaito.sh/runtime": "tgi"}
    with pytest.raises(Invalid) as refused:
        validate_and_plan(doc, catalog=CATALOG, cloud="azure", sizing=sizing)
    assert str(refused.value) == "metadata.annotations[kaito.sh/runtime]: 'tgi' is not one of vllm, transformers"
    assert sizing.runs == 0


def test_a_pod_template_workspace_is_planned_without_sizing() -> None:
    doc = example()
    doc["inference"] = {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    sizing = CountingSizing()
    planned = validate_and_plan(doc, catalog=CATALOG, cloud="azure", sizing=sizing)
    assert sizing.runs == 0 and planned.model is None
    assert (planned.plan.instance_type, planned.plan.nodes, planned.plan.gpus_per_node) == ("Standard_NC6s_v3", 1, 1)


def test_a_plan_recorded_before_the_engine_fields_existed_is_planned_again_on_its_instance_type() -> None:
    doc = example("auto")
    plan, _ = plan_workspace(Workspace.parse(doc), catalog=CATALOG, cloud="azure")
    assert plan.max_num_batched_tokens is not None
    older = plan.model_copy(update={"max_num_batched_tokens": None, "kv_cache_dtype": None})
    repriced = CATALOG.with_overrides(CHEAP_A100)
    sizing = CountingSizing()
    again = validate_and_plan(pinned(doc, older), catalog=repriced, cloud="azure", sizing=sizing).plan
    assert sizing.runs == 1
    assert again.instance_type == plan.instance_type and again.max_num_batched_tokens == plan.max_num_batched_tokens
    assert again.engine_args == plan.engine_args


def listed(*names: str) -> dict[str, Any]:
    doc = example()
    doc["resource"].pop("instanceType", None)
    doc["resource"]["instanceTypes"] = list(names)
    return doc


A100, H100 = "Standard_NC24ads_A100_v4", "Standard_NC40ads_H100_v5"


def test_a_list_plans_on_its_first_type_and_moves_to_another_when_asked() -> None:
    doc = listed(A100, H100)
    plan, _ = plan_workspace(Workspace.parse(doc), catalog=CATALOG, cloud="azure")
    assert plan.instance_type == A100
    sizing = CountingSizing()
    kept, _ = plan_workspace(Workspace.parse(pinned(doc, plan)), catalog=CATALOG, cloud="azure", sizing=sizing)
    assert kept == plan and sizing.runs == 0
    moved, _ = plan_workspace(
        Workspace.parse(pinned(doc, plan)), catalog=CATALOG, cloud="azure", sizing=sizing, instance_type=H100
    )
    assert moved.instance_type == H100 and sizing.runs == 1 and moved.inputs_hash == plan.inputs_hash


def test_candidates_are_the_list_the_ranking_for_auto_and_one_named_type() -> None:
    model = CATALOG.find_model("phi-3-mini-4k-instruct")
    ws = Workspace.parse(listed(H100, A100))
    assert instance_candidates(ws, model=model, catalog=CATALOG, cloud="azure") == [H100, A100]
    ranked = instance_candidates(Workspace.parse(example("auto")), model=model, catalog=CATALOG, cloud="azure")
    chosen, _ = plan_workspace(Workspace.parse(example("auto")), catalog=CATALOG, cloud="azure")
    assert ranked[0] == chosen.instance_type and len(ranked) > 2 and len(set(ranked)) == len(ranked)
    assert model is not None and ranked == [c.sku.name for c in fitting(model, CATALOG, "azure")]
    named = Workspace.parse(example(A100))
    assert instance_candidates(named, model=model, catalog=CATALOG, cloud="azure") == [A100]


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        pytest.param({"instanceType": A100, "instanceTypes": [H100]}, "resource.instanceTypes", id="both"),
        pytest.param({"instanceTypes": [A100, "auto"]}, "resource.instanceTypes[1]", id="auto-in-list"),
        pytest.param({"instanceTypes": [A100, A100]}, "resource.instanceTypes", id="twice"),
        pytest.param({"instanceTypes": []}, "resource.instanceTypes", id="empty"),
    ],
)
def test_instance_type_lists_are_checked(resource: dict[str, Any], path: str) -> None:
    doc = example()
    doc["resource"].pop("instanceType", None)
    doc["resource"].update(resource)
    with pytest.raises(Invalid) as raised:
        validate_and_plan(doc, catalog=CATALOG, cloud="azure")
    assert [p.path for p in raised.value.problems] == [path]
    if path == "resource.instanceTypes" and "instanceType" in resource:
        assert "resource.instanceType " in str(raised.value) and "resource.instanceTypes" in str(raised.value)
