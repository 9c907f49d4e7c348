"""The endpoints and EndpointSlice controllers: each Service with a selector lists its pods' IPs and ports."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.store import WatchEvent
from kaito_sim.workloads.api import Api
from kaito_sim.workloads.common import ENDPOINTS, PODS, SERVICES, SLICES, Key, is_active, is_ready, key_of, owner_ref
from kaito_sim.workloads.loop import Loop

Port = tuple[str, int, str]  # (name, port, protocol)
MANAGED_BY = "endpointslice-controller.k8s.io"


@dataclass(frozen=True)
class _Member:
    pod: JsonObj
    ready: bool
    ports: tuple[Port, ...]

    @property
    def ip(self) -> str:
        return str(self.pod["status"]["podIP"])

    def address(self, service: str) -> JsonObj:
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        out: JsonObj = {"ip": self.ip}
        if spec.get("hostname") and spec.get("subdomain") == service:
            out["hostname"] = spec["hostname"]
        if spec.get("nodeName"):
            out["nodeName"] = spec["nodeName"]
        out["targetRef"] = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}
        return out


def _target(port: JsonObj, pod: JsonObj) -> int | None:
    """The pod's port a service port sends to: a number, or a container port found by name."""
    target = str(port.get("targetPort", port.get("port")))
    if target.isdigit():
        return int(target)
    protocol = port.get("protocol", "TCP")
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            if declared.get("name") == target and declared.get("protocol", "TCP") == protocol:
                return int(declared.get("containerPort") or 0)
    return None


def _ports(service: JsonObj, pod: JsonObj) -> tuple[Port, ...]:
    out = []
    for port in (service.get("spec") or {}).get("ports") or []:
        number = _target(port, pod)
        if number is not None:
            out.append((str(port.get("name") or ""), number, str(port.get("protocol", "TCP"))))
    return tuple(out)


def _port_list(ports: tuple[Port, ...], *, keep_empty_name: bool) -> list[JsonObj]:
    return [
        {**({"name": n} if n or keep_empty_name else {}), "port": number, "protocol": protocol}
        for n, number, protocol in ports
    ]


def _selects(service: JsonObj, labels: JsonObj) -> bool:
    """Whether the Service's selector (a non-empty one) picks pods with these labels."""
    selector = (service.get("spec") or {}).get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class EndpointsController(Loop):
    """Keeps Endpoints (`endpoint-controller`) and EndpointSlices (`endpointslice-controller`) in step with pods."""

    name = "endpoint-controller"
    watches = (SERVICES, PODS)

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.api = Api(cluster, "endpoint-controller")
        self.slices = Api(cluster, "endpointslice-controller")
        self._managed: set[Key] = set()

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        """A Service's own changes, and for a pod the Services that select it now or selected it before."""
        if event.storage_key == SERVICES:
            return [key_of(event.obj)]
        ns = event.obj["metadata"].get("namespace", "")
        labels = [(pod["metadata"].get("labels") or {}) for pod in (event.obj, event.old) if pod is not None]
        return [
            key_of(service)
            for service in self.api.items(SERVICES, ns)
            if any(_selects(service, pod_labels) for pod_labels in labels)
        ]

    async def reconcile(self, key: Key) -> float | None:
        service = self.api.get(SERVICES, *key)
        selector = ((service or {}).get("spec") or {}).get("selector") or {}
        if service is None or not selector or service["metadata"].get("deletionTimestamp"):
            if key in self._managed:
                self._managed.discard(key)
                endpoints = self.api.get(ENDPOINTS, *key)
                if endpoints is not None:
                    await self.api.delete(ENDPOINTS, endpoints)
            return None
        self._managed.add(key)
        publish = bool(service["spec"].get("publishNotReadyAddresses"))
        members = []
        for pod in self.api.items(PODS, key[0]):
            if not is_active(pod) or not (pod.get("status") or {}).get("podIP"):
                continue
            if not _selects(service, pod["metadata"].get("labels") or {}):
                continue
            ports = _ports(service, pod)
            if ports or not service["spec"].get("ports"):
                members.append(_Member(pod, publish or is_ready(pod), ports))
        members.sort(key=lambda m: ipaddress.ip_address(m.ip))
        await self._endpoints(service, members)
        await self._slices(service, members)
        return None

    async def _endpoints(self, service: JsonObj, members: list[_Member]) -> None:
        ns, name = key_of(service)
        groups: dict[tuple[Port, ...], list[_Member]] = {}
        for member in members:
            groups.setdefault(member.ports, []).append(member)
        subsets = []
        for ports, group in sorted(groups.items()):
            subset: JsonObj = {
                "addresses": [m.address(name) for m in group if m.ready],
                "notReadyAddresses": [m.address(name) for m in group if not m.ready],
                "ports": _port_list(ports, keep_empty_name=False),
            }
            subsets.append({k: v for k, v in subset.items() if v})
        labels = dict(service["metadata"].get("labels") or {})
        existing = self.api.get(ENDPOINTS, ns, name)
        body: JsonObj = copy.deepcopy(existing) if existing else {"metadata": {"name": name, "namespace": ns}}
        body["metadata"]["labels"] = labels
        body.pop("subsets", None)
        if subsets:
            body["subsets"] = subsets
        if existing is None:
            await self.api.create(ENDPOINTS, ns, {"apiVersion": "v1", "kind": "Endpoints", **body})
        elif (existing.get("subsets") or []) != subsets or (existing["metadata"].get("labels") or {}) != labels:
            await self.api.update(ENDPOINTS, body)

    async def _slices(self, service: JsonObj, members: list[_Member]) -> None:
        ns, name = key_of(service)
        groups: dict[tuple[Port, ...], list[_Member]] = {} if members else {(): []}
        for member in members:
            groups.setdefault(member.ports, []).append(member)
        labels = {
            **(service["metadata"].get("labels") or {}),
            "kubernetes.io/service-name": name,
            "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
        }
        existing = {
            tuple((p.get("name", ""), p.get("port"), p.get("protocol")) for p in s.get("ports") or []): s
            for s in self.slices.owned(SLICES, service)
        }
        for ports, group in groups.items():
            endpoints = [self._endpoint(m, name) for m in group]
            current = existing.pop(ports, None)
            if current is None:
                body: JsonObj = {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {"generateName": f"{name}-", "labels": labels, "ownerReferences": [owner_ref(service)]},
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                }
                if ports:
                    body["ports"] = _port_list(ports, keep_empty_name=True)
                await self.slices.create(SLICES, ns, body)
            elif current.get("endpoints") != endpoints or current["metadata"].get("labels") != labels:
                updated = copy.deepcopy(current)
                updated["metadata"]["labels"] = labels
                updated["endpoints"] = endpoints
                await self.slices.update(SLICES, updated)
        for stale in existing.values():
            await self.slices.delete(SLICES, stale)

    @staticmethod
    def _endpoint(member: _Member, service: str) -> JsonObj:
        address = member.address(service)
        out: JsonObj = {
            "addresses": [member.ip],
            "conditions": {"ready": member.ready, "serving": member.ready, "terminating": False},
        }
        for field in ("hostname", "nodeName", "targetRef"):
            if field in address:
                out[field] = address[field]
        return out
