"""Cell values of built-in kinds' Tables, plus the age formatting that CRD date columns share.

Each `*_row` returns one cell per column of that kind in `tables.PRINTERS`, wide columns included, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.apiserver.selectors import label_selector_from_match

Row = Callable[[JsonObj, datetime], list[Any]]


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (`Z` or offset, optional fraction) as an aware datetime; None if unparsable."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_duration(delta: timedelta) -> str:
    """Render like apimachinery's HumanDuration: coarser units as spans grow, `<invalid>` if negative."""
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    minutes, hours = seconds // 60, seconds // 3600
    days = hours // 24
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return _pair(minutes, "m", seconds % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return _pair(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _pair(days, "d", hours % 24, "h")
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return _pair(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _pair(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def human_age(created: str | None, now: datetime) -> str:
    """Age of a timestamp at `now`: `<unknown>` when absent, `<invalid>` when unparsable or in the future."""
    if not created:
        return "<unknown>"
    when = parse_time(created)
    if when is None:
        return "<invalid>"
    return human_duration((now if now.tzinfo else now.replace(tzinfo=UTC)) - when)


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _or_none(values: Sequence[str]) -> str:
    return ",".join(values) if values else "<none>"


def _age(obj: JsonObj, now: datetime) -> str:
    return human_age(_get(obj, "metadata", "creationTimestamp"), now)


def _name(obj: JsonObj) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _containers(pod_spec: Any) -> list[str]:
    containers = _get(pod_spec, "containers") or []
    return [",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)]


def _selector(selector: Any) -> str:
    if not isinstance(selector, dict) or not selector:
        return "<none>"
    try:
        return str(label_selector_from_match(selector)) or "<none>"
    except ApiError:
        return "<invalid>"


def _map_selector(selector: Any) -> str:
    return _or_none([f"{k}={v}" for k, v in sorted((selector or {}).items())])


def deployment_row(obj: JsonObj, now: datetime) -> list[Any]:
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    desired = spec.get("replicas", 1)
    return [
        _name(obj),
        f"{status.get('readyReplicas', 0)}/{desired}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(obj, now),
        *_containers(_get(spec, "template", "spec")),
        _selector(spec.get("selector")),
    ]


def statefulset_row(obj: JsonObj, now: datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    ready = f"{_get(obj, 'status', 'readyReplicas') or 0}/{spec.get('replicas', 1)}"
    return [_name(obj), ready, _age(obj, now), *_containers(_get(spec, "template", "spec"))]


def _external_ips(svc: JsonObj) -> str:
    spec = svc.get("spec") or {}
    kind, external = spec.get("type", "ClusterIP"), list(spec.get("externalIPs") or [])
    if kind == "ExternalName":
        return str(spec.get("externalName") or "<none>")
    if kind == "LoadBalancer":
        ingress = _get(svc, "status", "loadBalancer", "ingress") or []
        found = [i.get("ip") or i.get("hostname") or "" for i in ingress] + external
        return ",".join(found) if found else "<pending>"
    return _or_none(external)


def _ports(spec: JsonObj) -> str:
    rendered = []
    for port in spec.get("ports") or []:
        node = f":{port['nodePort']}" if port.get("nodePort") else ""
        rendered.append(f"{port.get('port')}{node}/{port.get('protocol', 'TCP')}")
    return _or_none(rendered)


def service_row(obj: JsonObj, now: datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    return [
        _name(obj),
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        _external_ips(obj),
        _ports(spec),
        _age(obj, now),
        _map_selector(spec.get("selector")),
    ]


def _node_status(node: JsonObj) -> str:
    ready = next((c for c in _get(node, "status", "conditions") or [] if c.get("type") == "Ready"), None)
    status = "Unknown" if ready is None else "Ready" if ready.get("status") == "True" else "NotReady"
    return status + (",SchedulingDisabled" if _get(node, "spec", "unschedulable") else "")


def _node_roles(node: JsonObj) -> str:
    roles = set()
    for key, value in (_get(node, "metadata", "labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key.split("/", 1)[1]:
            roles.add(key.split("/", 1)[1])
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    return _or_none(sorted(roles))


def _node_address(node: JsonObj, kind: str) -> str:
    found = [a.get("address", "") for a in _get(node, "status", "addresses") or [] if a.get("type") == kind]
    return found[0] if found else "<none>"


def node_row(obj: JsonObj, now: datetime) -> list[Any]:
    info = _get(obj, "status", "nodeInfo") or {}
    return [
        _name(obj),
        _node_status(obj),
        _node_roles(obj),
        _age(obj, now),
        info.get("kubeletVersion", ""),
        _node_address(obj, "InternalIP"),
        _node_address(obj, "ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def job_status(job: JsonObj) -> str:
    """Complete or Failed first, then Terminating while deleted, then Suspended/FailureTarget, else Running."""
    true = {c.get("type") for c in _get(job, "status", "conditions") or [] if c.get("status") == "True"}
    if finished := next((t for t in ("Complete", "Failed") if t in true), None):
        return finished
    if _get(job, "metadata", "deletionTimestamp"):
        return "Terminating"
    return next((t for t in ("Suspended", "FailureTarget") if t in true), "Running")


def job_row(obj: JsonObj, now: datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    else:
        parallelism = spec.get("parallelism") or 0
        completions = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = "" if start is None else human_duration((end or now) - start)
    rest = [*_containers(_get(spec, "template", "spec")), _selector(spec.get("selector"))]
    return [_name(obj), job_status(obj), completions, duration, _age(obj, now), *rest]


def event_row(obj: JsonObj, now: datetime) -> list[Any]:
    first = obj.get("firstTimestamp") or obj.get("eventTime")
    last = obj.get("lastTimestamp") or first
    count = obj.get("count") or 1
    if series := obj.get("series"):
        last, count = series.get("lastObservedTime") or last, series.get("count") or count
    involved = obj.get("involvedObject") or {}
    kind, name = str(involved.get("kind", "")).lower(), involved.get("name")
    source = obj.get("source") or {}
    origin = ", ".join(str(v) for v in (source.get("component"), source.get("host")) if v)
    return [
        human_age(last, now),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{kind}/{name}" if name else kind,
        involved.get("fieldPath", ""),
        origin or obj.get("reportingComponent", ""),
        str(obj.get("message", "")).strip(),
        human_age(first, now),
        count,
        _name(obj),
    ]


def _state_reason(state: JsonObj) -> str:
    """The reason a waiting or terminated container state names, or its signal/exit code."""
    if reason := _get(state, "waiting", "reason"):
        return str(reason)
    terminated = state.get("terminated")
    if not isinstance(terminated, dict):
        return ""
    if terminated.get("reason"):
        return str(terminated["reason"])
    if terminated.get("signal"):
        return f"Signal:{terminated['signal']}"
    return f"ExitCode:{terminated.get('exitCode', 0)}"


def _init_reason(pod: JsonObj) -> str | None:
    """`Init:...` while init containers have not all finished, else None."""
    specs = {c.get("name"): c for c in _get(pod, "spec", "initContainers") or []}
    for index, status in enumerate(_get(pod, "status", "initContainerStatuses") or []):
        state = status.get("state") or {}
        if _get(state, "terminated", "exitCode") == 0:
            continue
        sidecar = _get(specs.get(status.get("name")), "restartPolicy") == "Always"
        if sidecar and status.get("started") and "running" in state:
            continue
        reason = _state_reason(state)
        if reason and reason != "PodInitializing":
            return f"Init:{reason}"
        return f"Init:{index}/{len(specs)}"
    return None


def pod_status(pod: JsonObj) -> str:
    """The STATUS column: phase, else an init or container reason, `Terminating` while being deleted."""
    status = pod.get("status") or {}
    reason = str(status.get("reason") or status.get("phase") or "")
    init = _init_reason(pod)
    if init is not None:
        reason = init
    else:
        running = False
        for container in reversed(status.get("containerStatuses") or []):
            state = container.get("state") or {}
            reason = _state_reason(state) or reason
            running = running or bool(container.get("ready") and "running" in state)
        if reason == "Completed" and running:
            conditions = status.get("conditions") or []
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            reason = "Running" if ready else "NotReady"
    if _get(pod, "metadata", "deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason


def _pod_restarts(pod: JsonObj, now: datetime) -> str:
    statuses = [
        *(_get(pod, "status", "initContainerStatuses") or []),
        *(_get(pod, "status", "containerStatuses") or []),
    ]
    count = sum(int(s.get("restartCount") or 0) for s in statuses)
    finished = [_get(s, "lastState", "terminated", "finishedAt") for s in statuses]
    latest = max((f for f in finished if f), default=None)
    return f"{count} ({human_age(latest, now)} ago)" if count and latest else str(count)


def _readiness_gates(pod: JsonObj) -> str:
    gates = [g.get("conditionType") for g in _get(pod, "spec", "readinessGates") or []]
    if not gates:
        return "<none>"
    true = {c.get("type") for c in _get(pod, "status", "conditions") or [] if c.get("status") == "True"}
    return f"{sum(g in true for g in gates)}/{len(gates)}"


def pod_row(obj: JsonObj, now: datetime) -> list[Any]:
    status = obj.get("status") or {}
    ready = sum(bool(c.get("ready")) for c in status.get("containerStatuses") or [])
    return [
        _name(obj),
        f"{ready}/{len(_get(obj, 'spec', 'containers') or [])}",
        pod_status(obj),
        _pod_restarts(obj, now),
        _age(obj, now),
        status.get("podIP") or "<none>",
        _get(obj, "spec", "nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        _readiness_gates(obj),
    ]


def name_age_row(obj: JsonObj, now: datetime) -> list[Any]:
    return [_name(obj), _age(obj, now)]


def namespace_row(obj: JsonObj, now: datetime) -> list[Any]:
    return [_name(obj), _get(obj, "status", "phase") or "", _age(obj, now)]


def configmap_row(obj: JsonObj, now: datetime) -> list[Any]:
    return [_name(obj), len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), _age(obj, now)]


def secret_row(obj: JsonObj, now: datetime) -> list[Any]:
    data = len(obj.get("data") or {}) + len(obj.get("stringData") or {})
    return [_name(obj), obj.get("type", "Opaque"), data, _age(obj, now)]


def serviceaccount_row(obj: JsonObj, now: datetime) -> list[Any]:
    return [_name(obj), len(obj.get("secrets") or []), _age(obj, now)]


def lease_row(obj: JsonObj, now: datetime) -> list[Any]:
    return [_name(obj), _get(obj, "spec", "holderIdentity") or "", _age(obj, now)]


def crd_row(obj: JsonObj, now: datetime) -> list[Any]:
    created = parse_time(_get(obj, "metadata", "creationTimestamp"))
    return [_name(obj), created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created else None]
