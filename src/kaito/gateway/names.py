"""The InferenceSet words the gateway shares with the set's controller: its kind, child label and demand annotation."""

from __future__ import annotations

from kaito.api import workspace
from kaito.api.inferenceset import ANNOTATION_DEMAND, INFERENCESET, LABEL_SET
from kaito.runtime.kinds import Kind

__all__ = ["ANNOTATION_DEMAND", "INFERENCESET", "LABEL_SET", "READY_CONDITIONS", "REPLICA_PORT", "WORKSPACE"]

WORKSPACE = Kind(workspace.GROUP, workspace.STORAGE_VERSION, workspace.KIND, workspace.PLURAL)
READY_CONDITIONS = ("WorkspaceSucceeded", "InferenceReady")  # either True: the child serves
REPLICA_PORT = 80  # each child's Service `<child>`
