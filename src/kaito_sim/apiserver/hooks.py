"""Kind-specific side effects of writes: what controllers built into kube-apiserver do for some kinds.

Service cluster IPs, initial Pod and Namespace status, CRD status and the serving of custom types.
"""

from __future__ import annotations

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.crds import established_status, served_types
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.resources import ResourceType

_CRD = ("apiextensions.k8s.io", "customresourcedefinitions")


def before_create(cluster: Cluster, rt: ResourceType, obj: JsonObj) -> None:
    key = rt.storage_key
    if key == ("", "services"):
        cluster.cluster_ips.allocate(obj)
        obj["status"] = {"loadBalancer": {}}
    elif key == ("", "pods"):
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj)}
    elif key == ("", "namespaces"):
        obj["status"] = {"phase": "Active"}
    elif key == _CRD:
        obj["status"] = established_status(obj, None)
    elif rt.has("status") and key in (
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "replicasets"),
    ):
        obj["status"] = {"replicas": 0, "availableReplicas": 0, "readyReplicas": 0}


def abandon_create(cluster: Cluster, rt: ResourceType, obj: JsonObj) -> None:
    """Undo what `before_create` reserved for a create that was refused or only a dry run."""
    if rt.storage_key == ("", "services"):
        cluster.cluster_ips.release(obj)


def before_update(cluster: Cluster, rt: ResourceType, old: JsonObj, new: JsonObj) -> None:
    if rt.storage_key == _CRD and old.get("spec") != new.get("spec"):
        new["status"] = established_status(new, new.get("status") or old.get("status"))
    if rt.storage_key == ("", "services"):
        old_spec, spec = old.get("spec") or {}, new.setdefault("spec", {})
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"], spec["clusterIPs"] = old_spec["clusterIP"], old_spec.get("clusterIPs")


def after_write(cluster: Cluster, rt: ResourceType, obj: JsonObj, *, created: bool) -> None:
    if created and rt.storage_key == ("", "namespaces"):
        cluster.seed_namespace_defaults(obj["metadata"]["name"])
    if rt.storage_key == _CRD and not obj["metadata"].get("deletionTimestamp"):
        cluster.registry.set_custom(obj["metadata"]["name"], served_types(obj))


def after_remove(cluster: Cluster, rt: ResourceType, obj: JsonObj) -> None:
    if rt.storage_key == _CRD:
        cluster.registry.set_custom(obj["metadata"]["name"], [])
        cluster.store.close_subscriptions((obj["spec"]["group"], obj["spec"]["names"]["plural"]))
    elif rt.storage_key == ("", "services"):
        cluster.cluster_ips.release(obj)


def _qos_class(pod: JsonObj) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    resources = [c.get("resources") or {} for c in containers if isinstance(c, dict)]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        r.get("limits") and all(r.get("requests", {}).get(k, v) == v for k, v in r["limits"].items()) for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"
