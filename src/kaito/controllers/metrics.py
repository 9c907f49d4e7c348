"""kaito_* metrics about workspaces, in the runtime's registry next to controller-runtime's."""

from __future__ import annotations

from typing import Any

from prometheus_client import Gauge

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
    spec = ws.get("inference") or ws.get("tuning") or {}
    _preset_of[key] = str((spec.get("preset") or {}).get("name") or "template")
    _refresh()


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
