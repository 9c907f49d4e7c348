"""The one planning call for a Workspace: the plan kept in its status while its inputs hold, else one sizing run.

Admission, the controller and `kaito render` each call `validate_and_plan`: the rules, then `plan_workspace`.
A plan already in `status.plan` is reused as is while what it was computed from is unchanged, so a catalog
edit never re-judges (or marks invalid) a running workspace; a re-plan stays on the hardware already chosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kaito.api.engine import with_engine_args
from kaito.api.fielderrors import FieldError, summarize
from kaito.api.workspace import PlanStatus, Workspace
from kaito.presets.catalog import Catalog, CatalogError, ModelSpec
from kaito.presets.choice import AUTO, Choice, fitting, plan_for
from kaito.presets.overrides import CONFIG_KEY, OverrideError, Overrides
from kaito.presets.sizing import PlanError, Request
from kaito.runtime.objects import content_hash
from kaito.workspaces.modelsource import HubModel, ModelImages
from kaito.workspaces.rules import ConfigLookup, overrides_from, preset_model, validate_workspace

__all__ = ["Invalid", "Planned", "Sizing", "instance_candidates", "plan_workspace", "validate_and_plan"]


class Sizing(Protocol):
    """The sizing search: `kaito.presets.choice.plan_for` unless a caller hands in another (tests count runs)."""

    def __call__(
        self, model: ModelSpec, catalog: Catalog, instance_type: str | None, *, cloud: str, request: Request | None
    ) -> Choice: ...


class Invalid(Exception):
    """The workspace cannot run as asked; `problems` name the fields to change, as admission reports them."""

    def __init__(self, problems: list[FieldError]) -> None:
        super().__init__(summarize(problems))
        self.problems = problems


@dataclass(frozen=True)
class Planned:
    """A Workspace that passed the rules, with the plan it runs on (and its model; None for a pod template)."""

    workspace: Workspace
    plan: PlanStatus
    model: ModelSpec | None


def validate_and_plan(
    raw: Mapping[str, Any],
    *,
    catalog: Catalog,
    cloud: str,
    config_lookup: ConfigLookup | None = None,
    old: Mapping[str, Any] | None = None,
    sizing: Sizing | None = None,
    model_images: ModelImages | None = None,
) -> Planned:
    """The rules, then `plan_workspace`; raises Invalid with the rules' problems, or else the plan's.

    `model_images` holds the configs of the model images a preset outside the catalog is sized from, fetched
    by the caller beforehand (see `kaito.workspaces.imageconfigs`), so this call reads nothing over the network.
    """
    problems = validate_workspace(raw, catalog=catalog, old=old, config_lookup=config_lookup, model_images=model_images)
    if problems:
        raise Invalid(problems)
    ws = Workspace.parse(raw)
    plan, model = plan_workspace(
        ws, catalog=catalog, cloud=cloud, config_lookup=config_lookup, sizing=sizing, model_images=model_images
    )
    return Planned(ws, plan, model)


def plan_workspace(
    ws: Workspace,
    *,
    catalog: Catalog,
    cloud: str,
    config_lookup: ConfigLookup | None = None,
    sizing: Sizing | None = None,
    model_images: ModelImages | None = None,
    instance_type: str | None = None,
) -> tuple[PlanStatus, ModelSpec | None]:
    """The persisted plan when its inputs are unchanged, else a fresh one pinned to the hardware already chosen.

    `instance_type` moves the plan onto another of the workspace's candidates (see `instance_candidates`).
    """
    config_name = ws.inference.config if ws.inference else None
    config = config_lookup(ws.namespace, config_name) if config_name and config_lookup else None
    inputs = _inputs(ws, config)
    name = ws.preset_name
    model = catalog.find_model(name) if name else None
    if model is None and name:
        model, problems = preset_model(ws, catalog, model_images or ModelImages())
        if problems:
            raise Invalid(problems)
    previous = ws.status.plan if ws.status else None
    moved = instance_type is not None and previous is not None and previous.instance_type != instance_type
    unchanged = previous is not None and previous.inputs_hash == inputs and not moved
    if unchanged and previous is not None and not _recorded_without_engine_fields(previous):
        return previous, model
    if previous is not None and previous.instance_type and instance_type is None:
        instance_type = previous.instance_type  # a re-plan stays on the hardware already chosen
    listed = ws.resource.instance_types
    instance_type = instance_type or ws.resource.instance_type or (listed[0] if listed else None)
    if model is None:  # a pod template workspace: nothing to size, one node of the named type
        return PlanStatus(
            instance_type=instance_type,
            nodes=ws.resource.count or 1,
            gpus_per_node=_gpus(catalog, instance_type),
            inputs_hash=inputs,
        ), None
    try:
        overrides = overrides_from(config, config_name or "")
    except OverrideError as exc:
        raise Invalid([FieldError("inference.config", str(exc))]) from None
    request = _request(ws, overrides)
    choice = _size(sizing, model, catalog, instance_type, cloud=cloud, request=request)
    status = plan_status(choice)
    status.model, status.inputs_hash = model.name, inputs
    if model.source == "hub" and name and isinstance(read := (model_images or ModelImages()).hub.get(name), HubModel):
        status.hub = read.to_status()  # the revision read stays pinned, and its numbers, for every later plan
    status.kv_cache_memory = overrides.kv_cache_memory
    return status, model


def _request(ws: Workspace, overrides: Overrides) -> Request:
    return Request(adapters=len(ws.inference.adapters or []) if ws.inference else 0, overrides=overrides)


def instance_candidates(
    ws: Workspace,
    *,
    model: ModelSpec | None,
    catalog: Catalog,
    cloud: str,
    config_lookup: ConfigLookup | None = None,
) -> list[str]:
    """The instance types this workspace may run on, in the order they are tried when the cloud refuses one.

    `resource.instanceTypes` as listed; `auto` every fitting SKU, ranked as the planner ranks them (cheapest
    one-node first); a single named type alone. Sizes every SKU for `auto`: call it when a refusal needs it.
    """
    if ws.resource.instance_types:
        return list(ws.resource.instance_types)
    named = ws.resource.instance_type
    if model is None or (named and named.lower() != AUTO):
        return [named] if named else []
    config_name = ws.inference.config if ws.inference else None
    config = config_lookup(ws.namespace, config_name) if config_name and config_lookup else None
    try:
        overrides = overrides_from(config, config_name or "")
    except OverrideError:
        return []
    return [choice.sku.name for choice in fitting(model, catalog, cloud, _request(ws, overrides))]


def _size(
    sizing: Sizing | None,
    model: ModelSpec,
    catalog: Catalog,
    instance_type: str | None,
    *,
    cloud: str,
    request: Request,
) -> Choice:
    try:
        return (sizing or plan_for)(model, catalog, instance_type, cloud=cloud, request=request)
    except CatalogError as exc:
        raise Invalid([FieldError("resource.instanceType", f"{exc} (use `auto` to let kaito choose)")]) from None
    except PlanError as exc:
        if exc.path.startswith(("inference.", "resource.")):
            raise Invalid([FieldError(exc.path, str(exc))]) from None
        raise Invalid([FieldError("inference.config", f"{exc.path}: {exc}")]) from None


def _recorded_without_engine_fields(plan: PlanStatus) -> bool:
    """A plan an older kaito recorded, whose batching or KV-cache settings live only in its engineArgs strings.

    The engine configuration is built from the plan's typed fields, so such a plan is planned again (on the
    instance type it pinned) rather than handing the pod less than the plan said.
    """
    args = plan.engine_args or []
    return (plan.max_num_batched_tokens is None and any(a.startswith("--max-num-batched-tokens") for a in args)) or (
        plan.kv_cache_dtype is None and any(a.startswith("--kv-cache-dtype") for a in args)
    )


def _inputs(ws: Workspace, config: Mapping[str, str] | None) -> str:
    spec = ws.inference or ws.tuning
    return content_hash(
        {
            "preset": ws.preset_name,
            "instanceType": ws.resource.instance_type,
            **({"instanceTypes": ws.resource.instance_types} if ws.resource.instance_types else {}),
            "adapters": len((ws.inference.adapters or []) if ws.inference else []),
            "config": dict(config or {}).get(CONFIG_KEY),
            "mode": "tuning" if ws.tuning else "inference",
            "template": spec is not None and ws.inference is not None and ws.inference.template is not None,
            # Only when set, so the plans of workspaces without a model image keep their hashes.
            **({"image": image} if (image := _named_image(ws)) else {}),
        },
        length=16,  # the `inputsHash` every stored plan carries: keep its form
    )


def _named_image(ws: Workspace) -> str | None:
    preset = ws.inference.preset if ws.inference else None
    options = preset.preset_options if preset else None
    return options.image if options else None


def plan_status(choice: Choice) -> PlanStatus:
    """A sizing choice as `status.plan` records it: every number with the reasons behind it, and the engine flags."""
    plan = choice.plan
    numbers = PlanStatus(
        instance_type=choice.sku.name,
        nodes=plan.nodes,
        gpus_per_node=plan.gpus_per_node,
        tensor_parallel_size=plan.layout.tp,
        pipeline_parallel_size=plan.layout.pp,
        data_parallel_size=plan.layout.dp,
        dtype=plan.dtype,
        gpu_memory_utilization=plan.gpu_memory_utilization,
        max_model_len=plan.max_model_len,
        max_num_seqs=plan.max_num_seqs,
        max_num_batched_tokens=plan.max_num_batched_tokens,
        kv_cache_dtype=plan.kv_cache_dtype,
        kv_cache_tokens=plan.kv_cache_tokens,
        max_loras=plan.max_loras or None,
        max_lora_rank=plan.max_lora_rank or None,
        explanation=[*plan.explanation, f"instance type: {choice.reason}"],
    )
    return with_engine_args(numbers)


def _gpus(catalog: Catalog, instance_type: str | None) -> int:
    sku = catalog.find_sku(instance_type or "")
    return sku.gpu_count if sku else 1
