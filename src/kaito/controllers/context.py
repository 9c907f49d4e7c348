"""`Target`: everything the pure manifest builders need to know about one workspace, in one value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kaito.api.modelimage import NODE_CACHE_DIR
from kaito.api.workspace import PlanStatus, Workspace
from kaito.controllers.adapters import Resolved, resolve
from kaito.controllers.kinds import owner_reference, workspace_labels
from kaito.presets.catalog import ModelSpec
from kaito.workspaces.modelsource import model_image

DEFAULT_IMAGE = "kaito-runtime:0.1.0"


@dataclass(frozen=True)
class Settings:
    """Manager-wide choices that shape workloads."""

    image: str = DEFAULT_IMAGE
    bring_your_own_nodes: bool = False
    # REGISTRY[/PREFIX] holding the catalog's model images (see kaito.api.modelimage.catalog_image); None: the hub.
    model_registry: str | None = None
    model_cache_dir: str = NODE_CACHE_DIR  # the node-local model cache, a hostPath on every GPU node
    # Registries the pods may speak plain HTTP to when they answer TLS in plain HTTP (Docker's insecure registries,
    # as loopback ones are); every other one is spoken to in TLS.
    insecure_model_registries: frozenset[str] = frozenset()
    # A PEM CA bundle the model pullers trust for the registry's certificate (the manager's --model-registry-ca).
    model_registry_ca: str | None = None
    # The Hugging Face hub (or mirror) the manager reads models from; the pods download from it too (HF_ENDPOINT).
    # None: the public hub, and HF_ENDPOINT is left unset in the pods.
    hf_endpoint: str | None = None
    # How often the provisioner launches a refused NodeClaim again, and how many of those retries a capacity
    # failure gets before a workspace with several instance types moves on to the next.
    retry_interval: float = 30.0
    capacity_retries: int = 2


@dataclass(frozen=True)
class Target:
    ws: Workspace
    uid: str
    plan: PlanStatus
    model: ModelSpec | None
    settings: Settings
    resolved: tuple[Resolved, ...] | None = None  # the spec's adapters as the reconciler resolved them

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
    def adapters(self) -> tuple[Resolved, ...]:
        """The adapters the pods serve; resolved without a cluster (`kaito render`), a tuning Workspace's waits."""
        if self.resolved is not None:
            return self.resolved
        return tuple(resolve(self.ws, lookup=lambda _namespace, _name: None))

    @property
    def owner(self) -> dict[str, Any]:
        return owner_reference(self.ws.api_version, name=self.name, uid=self.uid)

    @property
    def model_image(self) -> str | None:
        """The model image the pods pull their weights from; None: they download from Hugging Face at start."""
        return model_image(self.ws, self.model, registry=self.settings.model_registry)

    def weights_gib(self) -> float:
        return self.model.weight_bytes / 2**30 if self.model else 16.0

    def readiness_timeout_s(self) -> int:
        """Time allowed for download + load + warm-up: 15 min plus 18 s per GiB, within 30..180 min."""
        return int(min(180 * 60, max(30 * 60, 15 * 60 + 18 * math.ceil(self.weights_gib()))))
