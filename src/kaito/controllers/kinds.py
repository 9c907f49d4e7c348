"""The kinds the workspace controller reads and writes, and the labels that tie them to a workspace."""

from __future__ import annotations

from typing import Any

from kaito.api import workspace
from kaito.api.nodeclaim import GPU_NVIDIA
from kaito.api.workspace import LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE
from kaito.runtime.kinds import Kind

WORKSPACE = Kind(workspace.GROUP, workspace.STORAGE_VERSION, workspace.KIND, workspace.PLURAL)
CONTROLLER_REVISION = Kind("apps", "v1", "ControllerRevision", "controllerrevisions")

FIELD_MANAGER = "kaito-workspace"
LABEL_NODEPOOL = "karpenter.sh/nodepool"
NODEPOOL = "kaito"
ANNOTATION_REVISION = "workspace.kaito.io/revision"
ANNOTATION_DESIRED = "kaito.sh/desired-hash"
GPU = GPU_NVIDIA  # the resource the workloads request
MODEL_PULLER = "model-puller"  # the init container of an inference pod that pulls its model image
SERVER_CONTAINER = "server"  # an inference pod's main container: `kaito serve`
SERVE_PORT = 5000
OWN_PORT = 5001  # `kaito serve`'s own routes (/v1/adapters) while vLLM holds SERVE_PORT (--openai-direct)


def workspace_labels(name: str, namespace: str) -> dict[str, str]:
    return {LABEL_WORKSPACE: name, LABEL_WORKSPACE_NAMESPACE: namespace}


def owner_reference(api_version: str, *, name: str, uid: str, block_owner_deletion: bool = True) -> dict[str, Any]:
    """The controller reference a workspace's children carry, so they are collected with it."""
    ref: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": WORKSPACE.kind,
        "name": name,
        "uid": uid,
        "controller": True,
    }
    if block_owner_deletion:
        ref["blockOwnerDeletion"] = True
    return ref
