"""The simulated kubelets: nodes join and leave the cluster, and the pods bound to them run, finish or fail."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.objects import now_micro, now_rfc3339
from kaito_sim.apiserver.store import StorageKey, WatchEvent
from kaito_sim.nodes.launch import CONFIGMAPS, SECRETS
from kaito_sim.nodes.nodespec import NodeSpec
from kaito_sim.nodes.podfaults import PodFaults
from kaito_sim.nodes.processes import Processes
from kaito_sim.workloads.api import Api
from kaito_sim.workloads.common import NODES, PODS, Key, condition, controller_ref, is_terminal, key_of
from kaito_sim.workloads.loop import Loop
from kaito_sim.workloads.podstatus import Episode, Timing, build

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.32.0"
LEASES = ("coordination.k8s.io", "leases")
MAX_NODES = 4 * 256  # the /24s of 10.244.0.0/14
_FALLBACK_POD_CIDR = "10.244.255.0/24"  # for Node objects some client created without a podCIDR
_NOT_READY = (
    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
    "message:Network plugin returns error: cni plugin not initialized"
)


def system_node(index: int) -> NodeSpec:
    """One node of the AKS-like system pool every simulated cluster starts with."""
    return NodeSpec(
        name=f"aks-system-{index:08d}",
        labels={
            "agentpool": "system",
            "kubernetes.azure.com/agentpool": "system",
            "kubernetes.azure.com/mode": "system",
            "kubernetes.azure.com/role": "agent",
            "node.kubernetes.io/instance-type": "Standard_D4s_v5",
            "topology.kubernetes.io/region": "eastus",
        },
        capacity={"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        provider_id="azure:///subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mc_kaito_sim_eastus"
        f"/providers/Microsoft.Compute/virtualMachineScaleSets/aks-system-vmss/virtualMachines/{index}",
    )


def node_ready(node: JsonObj | None) -> bool:
    cond = condition(node, "Ready")
    return cond is not None and cond.get("status") == "True"


def _node_conditions(ready: bool, now: str) -> list[JsonObj]:
    def cond(kind: str, status: bool, reason: str, message: str) -> JsonObj:
        return {
            "type": kind,
            "status": "True" if status else "False",
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return [
        cond("MemoryPressure", False, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        cond("DiskPressure", False, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", False, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        cond("Ready", True, "KubeletReady", "kubelet is posting ready status")
        if ready
        else cond("Ready", False, "KubeletNotReady", _NOT_READY),
    ]


def _pod_cidr(index: int) -> str:
    """Node `index`'s /24 of the cluster's 10.244.0.0/14 pod network (AKS's kubenet hands out one /24 a node)."""
    return f"10.{244 + index // 256}.{index % 256}.0/24"


def _cidr_index(cidr: str) -> int | None:
    """The node index a pod CIDR of ours belongs to; None for any other."""
    octets = cidr.split("/")[0].split(".")
    if len(octets) != 4 or octets[0] != "10" or not all(o.isdigit() for o in octets[1:3]):
        return None
    second, third = int(octets[1]), int(octets[2])
    return (second - 244) * 256 + third if 244 <= second <= 247 else None


def _node(spec: NodeSpec, index: int) -> tuple[JsonObj, JsonObj]:
    """The Node object and the status its kubelet first posts."""
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        **spec.labels,
    }
    cidr = _pod_cidr(index)
    node_spec: JsonObj = {"podCIDR": cidr, "podCIDRs": [cidr]}
    if spec.provider_id:
        node_spec["providerID"] = spec.provider_id
    if spec.taints:
        node_spec["taints"] = [dict(t) for t in spec.taints]
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": spec.name, "labels": labels}, "spec": node_spec}
    capacity = {"pods": "110", **spec.capacity}  # a kubelet always reports how many pods it takes
    status = {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": _node_conditions(spec.ready_after <= 0, now_rfc3339()),
        "addresses": [
            {"type": "InternalIP", "address": f"10.224.{(4 + index) // 256}.{(4 + index) % 256}"},
            {"type": "Hostname", "address": spec.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": f"{index:032x}",
            "systemUUID": f"00000000-0000-0000-0000-{index:012x}",
            "bootID": f"00000000-0000-0000-0001-{index:012x}",
            "kernelVersion": "5.15.0-1079-azure",
            "osImage": "Ubuntu 22.04.5 LTS",
            "containerRuntimeVersion": "containerd://1.7.27-1",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }
    return node, status


def _lease(node: JsonObj) -> JsonObj:
    """The node's heartbeat Lease, taken once: the simulated kubelet never renews it, so an idle cluster stays quiet."""
    name = node["metadata"]["name"]
    owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": [owner]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()},
    }


class Nodes:
    """Registers nodes as a joining VM's kubelet does, turns them Ready, and takes them away with their pods."""

    def __init__(self, cluster: Cluster) -> None:
        self.api = Api(cluster, "kubelet")
        self._timers: set[asyncio.Task[None]] = set()

    async def add(self, spec: NodeSpec) -> None:
        node, status = _node(spec, self._free_index())
        created = await self.api.create(NODES, "", node)
        await self.api.update(NODES, {**created, "status": status}, status=True)
        await self.api.create(LEASES, "kube-node-lease", _lease(created))
        if spec.ready_after > 0:
            task = asyncio.create_task(self._ready_later(spec.name, spec.ready_after), name=f"node-ready-{spec.name}")
            self._timers.add(task)
            task.add_done_callback(self._timers.discard)

    async def remove(self, name: str) -> None:
        """Delete the node (no error if it is gone already) and the pods bound to it, as eviction would."""
        node = self.api.get(NODES, "", name)
        if node is not None:
            await self.api.delete(NODES, node)
        for pod in [p for p in self.api.items(PODS) if (p.get("spec") or {}).get("nodeName") == name]:
            await self.api.delete(PODS, pod)

    async def close(self) -> None:
        for task in list(self._timers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _free_index(self) -> int:
        used = {_cidr_index(str((node.get("spec") or {}).get("podCIDR", ""))) for node in self.api.items(NODES)}
        free = next((i for i in range(MAX_NODES) if i not in used and _pod_cidr(i) != _FALLBACK_POD_CIDR), None)
        if free is None:
            raise RuntimeError(f"the simulated cluster's pod network has room for {MAX_NODES} nodes; all are taken")
        return free

    async def _ready_later(self, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        node = self.api.get(NODES, "", name)
        if node is None:
            return
        status = {**(node.get("status") or {}), "conditions": _node_conditions(True, now_rfc3339())}
        try:
            await self.api.update(NODES, {**node, "status": status}, status=True)
        except Exception:
            log.exception("node %s could not turn Ready", name)


@dataclass
class KubeletConfig:
    """Knobs tests turn: how long pods take to become Ready, how long a Job's containers run, and whether some
    pods run as real local processes (`processes`; None simulates every container)."""

    pod_ready_delay: float = 0.0
    job_duration: float = 0.5
    processes: Processes | None = None


class Kubelet(Loop):
    """Runs every pod bound to a Ready node: reports its containers starting, finishing or failing."""

    name = "kubelet"
    watches: tuple[StorageKey, ...] = (PODS, NODES)

    def __init__(self, cluster: Cluster, *, config: KubeletConfig, faults: PodFaults) -> None:
        super().__init__(cluster)
        self.api = Api(cluster, "kubelet")
        self.config = config
        self.faults = faults
        self._episodes: dict[Key, Episode] = {}
        self._ips: dict[Key, tuple[str, str]] = {}
        self._emitted: dict[Key, set[tuple[str, str]]] = {}
        faults.subscribe(self._faults_changed)
        if config.processes is not None:
            config.processes.subscribe(self.enqueue)
            # A process pod's ConfigMap and Secret volumes follow their objects, as a kubelet's sync keeps them.
            self.watches = (PODS, NODES, CONFIGMAPS, SECRETS)

    def _bound(self, node: str | None = None) -> list[JsonObj]:
        pods = self.api.items(PODS)
        return [
            p for p in pods if (p.get("spec") or {}).get("nodeName") and (node is None or p["spec"]["nodeName"] == node)
        ]

    def initial_keys(self) -> Iterable[Key]:
        return [key_of(p) for p in self._bound()]

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        if event.storage_key == PODS:
            return [key_of(event.obj)]
        if event.storage_key in (CONFIGMAPS, SECRETS):
            meta = event.obj["metadata"]
            bound = [p for p in self._bound() if p["metadata"].get("namespace") == meta.get("namespace")]
            return [key_of(p) for p in bound if _mounts(p, event.storage_key == SECRETS, str(meta.get("name")))]
        return [key_of(p) for p in self._bound(event.obj["metadata"]["name"])]

    def _faults_changed(self) -> None:
        for key in self.initial_keys():
            self.enqueue(key)

    def _forget(self, key: Key) -> None:
        self._episodes.pop(key, None)
        self._ips.pop(key, None)
        self._emitted.pop(key, None)

    async def reconcile(self, key: Key) -> float | None:
        pod = self.api.get(PODS, *key)
        episode = self._episodes.get(key)
        if pod is None or (episode is not None and episode.uid != pod["metadata"].get("uid")):
            self._forget(key)
        processes = self.config.processes
        if processes is not None and (pod is None or is_terminal(pod) or pod["metadata"].get("deletionTimestamp")):
            processes.retire(key)
        if pod is not None and pod["metadata"].get("deletionTimestamp") and not pod["metadata"].get("finalizers"):
            if processes is None or not processes.busy(key):  # else called again once its processes have stopped
                self.api.finish_deletion(PODS, pod)  # graceful deletion: the containers stop at once
            return None
        if pod is None or is_terminal(pod) or pod["metadata"].get("deletionTimestamp"):
            return None
        node = self.api.get(NODES, "", str((pod.get("spec") or {}).get("nodeName") or ""))
        if node is None or not node_ready(node):
            return None
        now = self.clock()
        episode = self._episode(key, pod, now)
        timing = Timing(
            self.config.pod_ready_delay, self.config.job_duration, self.faults.backoff_seconds, self.faults.max_restarts
        )
        is_job = (controller_ref(pod) or {}).get("kind") == "Job"
        ips = self._ips_for(key, pod, node)
        runs = None
        if processes is not None and episode.fault is not None:
            processes.retire(key)  # a scripted fault stands in for the real process
        elif processes is not None:
            seen = {**pod, "status": {**(pod.get("status") or {}), "hostIP": ips[0], "podIP": ips[1]}}
            runs = processes.sync(key, seen)
            processes.refresh_volumes(key)
        report = build(pod, episode, now, timing, is_job=is_job, ips=ips, runs=runs)
        await self.api.update_status(PODS, pod, report.status)
        emitted = self._emitted.setdefault(key, set())
        for reason, message, path in report.events:
            if (reason, message) not in emitted:
                emitted.add((reason, message))
                await self.api.event(
                    pod, reason=reason, message=message, host=node["metadata"]["name"], field_path=path
                )
        return report.wake

    def _episode(self, key: Key, pod: JsonObj, now: float) -> Episode:
        """The current episode, begun anew when the fault in force for this pod changes."""
        fault = self.faults.match(pod)
        episode = self._episodes.get(key)
        if episode is not None and episode.fault == fault:
            return episode
        status = pod.get("status") or {}
        restarts = {
            str(s.get("name")): int(s.get("restartCount") or 0)
            for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
        }
        episode = Episode(str(pod["metadata"].get("uid")), fault, now, datetime.datetime.now(datetime.UTC), restarts)
        self._episodes[key] = episode
        return episode

    def _ips_for(self, key: Key, pod: JsonObj, node: JsonObj) -> tuple[str, str]:
        if key in self._ips:
            return self._ips[key]
        addresses = (node.get("status") or {}).get("addresses") or []
        host_ip = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "10.224.0.250")
        status = pod.get("status") or {}
        if (pod.get("spec") or {}).get("hostNetwork"):
            pod_ip = host_ip
        elif status.get("podIP"):
            pod_ip = str(status["podIP"])
        else:
            used = {str((p.get("status") or {}).get("podIP")) for p in self.api.items(PODS)}
            used |= {ip for _, ip in self._ips.values()}
            cidr = ipaddress.ip_network(str((node.get("spec") or {}).get("podCIDR") or _FALLBACK_POD_CIDR))
            pod_ip = next(str(ip) for ip in list(cidr.hosts())[1:] if str(ip) not in used)
        self._ips[key] = (host_ip, pod_ip)
        return self._ips[key]


def _mounts(pod: JsonObj, secret: bool, name: str) -> bool:
    """Whether `pod` has a volume of the ConfigMap (or Secret) `name`, directly or projected."""
    kind, field = ("secret", "secretName") if secret else ("configMap", "name")
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        sources = [volume, *((volume.get("projected") or {}).get("sources") or [])]
        for source in sources:
            ref = source.get(kind) or {}
            if ref.get(field) == name or (secret and ref.get("name") == name):
                return True
    return False
