"""The Workspace mutating webhook: adds kaito's finalizer at admission, so the reconciler need not write it."""

from __future__ import annotations

from typing import Any

from kaito.api.workspace import FINALIZER
from kaito.webhook.server import AdmissionRequest, Validator, Verdict

PATH = "/mutate-workspace"
WEBHOOK_NAME = "finalizer.workspace.kaito.sh"
CONFIGURATION_NAME = "kaito-mutating-webhook-configuration"
RULES = [
    {
        "apiGroups": ["kaito.sh"],
        "apiVersions": ["v1alpha1", "v1beta1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["workspaces"],
        "scope": "Namespaced",
    }
]


def finalizer_patch(obj: dict[str, Any] | None) -> tuple[dict[str, Any], ...]:
    """RFC 6902 operations adding FINALIZER to `obj`; none when it has it or is being deleted.

    A deleted object may not gain finalizers (the API server refuses it), and re-adding the finalizer the
    reconciler has just removed would keep the workspace from ever going.
    """
    meta = (obj or {}).get("metadata")
    if obj is None or (isinstance(meta, dict) and meta.get("deletionTimestamp")):
        return ()
    if not isinstance(meta, dict):
        return ({"op": "add", "path": "/metadata", "value": {"finalizers": [FINALIZER]}},)
    finalizers = meta.get("finalizers")
    if not isinstance(finalizers, list) or not finalizers:
        return ({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},)
    if FINALIZER in finalizers:
        return ()
    return ({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},)


def workspace_finalizer_mutator() -> Validator:
    """A handler for `WebhookServer` that allows every CREATE and UPDATE, patching in the finalizer when missing."""

    async def mutate(request: AdmissionRequest) -> Verdict:
        if request.operation not in ("CREATE", "UPDATE"):
            return Verdict()
        return Verdict(patch=finalizer_patch(request.object))

    return mutate
