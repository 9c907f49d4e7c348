"""The simulated cluster's state and read paths: store, served types, namespaces and version conversion."""

from __future__ import annotations

from dataclasses import dataclass, field

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.admission import AdmissionAttributes, ServiceResolver, mutate_admission, validate_admission
from kaito_sim.apiserver.builtin_defaults import DEFAULT_SERVICE_CIDR, ClusterIPAllocator
from kaito_sim.apiserver.conversion import as_version
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.objects import new_uid, now_rfc3339
from kaito_sim.apiserver.resources import Registry, ResourceType
from kaito_sim.apiserver.store import DEFAULT_HISTORY, Store

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NAMESPACES = ("", "namespaces")
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
VALIDATING_WEBHOOKS = ("admissionregistration.k8s.io", "validatingwebhookconfigurations")
MUTATING_WEBHOOKS = ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")


@dataclass
class WriteOptions:
    """Query parameters and identity that shape one write."""

    field_manager: str = ""
    field_validation: str = "Strict"  # Strict | Warn | Ignore
    dry_run: bool = False
    force: bool = False
    user: str = "kaito-admin"
    warnings: list[str] = field(default_factory=list)


class Cluster:
    """Objects, served types and the counters that outlive single requests."""

    def __init__(self, *, history_size: int = DEFAULT_HISTORY, service_cidr: str = DEFAULT_SERVICE_CIDR) -> None:
        self.store = Store(history_size=history_size)
        self.registry = Registry()
        self.cluster_ips = ClusterIPAllocator(service_cidr)
        self.pod_logs: dict[tuple[str, str, str], list[str]] = {}  # (namespace, pod, container) -> lines
        self.webhook_services: ServiceResolver | None = None  # where webhooks by clientConfig.service listen
        for name in INITIAL_NAMESPACES:
            self.seed(
                NAMESPACES,
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                },
            )
            self.seed_namespace_defaults(name)
        kubernetes = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": self.cluster_ips.first,
                "clusterIPs": [self.cluster_ips.first],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                "sessionAffinity": "None",
            },
            "status": {"loadBalancer": {}},
        }
        self.seed(("", "services"), kubernetes)

    def seed(self, key: tuple[str, str], obj: JsonObj) -> None:
        """Store an object the control plane itself creates (no admission, no validation)."""
        obj["metadata"].update(
            uid=new_uid(), resourceVersion=str(self.store.next_rv()), creationTimestamp=now_rfc3339()
        )
        self.store.put(key, obj, old=None)

    def seed_namespace_defaults(self, namespace: str) -> None:
        """What controllers create in every namespace: the `default` ServiceAccount."""
        if self.store.get(("", "serviceaccounts"), namespace, "default") is None:
            self.seed(
                ("", "serviceaccounts"),
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}},
            )

    def append_log(self, namespace: str, pod: str, container: str, line: str) -> None:
        """What a simulated container prints; served by `pods/log`."""
        self.pod_logs.setdefault((namespace, pod, container), []).append(line if line.endswith("\n") else line + "\n")

    def get(self, rt: ResourceType, ns: str, name: str) -> JsonObj:
        """The live object in the requested version, or 404."""
        obj = self.store.get(rt.storage_key, ns if rt.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return as_version(obj, rt.group_version)

    def find(self, rt: ResourceType, ns: str, name: str) -> JsonObj | None:
        obj = self.store.get(rt.storage_key, ns if rt.namespaced else "", name)
        return None if obj is None else as_version(obj, rt.group_version)

    def require_namespace(self, ns: str, *, creating: bool) -> JsonObj:
        namespace = self.store.get(NAMESPACES, "", ns)
        if namespace is None:
            raise errors.not_found("namespaces", "", ns)
        if creating and namespace["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f"unable to create new content in namespace {ns} because it is being terminated",
                {"name": ns, "kind": "namespaces"},
            )
        return namespace

    def namespace_labels(self, ns: str) -> dict[str, str] | None:
        namespace = self.store.get(NAMESPACES, "", ns)
        return None if namespace is None else dict(namespace["metadata"].get("labels") or {})

    def validating_webhooks(self) -> list[JsonObj]:
        return self.store.items(VALIDATING_WEBHOOKS)

    def mutating_webhooks(self) -> list[JsonObj]:
        return self.store.items(MUTATING_WEBHOOKS)

    def type_for_storage(self, key: tuple[str, str]) -> ResourceType | None:
        """Any served type of a stored group/resource (for cleanup paths that lack a version)."""
        for rt in self.registry:
            if rt.storage_key == key:
                return rt
        return None

    async def mutate(
        self,
        rt: ResourceType,
        operation: str,
        *,
        obj: JsonObj,
        old: JsonObj | None,
        opts: WriteOptions,
        subresource: str = "",
    ) -> JsonObj:
        """Run matching mutating webhooks; returns the object as they left it, warnings are added to `opts`."""
        if rt.group == "admissionregistration.k8s.io":
            return obj  # webhooks never gate their own configuration, or a bad one could lock the cluster
        configs = self.mutating_webhooks()
        if not configs:
            return obj
        attrs = self._attributes(rt, operation, obj=obj, old=old, opts=opts, subresource=subresource)
        mutated, warnings = await mutate_admission(configs, attrs, services=self.webhook_services)
        opts.warnings.extend(warnings)
        return obj if mutated is None else mutated

    async def admit(
        self,
        rt: ResourceType,
        operation: str,
        *,
        obj: JsonObj | None,
        old: JsonObj | None,
        opts: WriteOptions,
        subresource: str = "",
    ) -> None:
        """Run matching validating webhooks; a denial raises, warnings are added to `opts`."""
        if rt.group == "admissionregistration.k8s.io":
            return  # webhooks never gate their own configuration, or a bad one could lock the cluster
        configs = self.validating_webhooks()
        if not configs:
            return
        attrs = self._attributes(rt, operation, obj=obj, old=old, opts=opts, subresource=subresource)
        opts.warnings.extend(await validate_admission(configs, attrs, services=self.webhook_services))

    def _attributes(
        self,
        rt: ResourceType,
        operation: str,
        *,
        obj: JsonObj | None,
        old: JsonObj | None,
        opts: WriteOptions,
        subresource: str,
    ) -> AdmissionAttributes:
        target = obj if obj is not None else old
        assert target is not None
        meta = target["metadata"]
        ns = meta.get("namespace", "") if rt.namespaced else ""
        return AdmissionAttributes(
            operation=operation,
            group=rt.group,
            version=rt.version,
            resource=rt.plural,
            subresource=subresource,
            kind=rt.kind,
            name=meta["name"],
            namespace=ns,
            obj=obj,
            old_obj=old,
            namespace_labels=self.namespace_labels(ns) if rt.namespaced else None,
            user=opts.user,
            dry_run=opts.dry_run,
        )
