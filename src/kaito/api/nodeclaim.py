"""The part of Karpenter's NodeClaim (karpenter.sh/v1) that kaito writes and reads: one request for one GPU node.

Beside the types sits their vocabulary, which the workspace controller, the provisioner and the cloud
must agree on: the kind, the labels, the finalizer, the GPU resources and taint, the condition types
and reasons, and when a Node can take GPU work.
"""

from __future__ import annotations

from typing import Any, Literal

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
    """The cloud's NodeClass that holds the node's provider settings (OS image, disk, network)."""

    group: str = Field(description="API group of the NodeClass, e.g. kaito.sh or karpenter.azure.com")
    kind: str = Field(description="Kind of the NodeClass, e.g. KaitoNodeClass, AKSNodeClass or EC2NodeClass")
    name: str = Field(description="Name of the NodeClass (cluster-scoped), e.g. default")


class NodeSelectorRequirement(WireModel):
    """One rule on the node's labels; the node must meet every rule in the list."""

    key: str = Field(description="The node label the rule is about, e.g. node.kubernetes.io/instance-type")
    operator: str = Field(
        description="In, NotIn, Exists, DoesNotExist, Gt or Lt; an In with a single value becomes a label the "
        "node carries"
    )
    values: list[str] | None = Field(
        default=None,
        description="Label values for In and NotIn; one integer for Gt and Lt; empty for Exists and DoesNotExist",
    )
    min_values: int | None = Field(
        default=None,
        ge=1,
        description="Least number of distinct values of this key the provisioner must keep open to choose from",
    )


class Taint(WireModel):
    """A taint on the node: only pods that tolerate it are scheduled there."""

    key: str = Field(description="Taint key, e.g. sku")
    value: str | None = Field(default=None, description="Taint value, e.g. gpu; may be empty")
    effect: str = Field(description="NoSchedule, PreferNoSchedule or NoExecute")


class ResourceRequirements(WireModel):
    """The least the node must offer."""

    requests: dict[str, str] | None = Field(
        default=None,
        description="Resource name to Kubernetes quantity; kaito asks for the node's OS disk as storage, "
        "e.g. storage: 1024Gi",
    )


class NodeClaimSpec(WireModel):
    """The node asked for: its NodeClass, the labels it must match, its taints and its lifetime."""

    node_class_ref: NodeClassReference
    requirements: list[NodeSelectorRequirement] = Field(
        description="Rules on the node's labels, all of which must hold; kaito pins the GPU instance type with "
        "node.kubernetes.io/instance-type In [<sku>]"
    )
    resources: ResourceRequirements | None = None
    taints: list[Taint] | None = Field(
        default=None,
        description="Taints the node carries for its whole life; kaito sets sku=gpu:NoSchedule so only GPU work "
        "lands on it",
    )
    startup_taints: list[Taint] | None = Field(
        default=None,
        description="Taints the node starts with and that some agent on it removes once it is set up; pods need "
        "not tolerate them to be planned onto the node",
    )
    expire_after: str | None = Field(
        default=None,
        description="How long the node may live before it is replaced, as a duration such as 720h, or Never",
    )
    termination_grace_period: str | None = Field(
        default=None,
        description="How long deleting the node may wait for its pods to drain before they are removed anyway, "
        "as a duration such as 1h",
    )


class NodeClaimCondition(Condition):
    """One stage of the node's start and where it stands."""

    type: str = Field(description="Launched, Registered, Initialized or Ready")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown")
    reason: str = Field(
        default="",
        description="Why, in one CamelCase word: e.g. AwaitingLaunch, AwaitingRegistration, or the cloud's error "
        "such as QuotaExceeded",
    )
    message: str = Field(default="", description="What happened, for people")
    last_transition_time: str | None = Field(default=None, description="When status last changed (RFC 3339)")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation of the claim the condition was written for"
    )


class NodeClaimStatus(WireModel):
    """What the node provisioner has done for the claim: the instance, its Node, and how far its start has got."""

    node_name: str | None = Field(default=None, description="The Node that registered for this claim")
    provider_id: str | None = Field(
        default=None,
        alias="providerID",
        description="The cloud's ID of the instance; the Node's spec.providerID matches it",
    )
    image_id: str | None = Field(default=None, alias="imageID", description="The OS image the instance booted from")
    capacity: dict[str, str] | None = Field(
        default=None,
        description="Resource name to quantity the node has in all, e.g. cpu, memory, nvidia.com/gpu",
    )
    allocatable: dict[str, str] | None = Field(
        default=None, description="Resource name to quantity left for pods once the system's share is set aside"
    )
    conditions: list[NodeClaimCondition] | None = Field(
        default=None,
        description="Launched, Registered and Initialized, in that order, and Ready once all three are True",
    )
    last_pod_event_time: str | None = Field(
        default=None, description="When a pod was last scheduled onto or removed from the node (RFC 3339)"
    )


class NodeClaim(WireModel):
    """A request for one GPU node: made for a Workspace by its controller, built in the cloud by the provisioner."""

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
