"""The plan judged by the engine's refusal at start: re-planned once with a shorter context, or told what would fit.

A KV cache too small for the plan's max-model-len, with the length the engine said would fit, shortens the context
to that length once per plan (`status.plan.replannedFromMaxModelLen` remembers it while the plan's inputs hold). A
length the user pinned in inference_config.yaml is never changed: the Workspace says what would fit instead. Out of
memory is told with what would fit (a larger instance type or tensor-parallel size); nothing changes by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaito.api.engine import with_engine_args
from kaito.api.engine_report import KV_TOO_SMALL, OUT_OF_MEMORY, Refusal
from kaito.api.workspace import PlanStatus

REPLANNED = "ReplannedFromEngine"


@dataclass(frozen=True)
class Verdict:
    """The plan to run (the same object when unchanged) and what InferenceReady says instead of the bare refusal."""

    plan: PlanStatus
    note: tuple[str, str] | None = None

    @property
    def replanned(self) -> bool:
        return self.note is not None and self.note[0] == REPLANNED


def judge(plan: PlanStatus, refusal: Refusal, *, pinned_max_model_len: int | None) -> Verdict:
    """What to do about `refusal` of `plan`; `pinned_max_model_len` is the user's own max-model-len, if any."""
    said = f"the engine refused to start: {refusal.message}"
    if refusal.reason == OUT_OF_MEMORY:
        return Verdict(plan, (OUT_OF_MEMORY, f"{said}; {_larger(plan)}"))
    fits = refusal.fits_max_model_len
    if refusal.reason != KV_TOO_SMALL or not fits:
        return Verdict(plan)
    if pinned_max_model_len is not None:
        advice = (
            f"max-model-len {fits} would fit; inference_config.yaml pins {pinned_max_model_len}, so kaito leaves it: "
            "lower it, or leave it out to let kaito re-plan"
        )
        return Verdict(plan, (KV_TOO_SMALL, f"{said}; {advice}"))
    before = plan.replanned_from_max_model_len
    if before is not None:
        asked, now = refusal.max_model_len, plan.max_model_len
        if asked is not None and now is not None and asked > now:  # the old pod's refusal, before the restart
            return Verdict(plan, (REPLANNED, _replanned_words(before, plan.max_model_len, refusal)))
        return Verdict(plan)  # re-planned once already: the refusal stands as the engine said it
    if plan.max_model_len is None or fits >= plan.max_model_len:
        return Verdict(plan)
    line = (
        f"max-model-len: re-planned from {plan.max_model_len} to {fits}, the longest the engine's KV cache held at "
        f"start ({KV_TOO_SMALL})"
    )
    shorter = plan.model_copy(
        update={
            "max_model_len": fits,
            "replanned_from_max_model_len": plan.max_model_len,
            "explanation": [*(plan.explanation or []), line],
        }
    )
    return Verdict(with_engine_args(shorter), (REPLANNED, _replanned_words(plan.max_model_len, fits, refusal)))


def _replanned_words(before: int, after: int | None, refusal: Refusal) -> str:
    held = f"{refusal.kv_cache_tokens} tokens" if refusal.kv_cache_tokens is not None else "too few tokens"
    return (
        f"re-planned max-model-len {before} -> {after}: the engine's KV cache held {held} ({refusal.message}); "
        "the server restarts with the shorter context"
    )


def _larger(plan: PlanStatus) -> str:
    tp = plan.tensor_parallel_size or 1
    return (
        f"the plan does not fit {plan.instance_type or 'this instance type'} at tensor-parallel-size {tp}: a larger "
        f"instance type (resource.instanceTypes lists fallbacks) or tensor-parallel-size {tp * 2} in "
        "inference_config.yaml would give the engine more memory"
    )
