"""CustomResourceDefinition handling: checking a CRD, the types it serves, and the status the server reports."""

from __future__ import annotations

import re
from typing import Any

from kaito_sim.apiserver.errors import JsonObj, cause
from kaito_sim.apiserver.objects import now_rfc3339
from kaito_sim.apiserver.resources import ResourceType, ScalePaths

_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first, then others alphabetically."""
    m = _VERSION.match(version)
    if not m:
        return (3, 0, 0, version)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, version)


def crd_causes(crd: JsonObj) -> list[JsonObj]:
    """Structural checks of a CRD's spec that a real server rejects with 422."""
    spec = crd.get("spec") or {}
    out: list[JsonObj] = []
    group, names = spec.get("group"), spec.get("names") or {}
    plural = names.get("plural")
    if not group or "." not in str(group):
        out.append(
            cause(
                "FieldValueInvalid",
                f'Invalid value: "{group or ""}": should be a domain with at least one dot',
                "spec.group",
            )
        )
    for key in ("plural", "kind"):
        if not names.get(key):
            out.append(cause("FieldValueRequired", "Required value", f"spec.names.{key}"))
    if plural and not _DNS_LABEL.match(str(plural)):
        out.append(
            cause(
                "FieldValueInvalid",
                f'Invalid value: "{plural}": a lowercase RFC 1123 label must '
                "consist of lower case alphanumeric characters or '-'",
                "spec.names.plural",
            )
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        out.append(
            cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{spec.get("scope", "")}": supported values: "Cluster", "Namespaced"',
                "spec.scope",
            )
        )
    name = (crd.get("metadata") or {}).get("name")
    if plural and group and name != f"{plural}.{group}":
        out.append(
            cause(
                "FieldValueInvalid",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                "metadata.name",
            )
        )
    out += _version_causes(spec.get("versions"))
    return out


def _version_causes(versions: Any) -> list[JsonObj]:
    if not isinstance(versions, list) or not versions:
        return [
            cause(
                "FieldValueRequired",
                "Required value: must have exactly one version marked as storage version",
                "spec.versions",
            )
        ]
    out: list[JsonObj] = []
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if len(storage) != 1:
        out.append(
            cause(
                "FieldValueInvalid",
                "Invalid value: must have exactly one version marked as storage version",
                "spec.versions",
            )
        )
    for i, v in enumerate(versions):
        if not isinstance(v, dict) or not v.get("name"):
            out.append(cause("FieldValueRequired", "Required value", f"spec.versions[{i}].name"))
        elif not isinstance(v.get("served"), bool):
            out.append(cause("FieldValueRequired", "Required value", f"spec.versions[{i}].served"))
    return out


def _scale_paths(sub: Any) -> ScalePaths | None:
    if not isinstance(sub, dict) or "scale" not in sub:
        return None
    scale = sub["scale"] or {}
    return ScalePaths(
        scale.get("specReplicasPath", ".spec.replicas"),
        scale.get("statusReplicasPath", ".status.replicas"),
        scale.get("labelSelectorPath"),
    )


def served_types(crd: JsonObj) -> list[ResourceType]:
    """The resource types a CRD serves, preferred version first."""
    spec, names = crd["spec"], crd["spec"]["names"]
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    out: list[ResourceType] = []
    for v in sorted(spec["versions"], key=lambda v: version_priority(v["name"])):
        if not v.get("served"):
            continue
        sub = v.get("subresources") or spec.get("subresources") or {}
        schema = (v.get("schema") or spec.get("validation") or {}).get("openAPIV3Schema")
        out.append(
            ResourceType(
                group=spec["group"],
                version=v["name"],
                plural=names["plural"],
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec["scope"] == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=tuple(s for s in ("status", "scale") if s in sub),
                scale=_scale_paths(sub),
                crd_name=crd["metadata"]["name"],
                storage_version=storage,
                schema=schema,
                printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
            )
        )
    return out


def established_status(crd: JsonObj, old_status: JsonObj | None) -> JsonObj:
    """The status a server reports once a CRD's names are accepted and it is served."""
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    stored = list((old_status or {}).get("storedVersions") or [])
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    if storage not in stored:
        stored.append(storage)
    old_conditions = {c.get("type"): c for c in (old_status or {}).get("conditions") or []}

    def condition(kind: str, reason: str, message: str) -> JsonObj:
        previous = old_conditions.get(kind)
        when = previous["lastTransitionTime"] if previous and previous.get("status") == "True" else now_rfc3339()
        return {
            "type": kind,
            "status": "True",
            "lastTransitionTime": when,
            "reason": reason,
            "message": message,
        }

    return {
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    }
