"""`NodeSpec`: what the simulated cloud hands the simulated kubelet when a VM joins the cluster."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NodeSpec:
    """One Node to register: labels, allocatable capacity, taints and the cloud's providerID."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    capacity: dict[str, str] = field(default_factory=dict)  # cpu, memory, pods, ephemeral-storage, nvidia.com/gpu
    taints: tuple[dict[str, Any], ...] = ()  # Kubernetes taint objects: {"key", "value", "effect"}
    provider_id: str = ""
    ready_after: float = 0.0  # seconds until the Ready condition turns True
