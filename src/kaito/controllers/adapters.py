"""Each inference adapter resolved to what the pods pull: an image (a tuning Workspace's by its pushed digest).

The pods load adapters at runtime from the engine ConfigMap, so what is resolved here lands there and nowhere in
the pod template; only the set of pull Secrets is mounted (see `build_workload`). An adapter naming a tuning
Workspace that has not pushed yet waits, out of the engine config; once it has pushed, the last digest is kept in
`status.adapters` and served from there if that Workspace is deleted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kaito.api.workspace import AdapterSpec, AdapterStatus, Workspace
from kaito.oci.errors import OciError
from kaito.oci.reference import parse_reference

Obj = dict[str, Any]
WorkspaceLookup = Callable[[str, str], Obj | None]
"""(namespace, name) -> the Workspace as the cache holds it, or None."""
PULLING = "Pulling"


@dataclass(frozen=True)
class Resolved:
    """One adapter as the pods are told to serve it."""

    name: str
    strength: float
    image: str | None = None  # None: a volume adapter, already a directory under adaptersDir
    digest: str | None = None
    secrets: tuple[str, ...] = ()
    waiting: str | None = None  # set: not served yet, and why (the status says so)
    volume_source: Obj | None = None  # a volume adapter's volume, mounted under adaptersDir


def wanted(ws: Workspace) -> list[AdapterSpec]:
    return list((ws.inference.adapters if ws.inference else None) or [])


def resolve(ws: Workspace, *, lookup: WorkspaceLookup) -> list[Resolved]:
    """Every adapter of `ws` in spec order; `lookup` finds the tuning Workspaces some of them name."""
    kept = {a.name: a for a in (ws.status.adapters if ws.status else None) or []}
    out = []
    for adapter in wanted(ws):
        source = adapter.source
        base = Resolved(
            name=source.name,
            strength=float(adapter.strength) if adapter.strength else 1.0,
            secrets=tuple(source.image_pull_secrets or ()),
        )
        if source.workspace is not None:
            out.append(_from_tuning(base, ws.namespace, source.workspace, lookup, kept.get(source.name)))
        elif source.image is not None:
            out.append(_with_image(base, source.image))
        else:
            out.append(Resolved(base.name, base.strength, volume_source=source.volume_source))
    return out


def _with_image(base: Resolved, image: str, digest: str | None = None) -> Resolved:
    """An image named by digest pins it; by tag alone, the pod resolves the digest when it pulls."""
    reference, _, pinned = image.partition("@")
    return Resolved(base.name, base.strength, reference, digest or pinned or None, base.secrets)


def _from_tuning(
    base: Resolved, namespace: str, name: str, lookup: WorkspaceLookup, kept: AdapterStatus | None
) -> Resolved:
    found = lookup(namespace, name)
    tuned = ((found or {}).get("status") or {}).get("tuning") or {}
    if tuned.get("image") and tuned.get("digest"):
        return _with_image(base, str(tuned["image"]), str(tuned["digest"]))
    if kept is not None and kept.image and kept.digest:  # the tuning Workspace is gone: keep serving what it pushed
        return _with_image(base, kept.image, kept.digest)
    if found is not None and found.get("tuning") is None:
        return Resolved(base.name, base.strength, secrets=base.secrets, waiting=f"workspace {name} does not tune")
    return Resolved(base.name, base.strength, secrets=base.secrets, waiting=f"waiting for tuning workspace {name}")


def named_by(tuning: Obj, candidates: Sequence[Obj]) -> list[Obj]:
    """The inference Workspaces among `candidates` (one namespace) with an adapter naming `tuning`."""
    name = tuning["metadata"]["name"]
    return [
        ws
        for ws in candidates
        if any(
            isinstance(a, dict) and (a.get("source") or {}).get("workspace") == name
            for a in ((ws.get("inference") or {}).get("adapters") or [])
        )
    ]


def plain_http_allowed(image: str, insecure: frozenset[str]) -> bool:
    """Whether the pod may speak plain HTTP to the image's registry: a loopback one (as Docker allows), or one the
    manager was told is insecure."""
    try:
        registry = parse_reference(image).registry
    except OciError:  # admission has checked the reference; a pull of it would say the same
        return False
    if registry in insecure:
        return True
    host = registry.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
