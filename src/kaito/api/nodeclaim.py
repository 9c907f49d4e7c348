"""The part of Karpenter's NodeClaim (karpenter.sh/v1) that kaito writes and reads: one request for one GPU node."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kaito.api.wire import WireModel
from kaito.api.workspace import Condition, Schemaless

GROUP = "karpenter.sh"
VERSION = "v1"
KIND = "NodeClaim"
PLURAL = "nodeclaims"

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
