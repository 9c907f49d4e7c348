"""InferenceReady while a pod pulls its model image and after the pull failed, from pods shaped as a kubelet writes."""

from __future__ import annotations

from typing import Any

from kaito.api.modelimage import catalog_image
from kaito.controllers.status import Observed, inference_condition

IMAGE = "registry.example.com/kaito-models/phi-4:abc123"


def pod(puller: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "ws-0", "namespace": "default"},
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [{"name": "model-puller", "ready": False, "restartCount": 0, **puller}],
            "containerStatuses": [
                {"name": "server", "ready": False, "state": {"waiting": {"reason": "PodInitializing"}}}
            ],
        },
    }


def observed(*pods: dict[str, Any], progress: dict[str, Any] | None = None) -> Observed:
    found = Observed(target_nodes=1, pods=list(pods), model_image=IMAGE)
    found.workload = {"spec": {"replicas": 1}, "status": {}}
    if progress is not None:
        found.pull_progress["ws-0"] = progress
    return found


def test_a_running_puller_reads_as_pulling_model_with_bytes_total_and_rate() -> None:
    running = pod({"state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}})
    line = {"bytes": 3 * 2**20, "totalBytes": 12 * 2**20, "bytesPerSecond": 2**20, "etaSeconds": 9}
    cond = inference_condition(observed(running, progress=line), resource_ready=True)
    assert (cond.status, cond.reason) == (False, "PullingModel")
    assert cond.message == f"pod ws-0: pulling {IMAGE}: 3.0/12.0 MiB (25%), 1.0 MiB/s, ETA 9s"
    assert inference_condition(observed(running), resource_ready=True).message.endswith(": started")


def test_a_failed_puller_reads_as_model_pull_error_with_its_termination_message() -> None:
    said = f"kaito pull-model: cannot pull {IMAGE}: registry answered 404 (MANIFEST_UNKNOWN: manifest unknown)"
    failed = pod({"state": {"terminated": {"exitCode": 1, "reason": "Error", "message": said}}})
    cond = inference_condition(observed(failed), resource_ready=True)
    assert (cond.status, cond.reason, cond.message) == (False, "ModelPullError", f"pod ws-0: {said}")


def test_a_puller_in_back_off_reports_its_last_failure() -> None:
    backing_off = pod(
        {
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "UNAUTHORIZED: authentication"}},
            "restartCount": 2,
        }
    )
    cond = inference_condition(observed(backing_off), resource_ready=True)
    assert cond.reason == "ModelPullError"
    assert cond.message == f"pod ws-0: cannot pull {IMAGE}: UNAUTHORIZED: authentication"


def test_a_finished_pull_leaves_the_condition_to_the_server() -> None:
    done = pod({"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}, "ready": True})
    assert inference_condition(observed(done), resource_ready=True).reason == "WorkspaceInferenceStatusPending"


def test_a_catalog_model_is_named_under_the_model_registry() -> None:
    assert catalog_image("myacr.azurecr.io", "phi-4", "abc") == "myacr.azurecr.io/kaito-models/phi-4:abc"
    assert catalog_image("myacr.azurecr.io/mirror/", "Phi-4", "") == "myacr.azurecr.io/mirror/phi-4:main"
