"""Defaults the real API server fills in for built-in kinds, so objects read back as they would from a cluster."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from typing import Any

from kaito_sim.apiserver.errors import JsonObj

DEFAULT_SERVICE_CIDR = "10.96.0.0/12"  # kube-apiserver's default --service-cluster-ip-range


def _pod_spec(spec: JsonObj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    if spec.get("serviceAccountName"):
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(container, dict):
            continue
        image = str(container.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def _template(obj: JsonObj) -> None:
    template = (obj.get("spec") or {}).get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        _pod_spec(template["spec"])


def _deployment(obj: JsonObj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    _template(obj)


def _statefulset(obj: JsonObj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    update = spec.setdefault("updateStrategy", {})
    update.setdefault("type", "RollingUpdate")
    if update["type"] == "RollingUpdate":
        update.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    _template(obj)


def _job(obj: JsonObj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    _template(obj)
    template_spec = ((spec.get("template") or {}).get("spec")) or {}
    if isinstance(template_spec, dict) and template_spec.get("restartPolicy") == "Always":
        template_spec["restartPolicy"] = "Never"


def _pod(obj: JsonObj) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        _pod_spec(spec)
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)


def _service(obj: JsonObj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))


def _secret(obj: JsonObj) -> None:
    obj.setdefault("type", "Opaque")


def _namespace(obj: JsonObj) -> None:
    name = obj["metadata"].get("name", "")
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])


DEFAULTERS: dict[tuple[str, str], Callable[[JsonObj], None]] = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "ReplicaSet"): _template,
    ("batch", "Job"): _job,
    ("", "Pod"): _pod,
    ("", "Service"): _service,
    ("", "Secret"): _secret,
    ("", "Namespace"): _namespace,
}


def apply_builtin_defaults(group: str, obj: JsonObj) -> None:
    """Fill server defaults into `obj` in place (a no-op for kinds without defaults)."""
    defaulter = DEFAULTERS.get((group, str(obj.get("kind", ""))))
    if defaulter is not None:
        defaulter(obj)


class ClusterIPAllocator:
    """Hands out Service cluster IPs from the service CIDR, never the same one twice while in use.

    As kube-apiserver does, a new Service gets an address picked at random (the first host is the `kubernetes`
    Service's): two clusters sharing a range on one machine (their ClusterIPs on loopback) rarely meet.
    """

    def __init__(self, cidr: str = DEFAULT_SERVICE_CIDR, *, rng: random.Random | None = None) -> None:
        self.network = ipaddress.IPv4Network(cidr)
        if self.network.num_addresses < 4:
            raise ValueError(f"service CIDR {cidr} is too small: it needs room for at least one Service")
        self._rng = rng or random.Random()
        self._in_use: set[str] = set()

    @property
    def first(self) -> str:
        """The range's first host: the `kubernetes` Service's ClusterIP."""
        return str(self.network.network_address + 1)

    def allocate(self, service: JsonObj) -> None:
        spec: Any = service.get("spec") or {}
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
            if spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            return
        ip = spec.get("clusterIP") or self._next()
        self._in_use.add(ip)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]

    def release(self, service: JsonObj) -> None:
        self._in_use.discard(str((service.get("spec") or {}).get("clusterIP", "")))

    def _next(self) -> str:
        hosts = self.network.num_addresses - 3  # less the network address, the first host and the broadcast
        start = self._rng.randrange(hosts)
        for step in range(hosts):
            ip = str(self.network.network_address + 2 + (start + step) % hosts)
            if ip not in self._in_use:
                return ip
        raise RuntimeError("service CIDR exhausted")
