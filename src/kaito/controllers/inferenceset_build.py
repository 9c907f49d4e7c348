"""Pure builders for what an InferenceSet owns: its child Workspaces, its Service and its gateway Deployment,
and the gateway's identity in the set's namespace."""

from __future__ import annotations

from typing import Any

from kaito.api.inferenceset import (
    GATEWAY_PORT,
    GATEWAY_REPLICAS,
    GATEWAY_SERVICE_ACCOUNT,
    INFERENCESET,
    LABEL_GATEWAY,
    LABEL_SET,
    SERVICE_PORT,
    InferenceSet,
    child_workspace,
    parse_duration,
)

Obj = dict[str, Any]
GATEWAY_CONTAINER = "gateway"
ROLE_BINDING_KIND = "RoleBinding"


def gateway_name(set_name: str) -> str:
    return f"{set_name}-gateway"


def owner(iset: InferenceSet, uid: str) -> dict[str, Any]:
    """The controller reference the set's children carry, so they go with it."""
    return {
        "apiVersion": INFERENCESET.api_version,
        "kind": INFERENCESET.kind,
        "name": iset.name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_child(iset: InferenceSet, uid: str) -> Obj:
    """A new child Workspace: named by the API server (`<set>-xxxxx`), labelled with the set, owned by it."""
    child = child_workspace(iset)
    child["metadata"]["generateName"] = f"{iset.name}-"
    child["metadata"]["ownerReferences"] = [owner(iset, uid)]
    return child


def _meta(iset: InferenceSet, uid: str, name: str) -> Obj:
    return {
        "name": name,
        "namespace": iset.namespace,
        "labels": {LABEL_SET: iset.name},
        "ownerReferences": [owner(iset, uid)],
    }


def build_service(iset: InferenceSet, uid: str) -> Obj:
    """Service `<set>`: the set's one endpoint, port 80 to the gateway pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(iset, uid, iset.name),
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_GATEWAY: iset.name},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": GATEWAY_PORT, "protocol": "TCP"}],
        },
    }


def build_gateway(iset: InferenceSet, uid: str, *, image: str) -> Obj:
    """Deployment `<set>-gateway`: `kaito gateway` for this set, CPU only, more than one replica."""
    labels = {LABEL_GATEWAY: iset.name}
    command = ["kaito", "gateway", "--namespace", iset.namespace, "--inferenceset", iset.name]
    settings = iset.spec.gateway
    if settings is not None and settings.max_queue is not None:
        command += ["--max-queue", str(settings.max_queue)]
    if settings is not None and settings.hold_timeout is not None:
        command += ["--hold-timeout", f"{parse_duration(settings.hold_timeout):g}"]
    container = {
        "name": GATEWAY_CONTAINER,
        "image": image,
        "command": [*command, "--port", str(GATEWAY_PORT)],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": GATEWAY_PORT}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": GATEWAY_PORT}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(iset, uid, gateway_name(iset.name)),
        "spec": {
            "replicas": GATEWAY_REPLICAS,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"serviceAccountName": GATEWAY_SERVICE_ACCOUNT, "containers": [container]},
            },
        },
    }


def build_gateway_identity(namespace: str) -> tuple[Obj, Obj]:
    """The ServiceAccount the gateways of a namespace run as, and its binding to deploy/'s `kaito-gateway` role."""
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": GATEWAY_SERVICE_ACCOUNT, "namespace": namespace},
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": ROLE_BINDING_KIND,
        "metadata": {"name": GATEWAY_SERVICE_ACCOUNT, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": GATEWAY_SERVICE_ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": GATEWAY_SERVICE_ACCOUNT, "namespace": namespace}],
    }
    return account, binding
