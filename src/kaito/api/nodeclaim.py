"""The part of Karpenter's NodeClaim (karpenter.sh/v1) that kaito writes and reads: one request for one GPU node.

Beside the types sits their vocabulary, which the workspace controller, the provisioner and the cloud
must agree on: the kind, the labels, the finalizer, the GPU resources and taint, the condition types
and reasons, and when a Node can take GPU work.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kaito.api.wire import WireModel
from kaito.api.workspace import Condition, Schemaless
from kaito.runtime.kinds import Kind

GROUP = "karpenter.sh"
VERSION = "v1"
KIND = "NodeClaim"
PLURAL = "nodeclaims"
NODECLAIM = Kind(GROUP, VERSION, KIND, PLURAL, namespaced=False)

FINALIZER = "karpenter.sh/termination"  # the instance (and Node) are gone before the NodeClaim is
LABEL_NODECLAIM = "kaito.sh/nodeclaim"  # on the Node: which NodeClaim it serves
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"

# The extended resource a GPU node advertises, by the catalog's GPU vendor.
GPU_NVIDIA = "nvidia.com/gpu"
GPU_AMD = "amd.com/gpu"
GPU_RESOURCES = {"nvidia": GPU_NVIDIA, "amd": GPU_AMD}

# Condition types in karpenter's shape: Launched, Registered and Initialized, rolled up into Ready.
LAUNCHED = "Launched"
REGISTERED = "Registered"
INITIALIZED = "Initialized"
READY = "Ready"
STAGES = (LAUNCHED, REGISTERED, INITIALIZED)  # Ready is True only when all three are

# Reasons (a launch failure's reason is the cloud error's: QuotaExceeded, Throttled, ...).
AWAITING_LAUNCH = "AwaitingLaunch"
AWAITING_REGISTRATION = "AwaitingRegistration"
AWAITING_INITIALIZATION = "AwaitingInitialization"
INSTANCE_FAILED = "InstanceFailed"  # the cloud failed the instance without a typed error
NO_INSTANCE_TYPE = "NoInstanceType"  # the claim pins no single node.kubernetes.io/instance-type

COLUMNS: list[dict[str, Any]] = [
    {"name": "Type", "type": "string", "jsonPath": ".metadata.labels.node\\.kubernetes\\.io/instance-type"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Node", "type": "string", "jsonPath": ".status.nodeName"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class NodeClassReference(WireModel):
    group: str
    kind: str
    name: str


class NodeSelectorRequirement(WireModel):
    key: str
    operator: str = Field(description="In, NotIn, Exists, DoesNotExist, Gt or Lt")
    values: list[str] | None = None
    min_values: int | None = Field(default=None, ge=1)


class Taint(WireModel):
    key: str
    value: str | None = None
    effect: str = Field(description="NoSchedule, PreferNoSchedule or NoExecute")


class ResourceRequirements(WireModel):
    requests: dict[str, str] | None = None


class NodeClaimSpec(WireModel):
    node_class_ref: NodeClassReference
    requirements: list[NodeSelectorRequirement]
    resources: ResourceRequirements | None = None
    taints: list[Taint] | None = None
    startup_taints: list[Taint] | None = None
    expire_after: str | None = None
    termination_grace_period: str | None = None


class NodeClaimStatus(WireModel):
    node_name: str | None = None
    provider_id: str | None = Field(default=None, alias="providerID")
    image_id: str | None = Field(default=None, alias="imageID")
    capacity: dict[str, str] | None = None
    allocatable: dict[str, str] | None = None
    conditions: list[Condition] | None = None
    last_pod_event_time: str | None = None


class NodeClaim(WireModel):
    api_version: str = f"{GROUP}/{VERSION}"
    kind: str = KIND
    metadata: Schemaless = Field(default_factory=dict)
    spec: NodeClaimSpec
    status: NodeClaimStatus | None = None


GPU_TAINT = Taint(key="sku", value="gpu", effect="NoSchedule")  # keeps all but GPU work off the node


def resource_count(resources: dict[str, Any] | None, name: str) -> float:
    """A count-like resource (`nvidia.com/gpu`) from a capacity map; 0 when absent or unreadable."""
    try:
        return float((resources or {}).get(name) or 0)
    except (TypeError, ValueError):
        return 0.0


def unready_reason(node: dict[str, Any], *, gpu: str | None) -> str | None:
    """Why the Node cannot take GPU work yet, or None when it can: Ready, and advertising `gpu` unless that is None."""
    status = node.get("status") or {}
    name = (node.get("metadata") or {}).get("name")
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
        return f"node {name} is not Ready"
    if gpu is not None and resource_count(status.get("capacity"), gpu) <= 0:
        return f"node {name} has no {gpu} capacity yet"
    return None


def node_ready(node: dict[str, Any], *, gpu: str | None) -> bool:
    """True when the Node can take GPU work (see `unready_reason`)."""
    return unready_reason(node, gpu=gpu) is None
