"""An engine's refusal to start, read from the server's termination message: the reason on status, beside the plan."""

from __future__ import annotations

from kaito.api.engine_report import KV_TOO_SMALL, OUT_OF_MEMORY, Refusal
from kaito.api.workspace import PlanStatus
from kaito.controllers.status import Observed, compute, engine_refusal
from kaito.controllers.statuswriter import engine_status
from tests.controllers.test_status import by_type, node, pod, workload

KV_WORDS = (
    "The model's max seq len (4096) is larger than the maximum number of tokens that can be stored in KV cache (1024)."
)


def crashing(refusal: Refusal) -> Observed:
    """A server container in CrashLoopBackOff whose last run ended with `refusal` in its termination message."""
    server = {
        "name": "inference",
        "ready": False,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting"}},
        "lastState": {"terminated": {"exitCode": 3, "reason": "Error", "message": refusal.to_json()}},
    }
    return Observed(
        target_nodes=1,
        nodes=[node("n")],
        provisioning=False,
        workload=workload(0),
        pods=[pod(containerStatuses=[server])],
    )


def test_a_kv_refusal_is_the_inference_reason_in_the_engines_words() -> None:
    refusal = Refusal(KV_TOO_SMALL, KV_WORDS, max_model_len=4096, kv_cache_tokens=1024, fits_max_model_len=1024)
    conds, state = compute(crashing(refusal), tuning=False, previous_state=None)
    inference = by_type(conds)["InferenceReady"]
    assert (inference.status, inference.reason, state) == (False, KV_TOO_SMALL, "Pending")
    assert KV_WORDS in inference.message


def test_an_out_of_memory_refusal_is_its_own_reason() -> None:
    conds, _ = compute(crashing(Refusal(OUT_OF_MEMORY, "CUDA out of memory.")), tuning=False, previous_state=None)
    assert by_type(conds)["InferenceReady"].reason == OUT_OF_MEMORY


def test_status_keeps_the_observed_numbers_beside_the_plans() -> None:
    refusal = Refusal(KV_TOO_SMALL, KV_WORDS, max_model_len=4096, kv_cache_tokens=1024, fits_max_model_len=1024)
    plan = PlanStatus(kv_cache_tokens=65536, max_model_len=4096)
    assert engine_status(crashing(refusal), plan) == {
        "predictedKvCacheTokens": 65536,
        "predictedMaxModelLen": 4096,
        "observedKvCacheTokens": 1024,
        "observedMaxModelLen": 4096,
        "fitsMaxModelLen": 1024,
        "refusal": KV_TOO_SMALL,
        "message": KV_WORDS,
    }


def test_other_termination_messages_are_no_refusal() -> None:
    other = {"name": "inference", "state": {"terminated": {"exitCode": 1, "message": "Traceback: boom"}}}
    observed = Observed(target_nodes=1, pods=[pod(containerStatuses=[other])])
    assert engine_refusal(observed.pods) is None
    assert engine_status(observed, PlanStatus(max_model_len=4096)) is None
