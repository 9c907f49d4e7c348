"""CRD structural-schema engine: the defaulting, pruning and validation kube-apiserver gives custom resources.

The server core calls these on every create, update and patch of a custom resource, with `schema` being the
served version's `schema.openAPIV3Schema`:

* `apply_defaults` fills `default:` values of absent fields whose parent object is present (and replaces a
  `null` in a non-nullable field that has a default), recursing through properties, items and
  additionalProperties. Nothing inside the root `metadata` is defaulted.
* `prune` drops fields the structural schema does not declare, honouring
  `x-kubernetes-preserve-unknown-fields` and `x-kubernetes-embedded-resource`, and returns their paths so
  the caller can answer `fieldValidation=Strict` (400) or `Warn` (Warning header).
* `validate` returns `details.causes` entries worded like the real server's (see `schema_validate`).
* `list_type` / `list_map_keys` tell server-side apply how a list merges.
* `validate_crd_schema` rejects schemas that are not structural in the ways that matter here.

Not implemented: `x-kubernetes-validations` (CEL rules) are ignored silently, as are `x-kubernetes-map-type`
and the ObjectMeta-only pruning of embedded resources' `metadata` (kept as sent).
"""

from __future__ import annotations

import copy
from typing import Any

from kaito_sim.apiserver.errors import JsonObj, cause
from kaito_sim.apiserver.schema_validate import child, validate_root

__all__ = ["apply_defaults", "list_map_keys", "list_type", "prune", "validate", "validate_crd_schema"]

_ROOT_KEEP = frozenset({"apiVersion", "kind", "metadata"})
_NO_KEEP: frozenset[str] = frozenset()
_TYPES = ("array", "boolean", "integer", "number", "object", "string")


# ----------------------------------------------------------------------------------------------- defaulting
def apply_defaults(obj: JsonObj, schema: JsonObj) -> None:
    """In place: fill `default:` values where the field is absent and its parent object is present.

    Defaults are deep-copied, then defaulted themselves. Nothing inside the root `metadata` is touched.
    """
    _default_object(obj, schema, skip=frozenset({"metadata"}))


def _default_node(value: Any, schema: JsonObj) -> None:
    if isinstance(value, dict):
        _default_object(value, schema, skip=_NO_KEEP)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                _default_node(item, items)


def _default_object(value: JsonObj, schema: JsonObj, skip: frozenset[str]) -> None:
    properties = _properties(schema)
    for name, sub in properties.items():
        if name in skip or "default" not in sub:
            continue
        if name not in value or (value[name] is None and sub.get("nullable") is not True):
            value[name] = copy.deepcopy(sub["default"])
    for name, item in value.items():
        field = _field_schema(schema, name)
        if name not in skip and field is not None:
            _default_node(item, field)


def _field_schema(schema: JsonObj, name: str) -> JsonObj | None:
    """The schema of field `name` of an object node: its property, else a schema `additionalProperties`."""
    field = _properties(schema).get(name)
    if field is not None:
        return field
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _properties(schema: JsonObj) -> dict[str, JsonObj]:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    return {k: v for k, v in properties.items() if isinstance(v, dict)}


# ----------------------------------------------------------------------------------------------- pruning
def prune(obj: JsonObj, schema: JsonObj) -> list[str]:
    """In place: remove fields the structural schema does not declare; return their dotted paths.

    At the root `apiVersion`, `kind` and `metadata` are always kept and never pruned (the core handles
    ObjectMeta); the same three are kept inside `x-kubernetes-embedded-resource` objects. Paths look like
    `spec.foo` or `spec.items[0].x`.
    """
    removed: list[str] = []
    _prune_object(obj, schema, "", removed, keep=_ROOT_KEEP)
    return removed


def _prune_node(value: Any, schema: JsonObj, path: str, removed: list[str]) -> None:
    if isinstance(value, dict):
        keep = _ROOT_KEEP if schema.get("x-kubernetes-embedded-resource") is True else _NO_KEEP
        _prune_object(value, schema, path, removed, keep)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                _prune_node(item, items, f"{path}[{index}]", removed)


def _prune_object(value: JsonObj, schema: JsonObj, path: str, removed: list[str], keep: frozenset[str]) -> None:
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True or schema.get("additionalProperties") is True
    for name in list(value):
        if name in keep:
            continue
        field = _field_schema(schema, name)
        if field is not None:
            _prune_node(value[name], field, child(path, name), removed)
        elif not preserve:
            del value[name]
            removed.append(child(path, name))


# ----------------------------------------------------------------------------------------------- validation
def validate(obj: JsonObj, schema: JsonObj) -> list[JsonObj]:
    """Causes (`errors.cause` dicts) for every schema violation in `obj`; empty when valid.

    The root `metadata` is skipped (the core validates ObjectMeta). CEL rules are not evaluated.
    """
    return validate_root(obj, schema)


# ----------------------------------------------------------------------------------------------- list types
def list_type(schema: JsonObj, path: tuple[str, ...]) -> str | None:
    """`x-kubernetes-list-type` of the list at `path` ("atomic", "set", "map"), or None if absent/not a list.

    `path` names fields from the root; entering a list does not add an element.
    """
    node = _schema_at(schema, path)
    if node is None or not _is_list(node):
        return None
    value = node.get("x-kubernetes-list-type")
    return value if isinstance(value, str) else None


def list_map_keys(schema: JsonObj, path: tuple[str, ...]) -> list[str] | None:
    """The `x-kubernetes-list-map-keys` of the list at `path` if it is a `map` list, else None."""
    if list_type(schema, path) != "map":
        return None
    node = _schema_at(schema, path) or {}
    keys = node.get("x-kubernetes-list-map-keys")
    if not isinstance(keys, list) or not keys:
        return None
    return [str(k) for k in keys]


def _schema_at(schema: JsonObj, path: tuple[str, ...]) -> JsonObj | None:
    node: JsonObj = schema
    for name in path:
        while _is_list(node) and isinstance(node.get("items"), dict):
            node = node["items"]
        field = _field_schema(node, name)
        if field is None:
            return None
        node = field
    return node


def _is_list(node: JsonObj) -> bool:
    return node.get("type") == "array" or (node.get("type") is None and "items" in node)


# ----------------------------------------------------------------------------------------------- CRD check
def validate_crd_schema(schema: JsonObj, base: str = "spec.versions[0].schema.openAPIV3Schema") -> list[JsonObj]:
    """Causes for a CRD version schema that is not structural in the ways that matter; empty when fine.

    `base` is the field path of the schema inside the CRD (pass the right version index). Checks: the root
    is `type: object`; every node declaring `properties` has a `type`; every `type: array` has `items`;
    `type` names are known; `properties` and `additionalProperties` are not both set.
    """
    causes: list[JsonObj] = []
    root_type = schema.get("type")
    if not root_type:
        message = "Required value: must not be empty at the root"
        causes.append(cause("FieldValueRequired", message, f"{base}.type"))
    elif root_type != "object":
        message = f'Invalid value: "{root_type}": must be object at the root'
        causes.append(cause("FieldValueInvalid", message, f"{base}.type"))
    _check_node(schema, base, causes, root=True)
    return causes


def _check_node(node: JsonObj, path: str, causes: list[JsonObj], root: bool = False) -> None:
    node_type = node.get("type")
    if node_type and node_type not in _TYPES:
        supported = ", ".join(f'"{t}"' for t in _TYPES)
        message = f"Unsupported value: {_quoted(node_type)}: supported values: {supported}"
        causes.append(cause("FieldValueNotSupported", message, f"{path}.type"))
    if "properties" in node and not node_type and not root:
        message = "Required value: must not be empty for specified object fields"
        causes.append(cause("FieldValueRequired", message, f"{path}.type"))
    if "properties" in node and "additionalProperties" in node:
        message = "Forbidden: additionalProperties and properties are mutual exclusive"
        causes.append(cause("FieldValueForbidden", message, f"{path}.additionalProperties"))
    if node_type == "array" and not isinstance(node.get("items"), dict):
        causes.append(cause("FieldValueRequired", "Required value: must be specified", f"{path}.items"))
    for name, sub in _properties(node).items():
        _check_node(sub, f"{path}.properties[{name}]", causes)
    for keyword in ("items", "additionalProperties"):
        nested = node.get(keyword)
        if isinstance(nested, dict):
            _check_node(nested, f"{path}.{keyword}", causes)


def _quoted(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)
