"""The InferenceSet resource (kaito.sh): many interchangeable Workspaces made from one template, scaled as one.

Beside the type sits the vocabulary the controller, admission and the gateway agree on: the label that ties a
child Workspace to its set, the template hash that tells old children from new, the demand annotation, the
names of the set's endpoint, and Go-style durations.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from kaito.api.wire import TopLevelObject, WireModel
from kaito.api.workspace import (
    GROUP,
    STORAGE_VERSION,
    Condition,
    InferenceSpec,
    LabelSelector,
    NodeResources,
)
from kaito.api.workspace import KIND as WORKSPACE_KIND
from kaito.runtime.kinds import Kind
from kaito.runtime.objects import content_hash

KIND = "InferenceSet"
PLURAL = "inferencesets"
SHORT_NAMES = ("is", "isets")
INFERENCESET = Kind(GROUP, STORAGE_VERSION, KIND, PLURAL)

LABEL_SET = "kaito.sh/inferenceset"  # on each child Workspace: the set it belongs to
LABEL_TEMPLATE_HASH = "kaito.sh/template-hash"  # on each child: the hash of the template it was made from
LABEL_GATEWAY = "kaito.sh/gateway"  # on the gateway pods: the set they serve; the set's Service selects them
ANNOTATION_DEMAND = "kaito.sh/demand"  # RFC 3339 time of the latest request the gateway held with no replica ready
GATEWAY_SERVICE_ACCOUNT = "kaito-gateway"
GATEWAY_PORT = 5000
GATEWAY_REPLICAS = 2
SERVICE_PORT = 80
# A child is named `<set>-` plus 5 random characters (generateName), and must stay a DNS-1123 label.
MAX_NAME_LENGTH = 63 - 6

# Condition types and the reasons the controller (and the autoscaling policy) write.
READY = "Ready"
SCALED = "Scaled"
REASONS = ("ScaleOut", "ScaleIn", "ScaleToZero", "ScaleFromZero", "Steady")

DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as `30s`, `10m` or `1h30m`; ValueError for anything else."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 10m or 1h30m")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))


class TemplateMetadata(WireModel):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class WorkspaceTemplate(WireModel):
    """What each child Workspace is made of; its nodes' label selector is the set's `labelSelector`."""

    metadata: TemplateMetadata | None = None
    resource: NodeResources
    inference: InferenceSpec


class Autoscaling(WireModel):
    """Bounds and targets for scaling on load; without it the set follows `replicas` (the scale subresource)."""

    min_replicas: int = Field(default=1, ge=0, description="Never fewer replicas; 0 lets an idle set go to zero")
    max_replicas: int = Field(ge=1, description="Never more replicas")
    target_in_flight_per_replica: int | None = Field(
        default=None, ge=1, description="Requests in flight per replica to aim at (default: the plan's max-num-seqs)"
    )
    scale_down_delay: str = Field(
        default="5m", pattern=DURATION_PATTERN, description="How long load must stay low before a replica goes"
    )
    scale_to_zero_after: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Idle time after which a set with minReplicas 0 goes to zero replicas, e.g. 10m",
    )


class GatewaySettings(WireModel):
    """How the set's gateway holds requests while no replica is ready."""

    max_queue: int | None = Field(
        default=None, ge=0, description="Requests held at once; one more is answered 503 with Retry-After (default 100)"
    )
    hold_timeout: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How long a held request waits for a replica before a 504, e.g. 10m (default 10m)",
    )


class InferenceSetSpec(WireModel):
    replicas: int = Field(default=1, ge=0, description="How many child Workspaces to run")
    label_selector: LabelSelector = Field(description="Labels of the nodes each child may run on")
    template: WorkspaceTemplate
    node_count_limit: int | None = Field(
        default=None, ge=1, description="The most GPU nodes all children together may use"
    )
    autoscaling: Autoscaling | None = None
    gateway: GatewaySettings | None = None


class AutoscalingStatus(WireModel):
    """What autoscaling has learned of the set, kept so that a restarted manager goes on from it."""

    idle_since: str | None = Field(
        default=None, description="When the set was last seen in use; absent while requests arrive, run or wait"
    )
    observed_request_duration: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="How long a request holds a replica, learned from the gateway's counters, e.g. 8.2s",
    )
    target_in_flight_per_replica: int | None = Field(
        default=None, description="Requests in flight per replica that autoscaling aims at"
    )


class InferenceSetStatus(WireModel):
    replicas: int | None = Field(default=None, description="Child Workspaces that exist")
    ready_replicas: int | None = Field(default=None, description="Child Workspaces ready to serve")
    selector: str | None = Field(default=None, description="The children's label selector, for the scale subresource")
    conditions: list[Condition] | None = None
    last_scale_time: str | None = None
    last_scale_reason: str | None = None
    desired_replicas: int | None = Field(default=None, description="What autoscaling last wanted")
    autoscaling: AutoscalingStatus | None = Field(default=None, description="What autoscaling has learned of the set")
    observed_generation: int | None = None

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions or [] if c.type == kind), None)


class InferenceSet(TopLevelObject):
    api_version: str = f"{GROUP}/{STORAGE_VERSION}"
    kind: str = KIND
    spec: InferenceSetSpec
    status: InferenceSetStatus | None = None


def selector(name: str) -> str:
    """The children's label selector as a string (`status.selector`, what `kubectl scale` and an HPA read)."""
    return f"{LABEL_SET}={name}"


def template_hash(spec: InferenceSetSpec) -> str:
    """The hash of everything a child is made from: a child carrying another hash is replaced."""
    return content_hash({"template": spec.template.to_wire(), "labelSelector": spec.label_selector.to_wire()})


def child_workspace(iset: InferenceSet) -> dict[str, Any]:
    """A child Workspace of `iset` short of its name and owner: the template, labelled, on the set's nodes."""
    template = iset.spec.template
    meta = template.metadata or TemplateMetadata()
    labels = {**(meta.labels or {}), LABEL_SET: iset.name, LABEL_TEMPLATE_HASH: template_hash(iset.spec)}
    metadata: dict[str, Any] = {"namespace": iset.namespace, "labels": labels}
    if meta.annotations:
        metadata["annotations"] = dict(meta.annotations)
    return {
        "apiVersion": f"{GROUP}/{STORAGE_VERSION}",
        "kind": WORKSPACE_KIND,
        "metadata": metadata,
        "resource": {**template.resource.to_wire(), "labelSelector": iset.spec.label_selector.to_wire()},
        "inference": template.inference.to_wire(),
    }
