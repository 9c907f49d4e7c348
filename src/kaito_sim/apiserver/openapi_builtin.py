"""The built-in kinds' OpenAPI v3 component schemas, converted from the definitions that validate them.

kube-apiserver publishes each served kind under `components.schemas`, tagged with its group/version/kind, for
`kubectl explain` (and clients' strategic merge patches). Types, formats, enums, `required` and the list and patch
extensions come from the kubernetes-validate definitions `builtin_schemas` already loads; they are written the way
kube-apiserver writes them (one `type`, refs under `#/components/schemas/`, a ref with siblings wrapped in
`allOf`). The upstream prose is dropped: descriptions are this project's own (`openapi_text`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from kaito_sim.apiserver import openapi_text
from kaito_sim.apiserver.builtin_schemas import definition_map
from kaito_sim.apiserver.errors import JsonObj

REF_PREFIX = "#/components/schemas/"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
GVK_KEY = "x-kubernetes-group-version-kind"
_DROPPED = frozenset({"description", "$schema", "$id"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf"})
_SCHEMA_VALUES = frozenset({"items", "additionalProperties", "not"})
_VERSION = "1.32"


def ref(name: str) -> JsonObj:
    return {"$ref": REF_PREFIX + name}


def with_ref(schema: JsonObj, name: str) -> JsonObj:
    """`schema` pointing at `name`: a bare `$ref`, or `allOf: [$ref]` beside its other keywords."""
    return {"allOf": [ref(name)], **schema} if schema else ref(name)


@functools.lru_cache(maxsize=1)
def _kinds() -> Mapping[tuple[str, str, str], str]:
    """(group, version, kind) -> definition name, for the definitions that carry a GVK of their own."""
    out: dict[tuple[str, str, str], str] = {}
    for name, schema in (definition_map(_VERSION) or {}).items():
        if isinstance(schema, dict) and _is_kind(schema):  # several GVKs: shared types (DeleteOptions, ...)
            gvk = schema[GVK_KEY][0]
            out[(gvk["group"], gvk["version"], gvk["kind"])] = name
    return out


def definition_for(group: str, version: str, kind: str) -> str | None:
    """The definition name of a built-in kind, e.g. ("apps", "v1", "Deployment") -> io.k8s.api.apps.v1.Deployment."""
    return _kinds().get((group, version, kind))


def components(roots: Iterable[str]) -> dict[str, JsonObj]:
    """`roots` and every definition they reach, converted; a fresh dict of shared (never mutate) schemas."""
    return dict(_components(tuple(sorted(set(roots)))))


@functools.lru_cache(maxsize=64)
def _components(roots: tuple[str, ...]) -> Mapping[str, JsonObj]:
    definitions = definition_map(_VERSION) or {}
    out: dict[str, JsonObj] = {}
    pending = [name for name in roots if name in definitions]
    while pending:
        name = pending.pop()
        if name in out:
            continue
        converter = _Converter(name)
        out[name] = converter.definition(definitions[name])
        pending += [r for r in converter.refs if r not in out and r in definitions]
    return out


class _Converter:
    """Converts one definition, collecting the names it refers to."""

    def __init__(self, name: str) -> None:
        self.short = openapi_text.short_name(name)
        self.refs: list[str] = []

    def definition(self, schema: JsonObj) -> JsonObj:
        fields = openapi_text.FIELDS.get(self.short, {})
        properties = schema.get("properties")
        if _is_kind(schema) and isinstance(properties, dict):
            fields = {**openapi_text.ROOT_FIELDS, **fields}
            # kube-apiserver lists no enum for a kind's own apiVersion and kind
            trimmed = {
                f: {k: v for k, v in properties[f].items() if k != "enum"}
                for f in ("apiVersion", "kind")
                if isinstance(properties.get(f), dict)
            }
            schema = {**schema, "properties": {**properties, **trimmed}}
        return self.node(schema, openapi_text.TYPES.get(self.short), fields)

    def node(self, schema: JsonObj, description: str | None = None, fields: Mapping[str, str] | None = None) -> JsonObj:
        out: JsonObj = {}
        fields = fields or {}
        for key, value in schema.items():
            if key in _DROPPED or key == "$ref":
                continue
            if key == "type":
                out["type"] = _one_type(value)
            elif key == "properties" and isinstance(value, dict):
                out[key] = {field: self.node(sub, fields.get(field)) for field, sub in value.items()}
            elif key in _SCHEMA_VALUES and isinstance(value, dict):
                out[key] = self.node(value)
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                out[key] = [self.node(sub) for sub in value]
            else:
                out[key] = _copy(value)
        if description:
            out["description"] = description
        target = schema.get("$ref")
        if isinstance(target, str):
            name = target.rpartition("/")[2]
            self.refs.append(name)
            return with_ref(out, name)
        return out


def _is_kind(schema: JsonObj) -> bool:
    gvks = schema.get(GVK_KEY)
    return isinstance(gvks, list) and len(gvks) == 1


def _one_type(value: Any) -> Any:
    """JSON Schema's `["string", "null"]` -> OpenAPI's `"string"`."""
    if isinstance(value, list):
        kept = [t for t in value if t != "null"]
        return kept[0] if len(kept) == 1 else kept
    return value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
