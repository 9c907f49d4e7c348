"""An InferenceSet's status from its children, pure: counts, the scale selector, conditions, the last scale."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kaito.api.inferenceset import READY, SCALED, AutoscalingStatus, InferenceSet, InferenceSetStatus, selector
from kaito.api.workspace import Condition
from kaito.controllers.inferenceset_plan import Child, Steps

Obj = dict[str, Any]


@dataclass(frozen=True)
class Scale:
    """A change of the replica count the controller acted on: what it became, why, and when."""

    replicas: int
    reason: str
    message: str
    at: str  # RFC 3339


def direction(before: int | None, after: int) -> str:
    """The reason for a change of `replicas` that no policy explained (e.g. `kubectl scale`)."""
    if after == 0:
        return "ScaleToZero"
    if before == 0:
        return "ScaleFromZero"
    return "ScaleOut" if before is None or after > before else "ScaleIn"


def compute(
    iset: InferenceSet,
    children: Sequence[Child],
    steps: Steps,
    *,
    scale: Scale | None,
    now: str,
    generation: int,
    autoscaling: AutoscalingStatus | None = None,
) -> Obj:
    """The status to write (wire form), keeping each condition's transition time while its status holds.

    `autoscaling` is what the policy has learned of the set (None: not autoscaled, and nothing to keep)."""
    previous = iset.status or InferenceSetStatus()
    replicas = iset.spec.replicas
    ready = sum(c.ready for c in children)
    replacing = any(not c.current for c in children)
    conditions = [
        _condition(previous, READY, *_ready(ready, replicas, replacing), now=now, generation=generation),
        _condition(previous, SCALED, *_scaled(len(children), replicas, steps), now=now, generation=generation),
    ]
    status = InferenceSetStatus(
        replicas=len(children),
        ready_replicas=ready,
        selector=selector(iset.name),
        conditions=conditions,
        last_scale_time=scale.at if scale else previous.last_scale_time,
        last_scale_reason=scale.reason if scale else previous.last_scale_reason,
        desired_replicas=scale.replicas if scale else previous.desired_replicas,
        autoscaling=autoscaling,
        observed_generation=generation,
    )
    return status.to_wire()


def _ready(ready: int, replicas: int, replacing: bool) -> tuple[str, str, str]:
    if replacing:
        return "False", "Replacing", f"replacing children made from an older template; {ready}/{replicas} ready"
    if ready >= replicas:
        return "True", "ReplicasReady", f"{ready}/{replicas} replicas ready"
    return "False", "ReplicasNotReady", f"{ready}/{replicas} replicas ready"


def _scaled(count: int, replicas: int, steps: Steps) -> tuple[str, str, str]:
    if steps.limited:
        return "False", "NodeCountLimit", f"{count}/{replicas} replicas: nodeCountLimit leaves no room for more"
    if count == replicas:
        return "True", "Scaled", f"{count} replicas"
    return "False", "Scaling", f"{count} replicas, scaling to {replicas}"


def _condition(
    previous: InferenceSetStatus, kind: str, status: str, reason: str, message: str, *, now: str, generation: int
) -> Condition:
    old = previous.condition(kind)
    since = old.last_transition_time if old is not None and old.status == status else now
    return Condition.model_validate(
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since,
            "observedGeneration": generation,
        }
    )


def merge_patch(old: Obj, new: Obj) -> Obj:
    """`new` as a JSON merge patch (RFC 7386) over `old`: whole, with keys only `old` has written null, so they go."""
    patch: Obj = {key: None for key in old.keys() - new.keys()}
    for key, value in new.items():
        before = old.get(key)
        patch[key] = merge_patch(before, value) if isinstance(value, dict) and isinstance(before, dict) else value
    return patch
