"""A sizing function that counts its runs, handed to the planning call wherever a test asks how often it sizes."""

from __future__ import annotations

from kaito.presets.catalog import Catalog, ModelSpec
from kaito.presets.choice import Choice, plan_for
from kaito.presets.sizing import Request


class CountingSizing:
    """`plan_for`, counting how often it runs."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(
        self, model: ModelSpec, catalog: Catalog, instance_type: str | None, *, cloud: str, request: Request | None
    ) -> Choice:
        self.runs += 1
        return plan_for(model, catalog, instance_type, cloud=cloud, request=request)
