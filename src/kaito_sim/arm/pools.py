"""Agent pool and long-running-operation records of the ARM simulator, the PUT body's validation and the JSON shapes.

Shapes follow the AKS agentPools REST API: the pool's settings live under `properties`, tags included;
`properties.provisioningState` moves Creating/Updating/Deleting -> Succeeded/Failed, and a Failed pool carries
`properties.status.provisioningError: {code, message}`. Operation status is `{"status": "InProgress" | "Succeeded"
| "Failed" | "Canceled", "error"?: {code, message}}`.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from kaito.presets.catalog import Catalog
from kaito_sim.arm.errors import ArmError, JsonObj, error_detail, invalid_parameter, vm_size_not_supported
from kaito_sim.arm.nodes import DEFAULT_OS_DISK_GB, MAX_PODS, Cluster, PoolShape, VmSize, find_vm_size, parse_taint

POOL_TYPE = "Microsoft.ContainerService/managedClusters/agentPools"
ORCHESTRATOR_VERSION = "1.32.0"
NODE_IMAGE_VERSION = "AKSUbuntu-2204gen2containerd-202601.01.0"
_LINUX_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_WINDOWS_NAME = re.compile(r"^[a-z][a-z0-9]{0,5}$")
_TAG_NAME_BAD = re.compile(r"[<>%&\\?/]")
# Read-only properties a client may echo back from a GET; ARM ignores them on PUT.
_READ_ONLY = frozenset(
    {"provisioningState", "powerState", "currentOrchestratorVersion", "nodeImageVersion", "status", "eTag"}
)
_MANAGED = frozenset({"vmSize", "count", "mode", "osType", "osDiskSizeGB", "nodeLabels", "nodeTaints", "tags"})


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Operation:
    """One long-running operation, served at the Azure-AsyncOperation and Location URLs."""

    id: str
    kind: str  # create | update | delete
    pool: str
    status: str = "InProgress"
    error: JsonObj | None = None
    start_time: dt.datetime = field(default_factory=now)
    end_time: dt.datetime | None = None

    @property
    def done(self) -> bool:
        return self.status != "InProgress"

    def finish(self, status: str, error: JsonObj | None = None) -> None:
        self.status, self.error, self.end_time = status, error, now()

    def body(self, cluster: Cluster) -> JsonObj:
        body: JsonObj = {
            "id": f"/subscriptions/{cluster.subscription_id}/providers/Microsoft.ContainerService/locations/"
            f"{cluster.location}/operations/{self.id}",
            "name": self.id,
            "status": self.status,
            "startTime": timestamp(self.start_time),
        }
        if self.end_time is not None:
            body["endTime"] = timestamp(self.end_time)
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass
class PoolSpec:
    """A validated PUT body."""

    vm_size: VmSize
    count: int
    mode: str
    os_type: str
    os_disk_gb: int
    node_labels: dict[str, str]
    node_taints: list[str]
    tags: dict[str, str]
    extra: JsonObj  # other properties the client set, echoed back unchanged


@dataclass
class PoolRecord:
    name: str
    spec: PoolSpec
    provisioning_state: str
    error: JsonObj | None = None
    nodes: dict[int, str] = field(default_factory=dict)  # VMSS instance id -> node name, for booted VMs
    next_index: int = 0
    allocated: int = 0  # VMs the region has allocated to this pool (capacity is counted in these)
    etag: str = field(default_factory=lambda: str(uuid.uuid4()))
    operation: str | None = None  # the operation in progress

    @property
    def busy(self) -> bool:
        return self.provisioning_state not in ("Succeeded", "Failed", "Canceled")

    def shape(self) -> PoolShape:
        spec = self.spec
        return PoolShape(
            self.name, spec.vm_size, spec.mode, spec.os_disk_gb, dict(spec.node_labels), tuple(spec.node_taints)
        )

    def body(self, cluster: Cluster) -> JsonObj:
        spec = self.spec
        properties: JsonObj = {
            "type": "VirtualMachineScaleSets",
            "osDiskType": "Managed",
            "kubeletDiskType": "OS",
            "maxPods": MAX_PODS,
            "osSKU": "Ubuntu",
            "enableNodePublicIP": False,
            "enableFIPS": False,
            "orchestratorVersion": ORCHESTRATOR_VERSION,
            **spec.extra,
            "vmSize": spec.vm_size.name,
            "count": spec.count,
            "mode": spec.mode,
            "osType": spec.os_type,
            "osDiskSizeGB": spec.os_disk_gb,
            "nodeLabels": dict(spec.node_labels),
            "nodeTaints": list(spec.node_taints),
            "tags": dict(spec.tags),
            "provisioningState": self.provisioning_state,
            "powerState": {"code": "Running"},
            "currentOrchestratorVersion": ORCHESTRATOR_VERSION,
            "nodeImageVersion": NODE_IMAGE_VERSION,
            "eTag": self.etag,
        }
        if self.error is not None:
            properties["status"] = {"provisioningError": self.error}
        return {"id": pool_id(cluster, self.name), "name": self.name, "type": POOL_TYPE, "properties": properties}


def pool_id(cluster: Cluster, name: str) -> str:
    return (
        f"/subscriptions/{cluster.subscription_id}/resourceGroups/{cluster.resource_group}/providers/"
        f"Microsoft.ContainerService/managedClusters/{cluster.name}/agentPools/{name}"
    )


def validate_name(name: str, os_type: str) -> None:
    pattern = _WINDOWS_NAME if os_type.lower() == "windows" else _LINUX_NAME
    if not pattern.match(name):
        raise invalid_parameter("agentPoolProfile.name")


def parse_spec(name: str, body: Any, *, catalog: Catalog, cluster: Cluster) -> PoolSpec:
    """Validate a PUT body the way AKS does (the subset that matters here); raises ArmError."""
    if not isinstance(body, dict) or not isinstance(body.get("properties", {}), dict):
        raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
    props: JsonObj = body.get("properties") or {}
    os_type = str(props.get("osType") or "Linux")
    validate_name(name, os_type)
    vm_size_name = props.get("vmSize")
    if not isinstance(vm_size_name, str) or not vm_size_name:
        raise invalid_parameter("agentPoolProfile.vmSize", "A VM size is required.")
    vm_size = find_vm_size(catalog, vm_size_name)
    if vm_size is None:
        raise vm_size_not_supported(
            vm_size=vm_size_name, location=cluster.location, subscription_id=cluster.subscription_id
        )
    count = props.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1000:
        raise invalid_parameter("agentPoolProfile.count", "The count must be between 0 and 1000.")
    mode = str(props.get("mode") or "User")
    if mode not in ("User", "System", "Gateway"):
        raise invalid_parameter("agentPoolProfile.mode")
    disk = props.get("osDiskSizeGB") or DEFAULT_OS_DISK_GB
    if not isinstance(disk, int) or not 30 <= disk <= 2048:
        raise invalid_parameter("agentPoolProfile.osDiskSizeGB", "The OS disk size must be between 30 and 2048 GB.")
    return PoolSpec(
        vm_size=vm_size,
        count=count,
        mode=mode,
        os_type=os_type,
        os_disk_gb=disk,
        node_labels=_labels(props.get("nodeLabels")),
        node_taints=_taints(props.get("nodeTaints")),
        tags=_tags(props.get("tags")),
        extra={k: v for k, v in props.items() if k not in _READ_ONLY and k not in _MANAGED},
    )


def _labels(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise invalid_parameter("agentPoolProfile.nodeLabels")
    for key in raw:
        if key.startswith("kubernetes.azure.com/"):
            raise invalid_parameter("agentPoolProfile.nodeLabels", f"The label key '{key}' is reserved by AKS.")
    return dict(raw)


def _taints(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise invalid_parameter("agentPoolProfile.nodeTaints")
    for taint in raw:
        try:
            parse_taint(taint)
        except ValueError:
            raise invalid_parameter("agentPoolProfile.nodeTaints", f"The taint '{taint}' is invalid.") from None
    return list(raw)


def _tags(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise invalid_parameter("agentPoolProfile.tags")
    bad = [name for name in raw if _TAG_NAME_BAD.search(name)]
    if bad:
        names = ",".join(bad)
        raise ArmError(
            400,
            "InvalidTagNameCharacters",
            f"The tag names '{names}' have reserved characters '<,>,%,&,\\,?,/' or control characters.",
        )
    return dict(raw)


def not_found(cluster: Cluster, name: str) -> ArmError:
    return ArmError(
        404,
        "NotFound",
        f"Could not find agent pool '{name}' in managed cluster '{cluster.name}' "
        f"in resource group '{cluster.resource_group}'.",
    )


def failure(code: str, message: str) -> JsonObj:
    return error_detail(code, message)
