"""Readings of NodeClaims and Nodes: what to ask the cloud for, which node is the claim's, which GPU it must show."""

from __future__ import annotations

import math
import re

from kaito.api.nodeclaim import (
    GPU_RESOURCES,
    LABEL_INSTANCE_TYPE,
    LABEL_NODECLAIM,
    NodeClaim,
    NodeSelectorRequirement,
)
from kaito.presets.catalog import Catalog
from kaito.provisioner.cloud import InstanceRequest
from kaito.runtime.cache import Cache
from kaito.runtime.kinds import NODE
from kaito.runtime.objects import Obj, ObjectKey, labels_of

_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


def instance_type_of(claim: NodeClaim) -> str | None:
    """The one instance type the claim's `node.kubernetes.io/instance-type In [...]` requirement allows."""
    for req in claim.spec.requirements:
        if req.key == LABEL_INSTANCE_TYPE and req.operator == "In" and req.values:
            return req.values[0]
    return None


def instance_request(claim: NodeClaim, *, instance_type: str) -> InstanceRequest:
    """What the cloud must build: labels and taints the node carries, and its OS disk."""
    name = str(claim.metadata.get("name") or "")
    labels = {**(claim.metadata.get("labels") or {}), **_requirement_labels(claim.spec.requirements)}
    labels[LABEL_NODECLAIM] = name
    labels.setdefault(LABEL_INSTANCE_TYPE, instance_type)
    taints = tuple(f"{t.key}={t.value or ''}:{t.effect}" for t in claim.spec.taints or [])
    storage = (claim.spec.resources.requests or {}).get("storage") if claim.spec.resources else None
    return InstanceRequest(
        nodeclaim=name,
        instance_type=instance_type,
        labels=labels,
        taints=taints,
        os_disk_gb=storage_gib(storage) if storage else None,
    )


def _requirement_labels(requirements: list[NodeSelectorRequirement]) -> dict[str, str]:
    """A requirement that pins one value (`In [x]`) is a label the node must carry."""
    return {r.key: r.values[0] for r in requirements if r.operator == "In" and r.values and len(r.values) == 1}


def storage_gib(quantity: str) -> int:
    """A Kubernetes quantity as whole GiB, rounded up (`1024Gi` -> 1024, `300G` -> 280)."""
    match = _QUANTITY.match(quantity.strip())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"not a storage quantity: {quantity!r}")
    return math.ceil(float(match.group(1)) * _UNITS[match.group(2)] / 2**30)


def claim_of_node(node: Obj) -> list[ObjectKey]:
    """The NodeClaim a Node serves, from its `kaito.sh/nodeclaim` label (NodeClaims are cluster-scoped)."""
    name = labels_of(node).get(LABEL_NODECLAIM)
    return [ObjectKey("", name)] if name else []


def add_indexes(cache: Cache) -> None:
    """Nodes by the claim they serve, so `claim_nodes` touches only the claim's own Node."""
    cache.add_label_index(NODE, LABEL_NODECLAIM)


def claim_nodes(cache: Cache, claim_name: str) -> list[Obj]:
    """The cached Nodes labelled as serving the claim (normally one), by name, through `add_indexes`' index."""
    nodes = cache.list(NODE, labels={LABEL_NODECLAIM: claim_name})
    return sorted(nodes, key=lambda node: str(node["metadata"]["name"]))


def gpu_resource(catalog: Catalog, instance_type: str | None) -> str | None:
    """The extended resource a node of this type must advertise, or None when the type has no known GPU."""
    sku = catalog.find_sku(instance_type) if instance_type else None
    return None if sku is None else GPU_RESOURCES.get(sku.gpu_vendor)
