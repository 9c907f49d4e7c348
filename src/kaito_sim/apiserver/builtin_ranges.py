"""Checks kube-apiserver makes in code on built-in kinds, beyond what their OpenAPI schemas say.

Port numbers (containers, Services), `spec.replicas` of workloads, resource quantities (well formed, not
negative, requests within limits, whole numbers and requests equal to limits for extended resources such as
`nvidia.com/gpu`) and object names by kind (DNS-1123 subdomain, RFC 1123 label for Namespaces, DNS-1035 label
for Services, path segment for RBAC objects). Each failure is a `details.causes` entry worded as
apimachinery's field errors word it; a quantity that does not parse is a 400, as decoding the body would be.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, TypeGuard

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.errors import JsonObj, cause
from kaito_sim.apiserver.quantity import Quantity, QuantityError, parse_quantity

PORT_RANGE = "must be between 1 and 65535, inclusive"
NEGATIVE = "must be greater than or equal to 0"

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
_RBAC_KINDS = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})
_REPLICATED = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"})
_POD_SPEC_AT = {"Pod": ("spec",), "PodTemplate": ("template", "spec"), "CronJob": ("spec", "jobTemplate", "spec")}
_NATIVE_PREFIX = "kubernetes.io/"  # a resource name with a "/" is native only with this prefix


def name_causes(kind: str, name: str) -> list[JsonObj]:
    """metadata.name of an object of `kind`, as that kind's strategy validates it."""
    if kind in _RBAC_KINDS:
        messages = _path_segment(name)
    elif kind == "Namespace":
        messages = _pattern(name, 63, _LABEL, _LABEL_MESSAGE)
    elif kind == "Service":
        messages = _pattern(name, 63, _DNS1035, _DNS1035_MESSAGE)
    else:
        messages = _pattern(name, 253, _SUBDOMAIN, _SUBDOMAIN_MESSAGE)
    return [cause("FieldValueInvalid", f"Invalid value: {_shown(name)}: {m}", "metadata.name") for m in messages]


def range_causes(obj: JsonObj) -> list[JsonObj]:
    """Causes for `obj`'s ports, replicas and resources; raises a 400 when a quantity does not parse."""
    kind = str(obj.get("kind") or "")
    spec = obj.get("spec")
    out: list[JsonObj] = []
    if kind in _REPLICATED and isinstance(spec, dict):
        replicas = spec.get("replicas")
        if _is_int(replicas) and replicas < 0:
            out.append(_invalid("spec.replicas", replicas, NEGATIVE))
    if kind == "Service" and isinstance(spec, dict):
        out += _service_port_causes(spec)
    try:
        for path, pod_spec in _pod_specs(kind, obj):
            for group in ("initContainers", "containers"):
                for i, container in _items(pod_spec.get(group)):
                    out += _container_causes(container, f"{path}.{group}[{i}]")
    except QuantityError as exc:
        version = str(obj.get("apiVersion") or "").rpartition("/")[2]
        raise errors.bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: {exc}') from None
    return out


def _pattern(name: str, limit: int, regex: re.Pattern[str], message: str) -> list[str]:
    return ([f"must be no more than {limit} characters"] if len(name) > limit else []) + (
        [] if regex.match(name) else [message]
    )


def _path_segment(name: str) -> list[str]:
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in name]


def _service_port_causes(spec: JsonObj) -> list[JsonObj]:
    out: list[JsonObj] = []
    for i, port in _items(spec.get("ports")):
        where = f"spec.ports[{i}]"
        number = port.get("port")
        if _is_int(number) and not 1 <= number <= 65535:
            out.append(_invalid(f"{where}.port", number, PORT_RANGE))
        target = port.get("targetPort")
        if target == 0 or target == "":  # defaulting gives a zero or empty targetPort the port's number
            target = number
        if _is_int(target) and not 1 <= target <= 65535:
            out.append(_invalid(f"{where}.targetPort", target, PORT_RANGE))
    return out


def _container_causes(container: JsonObj, path: str) -> list[JsonObj]:
    out: list[JsonObj] = []
    for i, port in _items(container.get("ports")):
        number, host = port.get("containerPort"), port.get("hostPort")
        if number == 0:
            out.append(cause("FieldValueRequired", "Required value", f"{path}.ports[{i}].containerPort"))
        elif _is_int(number) and not 1 <= number <= 65535:
            out.append(_invalid(f"{path}.ports[{i}].containerPort", number, PORT_RANGE))
        if _is_int(host) and host != 0 and not 1 <= host <= 65535:
            out.append(_invalid(f"{path}.ports[{i}].hostPort", host, PORT_RANGE))
    resources = container.get("resources")
    if isinstance(resources, dict):
        out += _resource_causes(resources, f"{path}.resources")
    return out


def _resource_causes(resources: JsonObj, path: str) -> list[JsonObj]:
    limits = _quantities(resources.get("limits"))
    requests = _quantities(resources.get("requests"))
    out: list[JsonObj] = []
    for name, quantity in limits.items():
        out += _quantity_causes(name, quantity, f"{path}.limits[{name}]")
    for name, quantity in requests.items():
        out += _quantity_causes(name, quantity, f"{path}.requests[{name}]")
        limit = limits.get(name)
        if limit is None:
            if not _overcommittable(name):
                message = "Required value: Limit must be set for non overcommitable resources"
                out.append(cause("FieldValueRequired", message, f"{path}.limits"))
        elif quantity.value != limit.value and not _overcommittable(name):
            out.append(_invalid(f"{path}.requests", str(quantity), f"must be equal to {name} limit of {limit}"))
        elif quantity.value > limit.value:
            message = f"must be less than or equal to {name} limit of {limit}"
            out.append(_invalid(f"{path}.requests", str(quantity), message))
    return out


def _quantities(listing: Any) -> dict[str, Quantity]:
    if not isinstance(listing, dict):
        return {}
    # Values of other types are the schema's to report.
    kept = {name: value for name, value in listing.items() if isinstance(value, str | int | float)}
    return {str(name): parse_quantity(value) for name, value in kept.items() if not isinstance(value, bool)}


def _quantity_causes(name: str, quantity: Quantity, path: str) -> list[JsonObj]:
    out = [_invalid(path, str(quantity), NEGATIVE)] if quantity.value < 0 else []
    if _extended(name) and quantity.value.denominator != 1:
        out.append(_invalid(path, str(quantity), "must be an integer"))
    return out


def _native(name: str) -> bool:
    return "/" not in name or _NATIVE_PREFIX in name


def _overcommittable(name: str) -> bool:
    """Native resources (cpu, memory, ...) may be requested below their limit; hugepages and extended ones not."""
    return _native(name) and not name.startswith("hugepages-")


def _extended(name: str) -> bool:
    """An extended resource such as nvidia.com/gpu: counted in whole units."""
    return not _native(name) and not name.startswith("requests.")


def _pod_specs(kind: str, obj: JsonObj) -> Iterator[tuple[str, JsonObj]]:
    steps = _POD_SPEC_AT.get(kind, ("spec", "template", "spec"))
    if kind == "CronJob":
        steps = (*steps, "template", "spec")
    node: Any = obj
    for step in steps:
        node = node.get(step) if isinstance(node, dict) else None
    if isinstance(node, dict):
        yield ".".join(steps), node


def _items(listing: Any) -> Iterator[tuple[int, JsonObj]]:
    if isinstance(listing, list):
        yield from ((i, item) for i, item in enumerate(listing) if isinstance(item, dict))


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _invalid(path: str, value: Any, message: str) -> JsonObj:
    return cause("FieldValueInvalid", f"Invalid value: {_shown(value)}: {message}", path)


def _shown(value: Any) -> str:
    """A value as Go's field errors print it: strings quoted, numbers bare."""
    return f'"{value}"' if isinstance(value, str) else str(value)
