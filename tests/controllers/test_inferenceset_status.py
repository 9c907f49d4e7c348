"""The InferenceSet status write: a merge patch that also removes what no longer holds."""

from __future__ import annotations

from kaito.controllers.inferenceset_status import merge_patch


def test_keys_the_new_status_lacks_are_written_null_at_every_depth() -> None:
    old = {"replicas": 2, "autoscaling": {"idleSince": "2026-03-01T12:00:00Z", "targetInFlightPerReplica": 4}}
    new = {"replicas": 3, "autoscaling": {"targetInFlightPerReplica": 4}, "readyReplicas": 1}
    assert merge_patch(old, new) == {
        "replicas": 3,
        "readyReplicas": 1,
        "autoscaling": {"idleSince": None, "targetInFlightPerReplica": 4},
    }
    assert merge_patch({"autoscaling": {"idleSince": "t"}}, {}) == {"autoscaling": None}
    assert merge_patch({"conditions": [{"type": "Ready"}]}, {"conditions": []}) == {"conditions": []}
