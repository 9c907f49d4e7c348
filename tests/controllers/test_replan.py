"""Judging the plan by the engine's refusal: one re-plan to what fits, never over a pinned length, advice for OOM."""

from __future__ import annotations

from kaito.api.engine_report import KV_TOO_SMALL, OUT_OF_MEMORY, Refusal
from kaito.api.workspace import PlanStatus
from kaito.cli_humans import engine_lines
from kaito.controllers.replan import REPLANNED, judge

PLAN = PlanStatus(instance_type="Standard_NC6s_v3", tensor_parallel_size=1, max_model_len=4096, inputs_hash="h")
SHORT = Refusal(KV_TOO_SMALL, "too small", max_model_len=4096, kv_cache_tokens=1500, fits_max_model_len=1500)


def test_a_kv_shortfall_shortens_the_context_once() -> None:
    verdict = judge(PLAN, SHORT, pinned_max_model_len=None)
    assert verdict.replanned and verdict.note is not None and "4096 -> 1500" in verdict.note[1]
    plan = verdict.plan
    assert (plan.max_model_len, plan.replanned_from_max_model_len, plan.inputs_hash) == (1500, 4096, "h")
    assert "--max-model-len=1500" in (plan.engine_args or [])
    stale = judge(plan, SHORT, pinned_max_model_len=None)  # the old pod's refusal, until it is replaced
    assert stale.plan is plan and stale.note is not None and stale.note[0] == REPLANNED
    again = Refusal(KV_TOO_SMALL, "still", max_model_len=1500, kv_cache_tokens=900, fits_max_model_len=900)
    settled = judge(plan, again, pinned_max_model_len=None)  # re-planned once already: the refusal stands
    assert settled.plan is plan and settled.note is None


def test_a_pinned_length_is_left_and_the_note_says_what_fits() -> None:
    verdict = judge(PLAN, SHORT, pinned_max_model_len=4096)
    assert verdict.plan is PLAN and verdict.note is not None
    assert verdict.note[0] == KV_TOO_SMALL and "max-model-len 1500 would fit" in verdict.note[1]


def test_out_of_memory_names_what_would_fit_and_changes_nothing() -> None:
    verdict = judge(PLAN, Refusal(OUT_OF_MEMORY, "CUDA out of memory"), pinned_max_model_len=None)
    assert verdict.plan is PLAN and verdict.note is not None and "tensor-parallel-size 2" in verdict.note[1]


def test_kaito_status_shows_predicted_beside_observed() -> None:
    engine = {
        "refusal": KV_TOO_SMALL,
        "predictedMaxModelLen": 4096,
        "observedMaxModelLen": 4096,
        "predictedKvCacheTokens": 9000,
        "observedKvCacheTokens": 1500,
        "fitsMaxModelLen": 1500,
        "message": "m",
    }
    (line, said) = engine_lines(engine)
    assert "kv-cache-tokens predicted 9000, observed 1500" in line and "fits 1500" in line and said == "  said: m"
    assert engine_lines({}) == []
