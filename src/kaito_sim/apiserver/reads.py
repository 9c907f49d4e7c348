"""List semantics: label and field selectors, `limit`/`continue` paging, and the selectable fields per kind."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.conversion import as_version
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.resources import ResourceType
from kaito_sim.apiserver.selectors import FieldSelector, LabelSelector

_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
_KIND_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    ("", "events"): (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    ("", "nodes"): ("spec.unschedulable",),
    ("", "secrets"): ("type",),
    ("", "namespaces"): ("status.phase",),
    ("batch", "jobs"): ("status.successful",),
}


def selectable_fields(rt: ResourceType) -> tuple[str, ...]:
    return _COMMON_FIELDS + _KIND_FIELDS.get(rt.storage_key, ())


@dataclass(frozen=True)
class Filter:
    """A watch or list's selectors, parsed once."""

    labels: LabelSelector
    fields: FieldSelector

    @classmethod
    def parse(cls, rt: ResourceType, label_selector: str, field_selector: str) -> Filter:
        return cls(
            LabelSelector.parse(label_selector),
            FieldSelector.parse(field_selector, allowed=selectable_fields(rt)),
        )

    def matches(self, obj: JsonObj) -> bool:
        return self.labels.matches(obj["metadata"].get("labels") or {}) and self.fields.matches(obj)


@dataclass(frozen=True)
class Page:
    items: list[JsonObj]
    resource_version: str
    continue_token: str
    remaining: int | None


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(data["start"][0]), str(data["start"][1])
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error) as exc:
        raise errors.bad_request(f"invalid continue token: {exc}") from exc


def _encode_continue(rv: str, start: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"rv": rv, "start": list(start)}).encode()).decode()


def list_page(
    cluster: Cluster, rt: ResourceType, ns: str | None, flt: Filter, *, limit: int, continue_token: str
) -> Page:
    """Matching objects in key order, at most `limit` (0 = all), resuming after a continue token."""
    rv = str(cluster.store.rv)
    items = cluster.store.items(rt.storage_key, ns if rt.namespaced else None)
    if continue_token:
        after = _decode_continue(continue_token)
        items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after]
    matched = [as_version(o, rt.group_version) for o in items if flt.matches(o)]
    if limit <= 0 or len(matched) <= limit:
        return Page(matched, rv, "", None)
    page = matched[:limit]
    last = page[-1]["metadata"]
    token = _encode_continue(rv, (last.get("namespace", ""), last["name"]))
    return Page(page, rv, token, len(matched) - limit)
