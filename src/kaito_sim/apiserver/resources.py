"""The resource types the simulated server serves: built-in kinds plus those custom resource definitions add."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "log": ("get",),
    "exec": ("create", "get"),
    "attach": ("create", "get"),
    "portforward": ("create", "get"),
}


@dataclass(frozen=True)
class ScalePaths:
    """Where a scale subresource reads and writes replica counts (CRD `subresources.scale`)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = ".status.selector"


@dataclass(frozen=True)
class ResourceType:
    """One served group/version/resource and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    scale: ScalePaths | None = None
    # Custom resources only: the owning CRD's name, storage version, schema and printer columns.
    crd_name: str | None = None
    storage_version: str = ""
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)
    # Kinds stored under another group (events.k8s.io Events live with core Events).
    storage_group: str | None = None

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects of every version of one group/resource share storage."""
        return (self.group if self.storage_group is None else self.storage_group, self.plural)

    @property
    def is_custom(self) -> bool:
        return self.crd_name is not None

    @property
    def stored_api_version(self) -> str:
        version = self.storage_version or self.version
        group = self.group if self.storage_group is None else self.storage_group
        return f"{group}/{version}" if group else version

    def has(self, subresource: str) -> bool:
        return subresource in self.subresources


def _b(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    cats: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
    scale: ScalePaths | None = None,
) -> ResourceType:
    return ResourceType(group, version, plural, kind, kind.lower(), namespaced, short, cats, sub, ALL_VERBS, scale)


_APPS_SCALE = ScalePaths(label_selector=None)


def _apps_workload(plural: str, kind: str, short: str) -> ResourceType:
    """Deployments, StatefulSets and ReplicaSets: in `all`, with status and scale subresources."""
    return _b("apps", "v1", plural, kind, short=(short,), cats=("all",), sub=("status", "scale"), scale=_APPS_SCALE)


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _b("", "v1", "namespaces", "Namespace", namespaced=False, short=("ns",), sub=("status",)),
    _b("", "v1", "nodes", "Node", namespaced=False, short=("no",), sub=("status",)),
    _b("", "v1", "pods", "Pod", short=("po",), cats=("all",), sub=("status", "log", "exec", "attach", "portforward")),
    _b("", "v1", "services", "Service", short=("svc",), cats=("all",), sub=("status",)),
    _b("", "v1", "endpoints", "Endpoints", short=("ep",)),
    _b("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    _b("", "v1", "secrets", "Secret"),
    _b("", "v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _b("", "v1", "events", "Event", short=("ev",)),
    _b("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), sub=("status",)),
    _b("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False, short=("pv",), sub=("status",)),
    _b("", "v1", "resourcequotas", "ResourceQuota", short=("quota",), sub=("status",)),
    _b("", "v1", "limitranges", "LimitRange", short=("limits",)),
    _apps_workload("deployments", "Deployment", "deploy"),
    _apps_workload("statefulsets", "StatefulSet", "sts"),
    _apps_workload("replicasets", "ReplicaSet", "rs"),
    _b("apps", "v1", "controllerrevisions", "ControllerRevision"),
    _b(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        short=("ds",),
        cats=("all",),
        sub=("status",),
    ),
    _b("batch", "v1", "jobs", "Job", cats=("all",), sub=("status",)),
    _b("batch", "v1", "cronjobs", "CronJob", short=("cj",), cats=("all",), sub=("status",)),
    _b("networking.k8s.io", "v1", "ingresses", "Ingress", short=("ing",), sub=("status",)),
    _b("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short=("netpol",)),
    _b("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    _b("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",), sub=("status",)),
    _b("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", namespaced=False, short=("pc",)),
    _b("storage.k8s.io", "v1", "storageclasses", "StorageClass", namespaced=False, short=("sc",)),
    _b("coordination.k8s.io", "v1", "leases", "Lease"),
    replace(_b("events.k8s.io", "v1", "events", "Event", short=("ev",)), storage_group="", storage_version="v1"),
    _b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=("crd", "crds"),
        sub=("status",),
    ),
    _b(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        namespaced=False,
    ),
    _b(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        namespaced=False,
    ),
    _b("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    _b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
)


class Registry:
    """Served resource types by (group, version, plural); custom types come and go with their CRDs."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._by_crd: dict[str, list[ResourceType]] = {}
        self.generation = 0
        for rt in BUILTIN_TYPES:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._types.values()))

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred (first registered / storage) first."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group == group and rt.version == version]

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        for rt in self._types.values():
            if (rt.group, rt.version, rt.kind) == (group, version, kind):
                return rt
        return None

    def set_custom(self, crd_name: str, types: list[ResourceType]) -> None:
        """Replace the types a CRD serves (an empty list stops serving them)."""
        for old in self._by_crd.pop(crd_name, []):
            self._types.pop((old.group, old.version, old.plural), None)
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt
        if types:
            self._by_crd[crd_name] = types
        self.generation += 1
