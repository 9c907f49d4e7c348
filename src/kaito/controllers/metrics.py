"""kaito_* metrics about workspaces, in the runtime's registry next to controller-runtime's."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

from kaito.api.workspace import PHASES as PHASE_NAMES
from kaito.runtime.metrics import REGISTRY

WORKSPACE_COUNT = Gauge("kaito_workspace_count", "Workspaces by phase", ["phase"], registry=REGISTRY)
WORKSPACE_PRESETS = Gauge("kaito_workspace_preset_count", "Workspaces by preset", ["preset_name"], registry=REGISTRY)
PHASES = ("succeeded", "error", "pending", "deleting")
_phase_of: dict[str, str] = {}
_preset_of: dict[str, str] = {}


def _phase(state: str) -> str:
    return {"Ready": "succeeded", "Succeeded": "succeeded", "Failed": "error", "NotReady": "error"}.get(
        state, "pending"
    )


def record(ws: dict[str, Any], state: str) -> None:
    """Remember this workspace's phase and preset, and refresh the gauges."""
    meta = ws["metadata"]
    key = f"{meta.get('namespace')}/{meta.get('name')}"
    _phase_of[key] = "deleting" if meta.get("deletionTimestamp") else _phase(state)
    _preset_of[key] = model_label(ws)
    _refresh()


def model_label(ws: dict[str, Any]) -> str:
    """The workspace's preset name, or `template` for a workspace that brings its own pod template."""
    spec = ws.get("inference") or ws.get("tuning") or {}
    return str((spec.get("preset") or {}).get("name") or "template")


def forget(namespace: str, name: str) -> None:
    _phase_of.pop(f"{namespace}/{name}", None)
    _preset_of.pop(f"{namespace}/{name}", None)
    _refresh()


def _refresh() -> None:
    for phase in PHASES:
        WORKSPACE_COUNT.labels(phase=phase).set(sum(1 for p in _phase_of.values() if p == phase))
    WORKSPACE_PRESETS.clear()
    for preset in set(_preset_of.values()):
        WORKSPACE_PRESETS.labels(preset_name=preset).set(sum(1 for p in _preset_of.values() if p == preset))


# A phase lasts from under a second (planning) to tens of minutes (a VM joining, a large model's pull).
PHASE_BUCKETS: tuple[float, ...] = (
    *(1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0),
    *(450.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0),
)


def phase_metric_name(phase: str) -> str:
    """`nodesReady` -> `kaito_workspace_phase_nodes_ready_seconds`."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in phase)
    return f"kaito_workspace_phase_{snake}_seconds"


class PhaseMetrics:
    """One histogram per phase to the first readiness, and apply->Ready, by model and SKU, in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        labels = ["model", "sku"]
        self.phases = {
            name: Histogram(
                phase_metric_name(name),
                f"Seconds a workspace spent in phase {name} on its way to its first readiness",
                labels,
                buckets=PHASE_BUCKETS,
                registry=self.registry,
            )
            for name in PHASE_NAMES
        }
        self.ready = Histogram(
            "kaito_workspace_apply_to_ready_seconds",
            "Seconds from a workspace's creation to its first readiness",
            labels,
            buckets=PHASE_BUCKETS,
            registry=self.registry,
        )

    def observe(self, ended: list[tuple[str, float]], *, model: str, sku: str, ready_after: float | None) -> None:
        for name, seconds in ended:
            self.phases[name].labels(model=model, sku=sku).observe(seconds)
        if ready_after is not None:
            self.ready.labels(model=model, sku=sku).observe(ready_after)


PHASE_METRICS = PhaseMetrics(REGISTRY)  # served by the manager next to the runtime's metrics
