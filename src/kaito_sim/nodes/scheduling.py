"""The simulated kube-scheduler: binds each pending pod to a feasible Ready node, or says why none fits."""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.immutability import BINDING
from kaito_sim.apiserver.objects import now_rfc3339
from kaito_sim.apiserver.store import WatchEvent
from kaito_sim.nodes.kubelet import node_ready
from kaito_sim.workloads.api import Api
from kaito_sim.workloads.common import NODES, PODS, Key, condition, is_terminal, key_of
from kaito_sim.workloads.loop import Loop

_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+))?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SCALE = {
    **{s: Fraction(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Fraction(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
}
_FIRST = ("cpu", "memory", "ephemeral-storage")  # the order the real scheduler reports shortages in
Usage = dict[str, Fraction]  # resource name -> amount requested by the pods on a node
NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
UNSCHEDULABLE = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"


def quantity(value: Any) -> Fraction:
    """A Kubernetes resource quantity ("100m", "16Gi", "1e3", 2) as an exact number."""
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"invalid quantity {value!r}")
    number, exponent, suffix = match.groups()
    return Fraction(number) * Fraction(10) ** int(exponent or 0) * _SCALE[suffix or ""]


def _container_requests(container: JsonObj) -> dict[str, Fraction]:
    resources = container.get("resources") or {}
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}  # requests default to limits
    return {name: quantity(v) for name, v in merged.items()}


def pod_requests(spec: JsonObj) -> dict[str, Fraction]:
    """What a pod needs from a node: its containers' sum, at least its largest init container, plus overhead."""
    total: dict[str, Fraction] = {}
    for container in spec.get("containers") or []:
        for name, amount in _container_requests(container).items():
            total[name] = total.get(name, Fraction(0)) + amount
    for container in spec.get("initContainers") or []:
        for name, amount in _container_requests(container).items():
            total[name] = max(total.get(name, Fraction(0)), amount)
    for name, value in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, Fraction(0)) + quantity(value)
    return {name: amount for name, amount in total.items() if amount > 0}


def tolerates(toleration: JsonObj, taint: JsonObj) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    exists = toleration.get("operator") == "Exists"
    if not toleration.get("key"):
        return exists  # an empty key with Exists tolerates every taint
    if toleration["key"] != taint.get("key"):
        return False
    return exists or (toleration.get("value") or "") == (taint.get("value") or "")


def _expression(expr: JsonObj, value: str | None) -> bool:
    op, values = expr.get("operator"), [str(v) for v in expr.get("values") or []]
    if op in ("Gt", "Lt"):
        if value is None or not values or not re.fullmatch(r"-?\d+", value) or not re.fullmatch(r"-?\d+", values[0]):
            return False
        return int(value) > int(values[0]) if op == "Gt" else int(value) < int(values[0])
    return {
        "In": value is not None and value in values,
        "NotIn": value is None or value not in values,
        "Exists": value is not None,
        "DoesNotExist": value is None,
    }.get(str(op), False)


def _term(term: JsonObj, node: JsonObj) -> bool:
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term selects no node
    labels = node["metadata"].get("labels") or {}
    name = node["metadata"]["name"]
    return all(_expression(e, labels.get(e.get("key"))) for e in exprs) and all(
        _expression(f, name if f.get("key") == "metadata.name" else None) for f in fields
    )


def affinity_matches(spec: JsonObj, node: JsonObj) -> bool:
    """nodeSelector and required node affinity (terms ORed, expressions within a term ANDed)."""
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return True
    return any(_term(t, node) for t in required.get("nodeSelectorTerms") or [])


def _taints(node: JsonObj) -> list[JsonObj]:
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
    return ([] if node_ready(node) else [NOT_READY]) + taints


def filter_node(spec: JsonObj, need: dict[str, Fraction], node: JsonObj, used: Usage, pods: int) -> list[str]:
    """Why the pod cannot go to the node (empty when it can), from the first failing check, as the scheduler does."""
    tolerations = spec.get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable") and not any(tolerates(t, UNSCHEDULABLE) for t in tolerations):
        return ["node(s) were unschedulable"]
    for taint in _taints(node):
        if not any(tolerates(t, taint) for t in tolerations):
            return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"]
    if not affinity_matches(spec, node):
        return ["node(s) didn't match Pod's node affinity/selector"]
    allocatable = {k: quantity(v) for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()}
    reasons = ["Too many pods"] if pods + 1 > allocatable.get("pods", Fraction(0)) else []
    for name in sorted(need, key=lambda n: (_FIRST.index(n) if n in _FIRST else len(_FIRST), n)):
        if need[name] > allocatable.get(name, Fraction(0)) - used.get(name, Fraction(0)):
            reasons.append(f"Insufficient {name}")
    return reasons


def _histogram(reasons: Iterable[str]) -> str:
    return ", ".join(sorted(f"{count} {reason}" for reason, count in Counter(reasons).items()))


def fit_error(failures: list[list[str]]) -> str:
    """The message the real scheduler gives when no node fits, from each node's reasons."""
    if not failures:
        return "no nodes available to schedule pods"
    n = len(failures)
    resource_only = [all(r.startswith("Insufficient") or r == "Too many pods" for r in f) for f in failures]
    preemption = _histogram(NO_VICTIMS if only else NOT_HELPFUL for only in resource_only)
    return (
        f"0/{n} nodes are available: {_histogram(r for f in failures for r in f)}. "
        f"preemption: 0/{n} nodes are available: {preemption}."
    )


class Scheduler(Loop):
    """Places pods of the default scheduler; retries unschedulable ones whenever nodes or pods change."""

    name = "scheduler"
    watches = (PODS, NODES)

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.api = Api(cluster, "default-scheduler")
        self._reported: dict[Key, tuple[str, str]] = {}  # pod -> (uid, last FailedScheduling message)

    def _pending(self) -> list[Key]:
        pods = self.api.items(PODS)
        return [key_of(p) for p in pods if not p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")]

    def initial_keys(self) -> Iterable[Key]:
        return self._pending()

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        pod = event.obj
        if event.storage_key == NODES:
            return self._pending()
        if not (pod.get("spec") or {}).get("nodeName"):
            return [key_of(pod), *(self._pending() if event.type == "DELETED" else [])]
        freed = event.type == "DELETED" or (is_terminal(pod) and not (event.old and is_terminal(event.old)))
        return self._pending() if freed else []

    def _usage(self) -> tuple[dict[str, Usage], Counter[str]]:
        used: dict[str, Usage] = {}
        counts: Counter[str] = Counter()
        for pod in self.api.items(PODS):
            node = (pod.get("spec") or {}).get("nodeName")
            if node and not is_terminal(pod):
                usage = used.setdefault(node, {})
                for name, amount in pod_requests(pod["spec"]).items():
                    usage[name] = usage.get(name, Fraction(0)) + amount
                counts[node] += 1
        return used, counts

    async def reconcile(self, key: Key) -> float | None:
        pod = self.api.get(PODS, *key)
        spec: JsonObj = (pod or {}).get("spec") or {}
        if pod is None or spec.get("nodeName"):
            self._reported.pop(key, None)
            return None
        if pod["metadata"].get("deletionTimestamp") or is_terminal(pod):
            return None
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return None
        need = pod_requests(spec)
        used, counts = self._usage()
        feasible: list[tuple[Fraction, str]] = []
        failures: list[list[str]] = []
        for node in self.api.items(NODES):
            name = node["metadata"]["name"]
            reasons = filter_node(spec, need, node, used.get(name, {}), counts[name])
            if reasons:
                failures.append(reasons)
            else:
                feasible.append((-self._free_share(node, used.get(name, {}), need), name))
        if feasible:
            await self._bind(pod, min(feasible)[1])
        else:
            await self._unschedulable(key, pod, fit_error(failures))
        return None

    @staticmethod
    def _free_share(node: JsonObj, used: Usage, need: dict[str, Fraction]) -> Fraction:
        """Least-allocated scoring: how much cpu and memory would stay free, as shares of allocatable."""
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        share = Fraction(0)
        for name in ("cpu", "memory"):
            total = quantity(allocatable.get(name, 0))
            if total > 0:
                share += (total - used.get(name, Fraction(0)) - need.get(name, Fraction(0))) / total
        return share

    async def _bind(self, pod: JsonObj, node: str) -> None:
        body = copy.deepcopy(pod)
        body["spec"]["nodeName"] = node
        token = BINDING.set(True)
        try:
            await self.api.update(PODS, body)
        finally:
            BINDING.reset(token)
        ns, name = key_of(pod)
        await self.api.event(
            pod, reason="Scheduled", message=f"Successfully assigned {ns}/{name} to {node}", warning=False
        )

    async def _unschedulable(self, key: Key, pod: JsonObj, message: str) -> None:
        status: JsonObj = pod.get("status") or {}
        was = condition(pod, "PodScheduled") or {}
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        if any(was.get(k) != v for k, v in cond.items()):
            kept = was.get("lastTransitionTime") if was.get("status") == "False" else None
            cond["lastTransitionTime"] = kept or now_rfc3339()
            others = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            await self.api.update_status(PODS, pod, {**status, "conditions": [*others, cond]})
        uid = str(pod["metadata"].get("uid"))
        if self._reported.get(key) != (uid, message):
            self._reported[key] = (uid, message)
            await self.api.event(pod, reason="FailedScheduling", message=message)
