"""The kinds the workspace controller reads and writes, and the labels that tie them to a workspace."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kaito.api import nodeclaim, workspace
from kaito.api.workspace import LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE
from kaito.runtime.kinds import Kind

WORKSPACE = Kind(workspace.GROUP, workspace.STORAGE_VERSION, workspace.KIND, workspace.PLURAL)
NODECLAIM = Kind(nodeclaim.GROUP, nodeclaim.VERSION, nodeclaim.KIND, nodeclaim.PLURAL, namespaced=False)
CONTROLLER_REVISION = Kind("apps", "v1", "ControllerRevision", "controllerrevisions")

FIELD_MANAGER = "kaito-workspace"
LABEL_NODECLAIM = "kaito.sh/nodeclaim"
LABEL_NODEPOOL = "karpenter.sh/nodepool"
NODEPOOL = "kaito"
ANNOTATION_REVISION = "workspace.kaito.io/revision"
ANNOTATION_HASH = "workspace.kaito.io/hash"
ANNOTATION_DESIRED = "kaito.sh/desired-hash"
GPU = "nvidia.com/gpu"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
SERVE_PORT = 5000


def workspace_labels(name: str, namespace: str) -> dict[str, str]:
    return {LABEL_WORKSPACE: name, LABEL_WORKSPACE_NAMESPACE: namespace}


def content_hash(value: Any, *, length: int = 10) -> str:
    """A stable short hash of JSON-shaped data (sorted keys), for names and change detection."""
    raw = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:length]


def owner_reference(ws: dict[str, Any]) -> dict[str, Any]:
    meta = ws["metadata"]
    return {
        "apiVersion": WORKSPACE.api_version,
        "kind": WORKSPACE.kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
