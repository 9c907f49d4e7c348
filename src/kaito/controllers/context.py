"""`Target`: everything the pure manifest builders need to know about one workspace, in one value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kaito.api.workspace import PlanStatus, Workspace
from kaito.controllers.kinds import owner_reference, workspace_labels
from kaito.presets.catalog import ModelSpec

DEFAULT_IMAGE = "kaito-runtime:0.1.0"


@dataclass(frozen=True)
class Settings:
    """Manager-wide choices that shape workloads."""

    image: str = DEFAULT_IMAGE
    bring_your_own_nodes: bool = False


@dataclass(frozen=True)
class Target:
    ws: Workspace
    uid: str
    plan: PlanStatus
    model: ModelSpec | None
    settings: Settings

    @property
    def name(self) -> str:
        return self.ws.name

    @property
    def namespace(self) -> str:
        return self.ws.namespace

    @property
    def labels(self) -> dict[str, str]:
        return workspace_labels(self.name, self.namespace)

    @property
    def nodes(self) -> int:
        return self.plan.nodes or 1

    @property
    def gpus_per_node(self) -> int:
        return self.plan.gpus_per_node or 1

    @property
    def owner(self) -> dict[str, Any]:
        return owner_reference(self.ws.api_version, name=self.name, uid=self.uid)

    def weights_gib(self) -> float:
        return self.model.weight_bytes / 2**30 if self.model else 16.0

    def readiness_timeout_s(self) -> int:
        """Time allowed for download + load + warm-up: 15 min plus 18 s per GiB, within 30..180 min."""
        return int(min(180 * 60, max(30 * 60, 15 * 60 + 18 * math.ceil(self.weights_gib()))))
