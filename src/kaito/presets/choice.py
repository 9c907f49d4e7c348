"""Choosing an instance type: the cheapest catalog SKU that runs the model, and the alternatives for a refusal."""

from __future__ import annotations

from dataclasses import dataclass

from kaito.presets.catalog import Catalog, ModelSpec, SkuSpec
from kaito.presets.sizing import Plan, PlanError, Request, plan

AUTO = "auto"


@dataclass(frozen=True)
class Choice:
    sku: SkuSpec
    plan: Plan
    reason: str


def provisionable(sku: SkuSpec) -> bool:
    """SKUs worth offering: still sold, and NVIDIA (the inference image is CUDA-only)."""
    return sku.retired is None and sku.gpu_vendor == "nvidia"


def fitting(model: ModelSpec, catalog: Catalog, cloud: str, request: Request | None = None) -> list[Choice]:
    """Every provisionable SKU of `cloud` that runs the model, cheapest first (unpriced ones last)."""
    found = []
    for sku in catalog.skus_for(cloud):
        if not provisionable(sku):
            continue
        try:
            found.append(Choice(sku, plan(model, sku, request), ""))
        except PlanError:
            continue
    # One node first: pipeline parallel across nodes is slower and adds failure points, so it must be needed.
    return sorted(found, key=lambda c: (c.plan.nodes > 1, _node_hour(c) is None, _node_hour(c) or 0.0, c.sku.name))


def alternatives(
    model: ModelSpec, catalog: Catalog, cloud: str, request: Request | None = None, limit: int = 5
) -> list[str]:
    return [c.sku.name for c in fitting(model, catalog, cloud, request)[:limit]]


def plan_for(
    model: ModelSpec, catalog: Catalog, instance_type: str | None, *, cloud: str, request: Request | None = None
) -> Choice:
    """Plan on the named SKU, or on the cheapest one when none (or `auto`) is named; PlanError lists what fits."""
    if instance_type and instance_type.lower() != AUTO:
        sku = catalog.sku(instance_type)
        try:
            return Choice(sku, plan(model, sku, request), "set by the user")
        except PlanError as exc:
            raise exc.with_alternatives(alternatives(model, catalog, sku.cloud, request)) from None
    options = fitting(model, catalog, cloud, request)
    if not options:
        raise PlanError(f"no {cloud} instance type in the catalog runs {model.name}", path="resource.instanceType")
    best = options[0]
    return Choice(best.sku, best.plan, _why_cheapest(best, options, catalog, cloud))


def _node_hour(choice: Choice) -> float | None:
    price = choice.sku.hourly_price_usd
    return None if price is None else price * choice.plan.nodes


def _why_cheapest(best: Choice, options: list[Choice], catalog: Catalog, cloud: str) -> str:
    cost = _node_hour(best)
    if cost is None:
        return f"{best.sku.name}: no {cloud} SKU that fits has a known price; chose the first that fits by name"
    single = sum(1 for c in options if c.plan.nodes == 1)
    scope = "one-node " if best.plan.nodes == 1 else ""
    count = single if best.plan.nodes == 1 else len(options)
    text = f"{best.sku.name} at ${cost:.2f}/h is the cheapest of {count} {scope}{cloud} instance types that fit"
    cheaper = [
        sku.name
        for sku in catalog.skus_for(cloud)
        if provisionable(sku) and sku.name != best.sku.name and (sku.hourly_price_usd or cost) < cost
    ]
    if cheaper:
        text += f"; cheaper ones cannot hold it on one node: {', '.join(cheaper[:4])}"
    return text
