"""Status logic: the Workspace's conditions name the real cause, read from the object that knows it."""

from __future__ import annotations

from typing import Any

from kaito.controllers.status import Observed, compute, gpu_resource
from kaito.presets.catalog import Catalog
from kaito.provisioner import nodeclaims

Obj = dict[str, Any]


def claim(name: str, **conditions: tuple[str, str, str]) -> Obj:
    conds = [{"type": t, "status": s, "reason": r, "message": m} for t, (s, r, m) in conditions.items()]
    return {"metadata": {"name": name}, "status": {"conditions": conds}}


def node(name: str, *, ready: bool = True, gpus: int = 1) -> Obj:
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "capacity": {"nvidia.com/gpu": str(gpus)},
        },
    }


def pod(**status: Any) -> Obj:
    return {"metadata": {"name": "ws-abc"}, "status": status}


def workload(ready: int, replicas: int = 1) -> Obj:
    return {"spec": {"replicas": replicas}, "status": {"readyReplicas": ready}}


def by_type(conds: list[Any]) -> dict[str, Any]:
    return {c.type: c for c in conds}


def test_everything_ready() -> None:
    observed = Observed(
        target_nodes=1,
        nodeclaims=[claim("c", Ready=("True", "Ready", ""))],
        nodes=[node("n")],
        workload=workload(1),
    )
    conds, state = compute(observed, tuning=False, previous_state=None)
    assert state == "Ready"
    assert all(c.status for c in conds)
    assert set(by_type(conds)) == {
        "NodeClaimReady",
        "NodesReady",
        "ResourceReady",
        "InferenceReady",
        "WorkspaceSucceeded",
    }


def test_quota_error_surfaces_with_the_clouds_message() -> None:
    message = "Operation could not be completed as it results in exceeding approved standardNCSv3Family Cores quota."
    observed = Observed(target_nodes=1, nodeclaims=[claim("ws-1", Launched=("False", "QuotaExceeded", message))])
    conds, state = compute(observed, tuning=False, previous_state=None)
    c = by_type(conds)
    assert c["NodeClaimReady"].reason == "QuotaExceeded" and message in c["NodeClaimReady"].message
    assert c["ResourceReady"].reason == "QuotaExceeded" and not c["ResourceReady"].status
    assert c["InferenceReady"].reason == "WorkspaceInferenceStatusPending"
    assert state == "Pending"


def test_a_claim_given_up_is_named_even_behind_one_still_waiting() -> None:
    waiting = claim("ws-1", Launched=("True", "Launched", ""), Registered=("False", "AwaitingRegistration", "booting"))
    given_up = claim("ws-2", Launched=("True", "Launched", ""), Registered=("False", "RegistrationTimeout", "late"))
    observed = Observed(target_nodes=2, nodeclaims=[waiting, given_up])
    c = by_type(compute(observed, tuning=False, previous_state=None)[0])
    assert c["NodeClaimReady"].reason == "RegistrationTimeout" and c["NodeClaimReady"].message == "NodeClaim ws-2: late"
    assert c["ResourceReady"].reason == "RegistrationTimeout"
    observed = Observed(target_nodes=2, nodeclaims=[waiting, claim("ws-2")])
    assert by_type(compute(observed, tuning=False, previous_state=None)[0])["NodeClaimReady"].reason == (
        "AwaitingRegistration"
    )


def test_unschedulable_pod_is_reported() -> None:
    unsched = pod(
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes"}]
    )
    observed = Observed(target_nodes=1, provisioning=False, nodes=[node("n")], workload=workload(0), pods=[unsched])
    c = by_type(compute(observed, tuning=False, previous_state=None)[0])
    assert c["InferenceReady"].reason == "Unschedulable" and "0/2 nodes" in c["InferenceReady"].message


def test_oom_image_pull_and_crash_loop_are_named() -> None:
    oom = pod(
        containerStatuses=[{"name": "server", "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]
    )
    pull = pod(
        containerStatuses=[{"name": "server", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "x"}}}]
    )
    crash = pod(containerStatuses=[{"name": "server", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}])
    expected = {"ContainerOOMKilled": oom, "ImagePullError": pull, "ContainerCrashLoopBackOff": crash}
    for reason, bad in expected.items():
        observed = Observed(target_nodes=1, provisioning=False, nodes=[node("n")], workload=workload(0), pods=[bad])
        assert by_type(compute(observed, tuning=False, previous_state="Ready")[0])["InferenceReady"].reason == reason


def test_ready_then_broken_is_not_ready_rather_than_pending() -> None:
    observed = Observed(target_nodes=1, provisioning=False, nodes=[node("n", ready=False)], workload=workload(0))
    conds, state = compute(observed, tuning=False, previous_state="Ready")
    assert state == "NotReady"
    assert by_type(conds)["NodesReady"].reason == "NodeNotReady"


def test_node_without_gpus_does_not_count() -> None:
    observed = Observed(target_nodes=1, provisioning=False, nodes=[node("n", gpus=0)])
    assert not by_type(compute(observed, tuning=False, previous_state=None)[0])["NodesReady"].status


def test_amd_node_counts_for_an_amd_instance_type() -> None:
    catalog = Catalog.builtin()
    amd = node("n", gpus=0)
    amd["status"]["capacity"] = {"amd.com/gpu": "8"}
    gpu = gpu_resource(catalog, "Standard_ND96isr_MI300X_v5")
    assert gpu == "amd.com/gpu" == nodeclaims.gpu_resource(catalog, "Standard_ND96isr_MI300X_v5")
    observed = Observed(target_nodes=1, provisioning=False, nodes=[amd], gpu=gpu)
    assert by_type(compute(observed, tuning=False, previous_state=None)[0])["NodesReady"].status
    # Planned on an NVIDIA type, or on one the catalog does not know, the same node has no GPU to offer.
    for instance_type in ("Standard_NC6s_v3", "Standard_Unknown_v9", None):
        assert gpu_resource(catalog, instance_type) == "nvidia.com/gpu"
        observed = Observed(target_nodes=1, provisioning=False, nodes=[amd], gpu=gpu_resource(catalog, instance_type))
        assert not by_type(compute(observed, tuning=False, previous_state=None)[0])["NodesReady"].status


def test_tuning_states() -> None:
    base = {"target_nodes": 1, "provisioning": False, "nodes": [node("n")]}
    running = Observed(**base, job={"status": {"active": 1}})  # type: ignore[arg-type]
    done = Observed(**base, job={"status": {"succeeded": 1}})  # type: ignore[arg-type]
    failed = Observed(**base, job={"status": {"failed": 1}})  # type: ignore[arg-type]
    assert compute(running, tuning=True, previous_state=None)[1] == "Running"
    assert compute(done, tuning=True, previous_state=None)[1] == "Succeeded"
    conds, state = compute(failed, tuning=True, previous_state=None)
    assert state == "Failed" and by_type(conds)["JobStarted"].reason == "WorkspaceTuningJobStatusFailed"


def test_invalid_workspace_says_why() -> None:
    conds, state = compute(
        Observed(target_nodes=0, invalid="resource.instanceType: too small"), tuning=False, previous_state=None
    )
    assert state == "Failed"
    assert by_type(conds)["ResourceReady"].reason == "InvalidWorkspace"


def test_a_workload_not_cached_yet_reads_as_the_one_that_arrives() -> None:
    applied_now = Observed(target_nodes=1, provisioning=False, nodes=[node("n")])
    cached = Observed(target_nodes=1, provisioning=False, nodes=[node("n")], workload=workload(0))
    before, after = (compute(o, tuning=False, previous_state="Pending") for o in (applied_now, cached))
    assert before == after
    assert by_type(before[0])["InferenceReady"].message == "0 of 1 replicas ready"
