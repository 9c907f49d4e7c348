"""Update rules that compare the old object with the new one: fields a real server refuses to change."""

from __future__ import annotations

import copy
import json
from contextvars import ContextVar
from typing import Any

from kaito_sim.apiserver.errors import JsonObj, cause
from kaito_sim.apiserver.resources import ResourceType

_SELECTOR_KINDS = {
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
}
_POD_MUTABLE = (
    "spec.containers[*].image, spec.initContainers[*].image, spec.activeDeadlineSeconds, "
    "spec.tolerations (only additions to existing tolerations), spec.terminationGracePeriodSeconds"
)
# Set by the in-process scheduler around its write: like pods/binding, it may set spec.nodeName once.
BINDING: ContextVar[bool] = ContextVar("pod_binding", default=False)


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _immutable(field: str, value: Any) -> JsonObj:
    return cause("FieldValueInvalid", f"Invalid value: {json.dumps(value)}: field is immutable", field)


def _config_data(old: JsonObj, new: JsonObj) -> list[JsonObj]:
    if not old.get("immutable"):
        return []
    message = "Forbidden: field is immutable when `immutable` is set"
    out = [cause("FieldValueForbidden", message, key) for key in ("data", "binaryData") if old.get(key) != new.get(key)]
    if not new.get("immutable"):
        out.append(cause("FieldValueForbidden", message, "immutable"))
    return out


def _pod_spec(old: JsonObj, new: JsonObj) -> list[JsonObj]:
    before, after = copy.deepcopy(old.get("spec") or {}), copy.deepcopy(new.get("spec") or {})
    for key in ("containers", "initContainers"):
        for was, now in zip(before.get(key) or [], after.get(key) or [], strict=False):
            if isinstance(was, dict) and isinstance(now, dict):
                now["image"] = was.get("image")
    for key in ("activeDeadlineSeconds", "terminationGracePeriodSeconds"):
        after[key] = before.get(key)
    if BINDING.get() and not before.get("nodeName"):
        after["nodeName"] = None
    old_tolerations = before.get("tolerations") or []
    if (after.get("tolerations") or [])[: len(old_tolerations)] == old_tolerations:
        after["tolerations"] = before.get("tolerations")
    if {k: v for k, v in after.items() if v is not None} == {k: v for k, v in before.items() if v is not None}:
        return []
    return [
        cause("FieldValueForbidden", f"Forbidden: pod updates may not change fields other than {_POD_MUTABLE}", "spec")
    ]


def update_causes(rt: ResourceType, old: JsonObj, new: JsonObj) -> list[JsonObj]:
    """Causes for changes the kind forbids once the object exists; empty when the update is allowed."""
    key = rt.storage_key
    if key in (("", "configmaps"), ("", "secrets")):
        return _config_data(old, new)
    if key == ("", "pods"):
        return _pod_spec(old, new)
    out: list[JsonObj] = []
    if key in _SELECTOR_KINDS and _dig(old, "spec", "selector") != _dig(new, "spec", "selector"):
        out.append(_immutable("spec.selector", _dig(new, "spec", "selector")))
    if key == ("batch", "jobs") and _dig(old, "spec", "template") != _dig(new, "spec", "template"):
        out.append(_immutable("spec.template", _dig(new, "spec", "template")))
    if key == ("", "services"):
        was, now = _dig(old, "spec", "clusterIP"), _dig(new, "spec", "clusterIP")
        if was and now and was != now:
            out.append(
                cause("FieldValueInvalid", f'Invalid value: "{now}": may not change once set', "spec.clusterIPs[0]")
            )
    if key == ("apiextensions.k8s.io", "customresourcedefinitions"):
        out += [
            _immutable(f"spec.{f}", _dig(new, "spec", f))
            for f in ("scope", "group")
            if _dig(old, "spec", f) != _dig(new, "spec", f)
        ]
    return out
