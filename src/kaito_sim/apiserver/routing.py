"""Maps Kubernetes REST paths (`/api/v1/...`, `/apis/G/V/...`) to a served type, namespace, name and subresource."""

from __future__ import annotations

from dataclasses import dataclass

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.resources import Registry, ResourceType


@dataclass(frozen=True)
class Target:
    """What one resource request addresses; `namespace` None means across all namespaces."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str


def parse_resource_path(registry: Registry, path: str) -> Target | None:
    """None when the path is not a resource path at all (discovery, health, ...)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    rt = registry.get(group, version, plural)
    if rt is None or len(rest) > 3:
        raise errors.path_not_found()
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else ""
    if sub and not rt.has(sub):
        raise errors.path_not_found()
    if namespace is not None and not rt.namespaced:
        raise errors.path_not_found()
    if rt.namespaced and name is not None and namespace is None:
        raise errors.path_not_found()
    return Target(rt, namespace, name, sub)
