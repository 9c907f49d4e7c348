"""Pure builder: the karpenter.sh/v1 NodeClaims a workspace's plan needs (one per node)."""

from __future__ import annotations

import math
from typing import Any

from kaito.api.nodeclaim import FINALIZER, GPU_TAINT, LABEL_INSTANCE_TYPE, NODECLAIM
from kaito.controllers.context import Target
from kaito.controllers.kinds import LABEL_NODEPOOL, NODEPOOL
from kaito.runtime.objects import content_hash

DISK_HEADROOM_GIB = 80  # OS, image layers and the download cache on top of the weights


def nodeclaim_name(target: Target, index: int) -> str:
    """Deterministic per workspace and node index, so a restart finds the claims it already made."""
    suffix = content_hash([target.namespace, target.name, index], length=9)
    return f"{target.name[: 63 - len(suffix) - 1]}-{suffix}"


def build_nodeclaims(target: Target) -> list[dict[str, Any]]:
    instance_type = target.plan.instance_type or ""
    selector_labels = dict(target.ws.resource.label_selector.match_labels or {})
    labels = {**selector_labels, **target.labels, LABEL_NODEPOOL: NODEPOOL, LABEL_INSTANCE_TYPE: instance_type}
    disk = math.ceil(target.weights_gib()) + DISK_HEADROOM_GIB
    requirements = [
        {"key": LABEL_INSTANCE_TYPE, "operator": "In", "values": [instance_type]},
        {"key": LABEL_NODEPOOL, "operator": "In", "values": [NODEPOOL]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        {"key": "karpenter.azure.com/sku-name", "operator": "In", "values": [instance_type]},
    ]
    return [
        {
            "apiVersion": NODECLAIM.api_version,
            "kind": NODECLAIM.kind,
            "metadata": {
                "name": nodeclaim_name(target, index),
                "labels": labels,
                "annotations": {"karpenter.sh/do-not-disrupt": "true"},
                # The provisioner's own finalizer, set at creation so it need not patch the claim to add it.
                "finalizers": [FINALIZER],
            },
            "spec": {
                "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
                "requirements": requirements,
                "resources": {"requests": {"storage": f"{disk}Gi"}},
                "taints": [GPU_TAINT.to_wire()],
            },
        }
        for index in range(target.nodes)
    ]
