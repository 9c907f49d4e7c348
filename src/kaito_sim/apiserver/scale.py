"""The `/scale` subresource: an autoscaling/v1 Scale view of a resource's replica count."""

from __future__ import annotations

import copy
from typing import Any

from kaito_sim.apiserver import errors, patch
from kaito_sim.apiserver.cluster import WriteOptions
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.resources import ResourceType, ScalePaths
from kaito_sim.apiserver.writes import Writer


def _path(expr: str) -> list[str]:
    return [p for p in expr.split(".") if p]


def _read(obj: Any, expr: str) -> Any:
    for key in _path(expr):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _selector_string(value: Any) -> str | None:
    if isinstance(value, dict):  # a metav1.LabelSelector, as Deployments carry in spec.selector
        return ",".join(f"{k}={v}" for k, v in sorted((value.get("matchLabels") or {}).items())) or None
    return None if value is None else str(value)


def get_scale(rt: ResourceType, obj: JsonObj) -> JsonObj:
    paths = rt.scale or ScalePaths()
    meta = obj["metadata"]
    selector = _read(obj, paths.label_selector) if paths.label_selector else _read(obj, ".spec.selector")
    status: JsonObj = {"replicas": _read(obj, paths.status_replicas) or 0}
    if _selector_string(selector):
        status["selector"] = _selector_string(selector)
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
        },
        "spec": {"replicas": _read(obj, paths.spec_replicas) or 0},
        "status": status,
    }


async def write_scale(
    writer: Writer,
    rt: ResourceType,
    ns: str,
    name: str,
    body: Any,
    opts: WriteOptions,
    *,
    patch_type: str | None = None,
) -> JsonObj:
    live = writer.cluster.get(rt, ns, name)
    current = get_scale(rt, live)
    if patch_type == "application/json-patch+json":
        scale = patch.json_patch(current, body)
    elif patch_type is not None:
        if not isinstance(body, dict):
            raise errors.bad_request("the patch body must be a JSON object")
        scale = patch.merge_patch(current, body)
    else:
        scale = body
    if not isinstance(scale, dict):
        raise errors.bad_request("the body must be a Scale object")
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid(
            "Scale",
            "autoscaling",
            name,
            [
                errors.cause(
                    "FieldValueInvalid",
                    f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                    "spec.replicas",
                )
            ],
        )
    rv = (scale.get("metadata") or {}).get("resourceVersion")
    if rv and rv != live["metadata"]["resourceVersion"]:
        raise errors.conflict(rt.plural, rt.group, name)
    obj = copy.deepcopy(live)
    target: Any = obj
    keys = _path((rt.scale or ScalePaths()).spec_replicas)
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = replicas
    updated = await writer.update(rt, ns, name, obj, opts)
    return get_scale(rt, updated)
