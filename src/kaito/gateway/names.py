"""The InferenceSet words the gateway shares with the set's controller: its kind, child label and demand annotation."""

from __future__ import annotations

from kaito.api import workspace
from kaito.runtime.kinds import Kind

INFERENCESET = Kind(workspace.GROUP, workspace.STORAGE_VERSION, "InferenceSet", "inferencesets")
WORKSPACE = Kind(workspace.GROUP, workspace.STORAGE_VERSION, workspace.KIND, workspace.PLURAL)
LABEL_SET = "kaito.sh/inferenceset"  # on each child Workspace: the set that owns it
ANNOTATION_DEMAND = "kaito.sh/demand"  # on the set: RFC3339 time of the latest request held with no replica ready
READY_CONDITIONS = ("WorkspaceSucceeded", "InferenceReady")  # either True: the child serves
REPLICA_PORT = 80  # each child's Service `<child>`
