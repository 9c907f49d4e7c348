"""The plan for a workspace, computed once and kept in its status: a restart never re-plans a running workspace."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kaito.api.engine import with_engine_args
from kaito.api.workspace import PlanStatus, Workspace
from kaito.controllers.kinds import WORKSPACE, content_hash
from kaito.presets.catalog import Catalog, ModelSpec
from kaito.presets.choice import Choice, plan_for
from kaito.presets.overrides import CONFIG_KEY, OverrideError, Overrides
from kaito.presets.sizing import PlanError, Request

__all__ = ["WORKSPACE", "PlanningFailed", "plan_for_workspace"]

ConfigData = Callable[[str, str], Mapping[str, str] | None]


class PlanningFailed(Exception):
    pass


def _inputs(ws: Workspace, config: Mapping[str, str] | None) -> str:
    spec = ws.inference or ws.tuning
    return content_hash(
        {
            "preset": ws.preset_name,
            "instanceType": ws.resource.instance_type,
            "adapters": len((ws.inference.adapters or []) if ws.inference else []),
            "config": dict(config or {}).get(CONFIG_KEY),
            "mode": "tuning" if ws.tuning else "inference",
            "template": spec is not None and ws.inference is not None and ws.inference.template is not None,
        },
        length=16,
    )


def plan_for_workspace(
    ws: Workspace, catalog: Catalog, cloud: str, config_data: ConfigData
) -> tuple[PlanStatus, ModelSpec | None]:
    """The persisted plan when its inputs are unchanged, else a fresh one pinned to the hardware already chosen."""
    config_name = ws.inference.config if ws.inference else None
    config = config_data(ws.namespace, config_name) if config_name else None
    inputs = _inputs(ws, config)
    name = ws.preset_name
    model = catalog.find_model(name) if name else None
    previous = ws.status.plan if ws.status else None
    if previous is not None and previous.inputs_hash == inputs:
        return previous, model
    if model is None:  # a pod template workspace: nothing to size, one node of the named type
        return PlanStatus(
            instance_type=ws.resource.instance_type,
            nodes=ws.resource.count or 1,
            gpus_per_node=_gpus(catalog, ws),
            inputs_hash=inputs,
        ), None
    try:
        overrides = Overrides.from_config_text(config[CONFIG_KEY]) if config and CONFIG_KEY in config else Overrides()
    except OverrideError as exc:
        raise PlanningFailed(f"inference.config: {exc}") from None
    instance_type = previous.instance_type if previous and previous.instance_type else ws.resource.instance_type
    request = Request(adapters=len(ws.inference.adapters or []) if ws.inference else 0, overrides=overrides)
    try:
        choice = plan_for(model, catalog, instance_type, cloud=cloud, request=request)
    except PlanError as exc:
        raise PlanningFailed(f"{exc.path}: {exc}" if exc.path else str(exc)) from None
    status = plan_status(choice)
    status.model, status.inputs_hash = model.name, inputs
    status = with_engine_args(
        status, max_num_batched_tokens=choice.plan.max_num_batched_tokens, kv_cache_dtype=choice.plan.kv_cache_dtype
    )
    return status, model


def plan_status(choice: Choice) -> PlanStatus:
    """A sizing choice as `status.plan` records it: every number with the reasons behind it."""
    plan = choice.plan
    return PlanStatus(
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
        kv_cache_tokens=plan.kv_cache_tokens,
        max_loras=plan.max_loras or None,
        max_lora_rank=plan.max_lora_rank or None,
        explanation=[*plan.explanation, f"instance type: {choice.reason}"],
    )


def _gpus(catalog: Catalog, ws: Workspace) -> int:
    sku = catalog.find_sku(ws.resource.instance_type or "")
    return sku.gpu_count if sku else 1
