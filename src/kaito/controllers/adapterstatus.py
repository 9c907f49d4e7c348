"""Per-adapter status: what each inference pod's `kaito serve` says of the adapters, folded into one line each.

A pod answers `GET /v1/adapters` with `{"adapters": [{"name", "image", "digest", "state", "message"}]}`. The
Workspace shows, per adapter, the worst state any pod reports (Failed > Pulling > Loaded) with that pod's words.
A pod that does not list an adapter yet, or still serves another image of it, has not seen the new engine config:
the adapter is Pulling there. An adapter waiting for its tuning Workspace is Pulling, saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kaito.api.workspace import ADAPTER_STATES, AdapterStatus
from kaito.controllers.adapters import PULLING, Resolved

Obj = dict[str, Any]
LOADED, FAILED = "Loaded", "Failed"
Report = list[Obj] | str
"""What one pod said: its adapters, or why it could not be read."""


def aggregate(adapters: Sequence[Resolved], reports: Mapping[str, Report]) -> list[AdapterStatus]:
    """One status per adapter, in spec order, from the reports of the running pods (by pod name)."""
    return [_one(adapter, reports) for adapter in adapters]


def _one(adapter: Resolved, reports: Mapping[str, Report]) -> AdapterStatus:
    wanted = AdapterStatus(name=adapter.name, image=adapter.image, digest=adapter.digest, state=PULLING)
    if adapter.waiting is not None:
        return wanted.model_copy(update={"message": adapter.waiting})
    if not reports:
        return wanted.model_copy(update={"message": "no inference pod is running"})
    seen = [_in_pod(adapter, pod, report) for pod, report in sorted(reports.items())]
    worst = min(seen, key=lambda s: ADAPTER_STATES.index(s.state) if s.state in ADAPTER_STATES else 0)
    digest = worst.digest or adapter.digest
    return worst.model_copy(update={"image": adapter.image, "digest": digest})


def _in_pod(adapter: Resolved, pod: str, report: Report) -> AdapterStatus:
    base = AdapterStatus(name=adapter.name, image=adapter.image, digest=adapter.digest, state=PULLING)
    if isinstance(report, str):
        return base.model_copy(update={"message": f"pod {pod}: {report}"})
    entry = next((e for e in report if e.get("name") == adapter.name), None)
    if entry is None:
        return base.model_copy(update={"message": f"pod {pod}: not loaded yet"})
    image, digest = entry.get("image"), entry.get("digest")
    if adapter.image is not None and (image != adapter.image or (adapter.digest and digest != adapter.digest)):
        said = f"{image}@{digest}" if digest else str(image)
        return base.model_copy(update={"message": f"pod {pod}: still serves {said}"})
    state = str(entry.get("state") or PULLING)
    message = str(entry.get("message") or "")
    return AdapterStatus(
        name=adapter.name,
        image=adapter.image,
        digest=str(digest) if digest else adapter.digest,
        state=state if state in ADAPTER_STATES else PULLING,
        message=f"pod {pod}: {message}" if message else None,
    )


def loaded_of_wanted(statuses: Sequence[AdapterStatus]) -> str:
    """`kubectl get -o wide`'s ADAPTERS column: loaded out of wanted."""
    return f"{sum(1 for s in statuses if s.state == LOADED)}/{len(statuses)}"


def newly_failed(before: Sequence[Obj] | None, after: Sequence[Obj] | None) -> list[Obj]:
    """The adapters that are Failed in `after` and were not Failed with that digest in `before`: told once each."""
    told = {(a.get("name"), a.get("digest")) for a in before or [] if a.get("state") == FAILED}
    return [a for a in after or [] if a.get("state") == FAILED and (a.get("name"), a.get("digest")) not in told]


def retrying(reports: Mapping[str, Report]) -> bool:
    """Whether a pod will pull an adapter it failed to pull again (its `retrying`): worth reading it again."""
    return any(entry.get("retrying") for report in reports.values() if not isinstance(report, str) for entry in report)


def still_settling(statuses: Sequence[AdapterStatus], adapters: Sequence[Resolved]) -> bool:
    """Whether a running pod has yet to load an adapter it can load (one waiting for tuning is watched instead)."""
    waiting = {a.name for a in adapters if a.waiting is not None}
    return any(s.state == PULLING and s.name not in waiting for s in statuses)
