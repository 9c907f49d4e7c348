"""What a simulated AKS agent pool's VMs look like as Kubernetes Nodes: names, labels, capacity and providerID.

Formats follow real AKS VMSS nodes: the scale set is `aks-<pool>-<8 digits>-vmss` (the digits are fixed per
cluster), a node is the scale set name plus the instance id in base 36 padded to 6 (`...-vmss00000b` is
instance 11), and the providerID points at `virtualMachineScaleSets/<vmss>/virtualMachines/<instance id>` in the
node resource group `MC_<rg>_<cluster>_<location>` (cloud-provider-azure writes it lower-cased).
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, field
from typing import Any, Protocol

from kaito.presets.catalog import Catalog, SkuSpec
from kaito_sim.nodes.nodespec import NodeSpec

DEFAULT_OS_DISK_GB = 128
MAX_PODS = 110
_FALLBACK_VCPUS, _FALLBACK_MEMORY_GIB = 8, 32.0
_BASE36 = string.digits + string.ascii_lowercase
_TAINT = re.compile(r"^(?P<key>[^=:\s]+)(=(?P<value>[^:\s]*))?:(?P<effect>NoSchedule|PreferNoSchedule|NoExecute)$")
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")

# CPU sizes the catalog (GPU only) lacks, so a system or CPU pool can be created too:
# (vCPUs, memory GiB, quota family).
CPU_SIZES: dict[str, tuple[int, float, str]] = {
    "Standard_DS2_v2": (2, 7.0, "standardDSv2Family"),
    "Standard_D2s_v3": (2, 8.0, "standardDSv3Family"),
    "Standard_D4s_v3": (4, 16.0, "standardDSv3Family"),
    "Standard_D8s_v3": (8, 32.0, "standardDSv3Family"),
    "Standard_D4s_v5": (4, 16.0, "standardDSv5Family"),
    "Standard_D8s_v5": (8, 32.0, "standardDSv5Family"),
}


class NodeHook(Protocol):
    """Where the simulated cloud's VMs join (and leave) the simulated cluster."""

    async def add(self, spec: NodeSpec) -> None: ...

    async def remove(self, name: str) -> None: ...


@dataclass(frozen=True)
class VmSize:
    name: str  # the canonical spelling
    vcpus: int | None
    memory_gib: float | None
    gpu: SkuSpec | None = None
    family: str | None = None  # the vCPU quota family it counts against

    @property
    def quota_vcpus(self) -> int:
        """vCPUs one VM of this size takes from its family's quota."""
        return self.vcpus or _FALLBACK_VCPUS


def find_vm_size(catalog: Catalog, name: str) -> VmSize | None:
    sku = catalog.find_sku(name)
    if sku is not None and sku.cloud == "azure":
        return VmSize(sku.name, sku.vcpus, sku.memory_gib, sku, sku.quota_family)
    for known, (vcpus, memory, family) in CPU_SIZES.items():
        if known.lower() == name.lower():
            return VmSize(known, vcpus, memory, family=family)
    return None


@dataclass(frozen=True)
class Cluster:
    """The managed cluster the pools belong to."""

    subscription_id: str
    resource_group: str
    name: str
    location: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/"
            f"Microsoft.ContainerService/managedClusters/{self.name}"
        )

    def body(self) -> dict[str, Any]:
        """The managed cluster as ARM's GET returns it (the parts a client reads: its location above all)."""
        return {
            "id": self.id,
            "name": self.name,
            "type": "Microsoft.ContainerService/ManagedClusters",
            "location": self.location,
            "properties": {
                "provisioningState": "Succeeded",
                "powerState": {"code": "Running"},
                "dnsPrefix": self.name,
                "nodeResourceGroup": self.node_resource_group,
            },
        }

    @property
    def node_resource_group(self) -> str:
        return f"MC_{self.resource_group}_{self.name}_{self.location}"

    @property
    def vmss_id(self) -> str:
        """The 8 digits AKS puts in every scale set name of one cluster."""
        key = f"{self.subscription_id}/{self.resource_group}/{self.name}".lower().encode()
        return f"{int.from_bytes(hashlib.sha256(key).digest()[:8], 'big') % 10**8:08d}"

    def vmss_name(self, pool: str) -> str:
        return f"aks-{pool}-{self.vmss_id}-vmss"

    def node_name(self, pool: str, index: int) -> str:
        return f"{self.vmss_name(pool)}{base36(index).rjust(6, '0')}"

    def provider_id(self, pool: str, index: int) -> str:
        return (
            f"azure:///subscriptions/{self.subscription_id}/resourceGroups/{self.node_resource_group.lower()}"
            f"/providers/Microsoft.Compute/virtualMachineScaleSets/{self.vmss_name(pool)}/virtualMachines/{index}"
        )


@dataclass(frozen=True)
class PoolShape:
    """The parts of an agent pool that decide what its nodes look like."""

    name: str
    vm_size: VmSize
    mode: str = "User"
    os_disk_gb: int = DEFAULT_OS_DISK_GB
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()


def base36(number: int) -> str:
    digits = ""
    while True:
        number, rest = divmod(number, 36)
        digits = _BASE36[rest] + digits
        if number == 0:
            return digits


def parse_taint(text: str) -> dict[str, Any]:
    """`key=value:Effect` (or `key:Effect`) as a Kubernetes taint object; ValueError when malformed."""
    match = _TAINT.match(text.strip())
    if match is None:
        raise ValueError(f"taint {text!r} is not key=value:Effect")
    taint: dict[str, Any] = {"key": match["key"], "effect": match["effect"]}
    if match["value"]:
        taint["value"] = match["value"]
    return taint


def node_spec(cluster: Cluster, pool: PoolShape, index: int, *, ready_after: float = 0.0) -> NodeSpec:
    name = cluster.node_name(pool.name, index)
    size = pool.vm_size
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": size.name,
        "beta.kubernetes.io/instance-type": size.name,
        "topology.kubernetes.io/region": cluster.location,
        "topology.kubernetes.io/zone": "0",
        "failure-domain.beta.kubernetes.io/region": cluster.location,
        "failure-domain.beta.kubernetes.io/zone": "0",
        "agentpool": pool.name,
        "kubernetes.azure.com/agentpool": pool.name,
        "kubernetes.azure.com/cluster": cluster.node_resource_group,
        "kubernetes.azure.com/mode": pool.mode.lower(),
        "kubernetes.azure.com/role": "agent",
        "kubernetes.azure.com/os-sku": "Ubuntu",
        "kubernetes.azure.com/nodepool-type": "VirtualMachineScaleSets",
    }
    vcpus = size.quota_vcpus
    memory_gib = size.memory_gib or _FALLBACK_MEMORY_GIB
    capacity = {
        "cpu": str(vcpus),
        "memory": f"{int(memory_gib * 1024 * 1024)}Ki",
        "pods": str(MAX_PODS),
        "ephemeral-storage": f"{pool.os_disk_gb * 1024 * 1024}Ki",
    }
    if size.gpu is not None and size.gpu.gpu_vendor == "nvidia":
        labels.update(_nvidia_labels(size.gpu))
        capacity["nvidia.com/gpu"] = str(size.gpu.gpu_count)
    elif size.gpu is not None and size.gpu.gpu_vendor == "amd":
        capacity["amd.com/gpu"] = str(size.gpu.gpu_count)
    labels.update(pool.labels)
    return NodeSpec(
        name=name,
        labels=labels,
        capacity=capacity,
        taints=tuple(parse_taint(t) for t in pool.taints),
        provider_id=cluster.provider_id(pool.name, index),
        ready_after=ready_after,
    )


def _nvidia_labels(sku: SkuSpec) -> dict[str, str]:
    """AKS marks GPU nodes `accelerator=nvidia`; NVIDIA GPU feature discovery adds the product, count and MiB."""
    product = _LABEL_VALUE_BAD.sub("-", sku.gpu_model.strip()).strip("-_.")[:63]
    return {
        "accelerator": "nvidia",
        "kubernetes.azure.com/accelerator": "nvidia",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.count": str(sku.gpu_count),
        "nvidia.com/gpu.memory": str(round(sku.gpu_memory_gib * 1024)),
    }
