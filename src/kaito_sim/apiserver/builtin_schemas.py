"""Validation of built-in kinds (Deployment, Pod, Role, ...) against the official Kubernetes JSON schemas.

The sim has no Go types to decode into, so the schemas that kubernetes-validate ships stand in for them:
every violation becomes a `details.causes` entry worded like kube-apiserver's, with a field path
(`spec.template.spec.containers[0].image`; map keys as `limits[cpu]`). Nulls are pruned first, as decoding
into Go structs turns them into zero values, and `metadata` is left to the core's own metadata checks.
A few semantic checks the schemas cannot express are added (selector matches template labels, container
image required). Compiled validators are cached per (kind, apiVersion, version).

`prune_builtin` stands in for decoding into those Go types: it drops, in place, every field the kind's schema
does not declare and returns their paths worded like strict decoding's `unknown field "..."` errors
(`spec.template.spec.containers[0].imagee`; map keys joined with a dot, as sigs.k8s.io/json does).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import jsonschema
from referencing import Registry, Resource

from kaito_sim.apiserver.errors import JsonObj, cause
from kaito_sim.apiserver.schema_validate import json_type, render

_PACKAGE = "kubernetes_validate"
_SCHEMA_ROOT = "kubernetes-json-schema"
# keywords in a jsonschema error's schema path that step into the instance, and whether an argument follows
_NAMED_STEP = {"properties": False, "patternProperties": True}  # keyword -> the step is a map key
_BARE_STEP = {"additionalProperties", "items"}
_ARG_ONLY = {"allOf", "anyOf", "oneOf", "$defs", "dependentSchemas"}
_ROOT_KEEP = frozenset({"apiVersion", "kind", "metadata"})  # never pruned nor walked at an object's root
_POD_TEMPLATE_OWNERS = {
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
}


# ----------------------------------------------------------------------------------------------- schemas
def _schema_dir(version: str) -> Traversable | None:
    match = re.match(r"^v?(\d+\.\d+)", version)
    if match is None:
        return None
    folder = resources.files(_PACKAGE) / _SCHEMA_ROOT / f"v{match.group(1)}.0-local"
    return folder if folder.is_dir() else None


@functools.lru_cache(maxsize=8)
def _definitions(version: str) -> Resource[Any] | None:
    folder = _schema_dir(version)
    if folder is None:
        return None
    return Resource.from_contents(json.loads((folder / "_definitions.json").read_text()))


def _schema_file(kind: str, api_version: str) -> str:
    """`apps/v1` -> `deployment-apps-v1.json`; `rbac.authorization.k8s.io/v1` -> `role-rbac-v1.json`."""
    slug = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{slug}.json"


@functools.lru_cache(maxsize=256)
def _kind_schema(kind: str, api_version: str, version: str) -> JsonObj | None:
    """The kind's own schema file, parsed (shared, never mutate it); None when the version ships none."""
    folder = _schema_dir(version)
    if folder is None or "/" in kind or not kind:
        return None
    path = folder / _schema_file(kind, api_version)
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    return schema if isinstance(schema, dict) else None


@functools.lru_cache(maxsize=256)
def _validator(kind: str, api_version: str, version: str) -> jsonschema.protocols.Validator | None:
    schema, definitions = _kind_schema(kind, api_version, version), _definitions(version)
    if schema is None or definitions is None:
        return None
    registry: Registry[Any] = definitions @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


# ----------------------------------------------------------------------------------------------- pruning
class _Pruner:
    """One pruning walk: `$ref`s resolved by name against `_definitions.json`, removed paths collected."""

    def __init__(self, definitions: Mapping[str, Any]) -> None:
        self.definitions = definitions
        self.removed: list[str] = []

    def resolve(self, schema: JsonObj) -> JsonObj:
        """Follow `$ref` (`/api/_definitions.json#/$defs/X` or `#/$defs/X`) until a concrete node."""
        ref = schema.get("$ref")
        while isinstance(ref, str):
            target = self.definitions.get(ref.rpartition("/")[2])
            if not isinstance(target, dict):
                break
            schema, ref = target, target.get("$ref")
        return schema

    def node(self, value: Any, schema: JsonObj, path: str) -> None:
        """Prune `value` against `schema`: a struct, a map (`additionalProperties`) or a list (`items`).

        A node that declares none of those (RawExtension, JSON, FieldsV1, IntOrString, ...) keeps everything.
        """
        schema = self.resolve(schema)
        properties, extra = schema.get("properties"), schema.get("additionalProperties")
        if isinstance(value, dict):
            if isinstance(properties, dict):
                self.struct(value, schema, path)
            elif isinstance(extra, dict):
                for key, item in value.items():
                    self.node(item, extra, _join(path, key))
        elif isinstance(value, list):
            items = schema.get("items")
            if isinstance(items, dict):
                for index, item in enumerate(value):
                    self.node(item, items, f"{path}[{index}]")

    def struct(self, value: JsonObj, schema: JsonObj, path: str, keep: frozenset[str] = frozenset()) -> None:
        """Drop the fields of `value` that `schema` does not declare; recurse into the ones it does."""
        properties: Mapping[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        open_ended = extra is True or schema.get("x-kubernetes-preserve-unknown-fields") is True
        for name in list(value):
            if name in keep:
                continue
            field = properties.get(name, extra)
            if isinstance(field, dict):
                self.node(value[name], field, _join(path, name))
            elif name not in properties and not open_ended:
                del value[name]
                self.removed.append(_join(path, name))


def prune_builtin(obj: JsonObj, *, version: str = "1.32") -> list[str]:
    """In place: remove every field of `obj` its kind's schema does not declare; return their dotted paths.

    Models strict decoding into kube-apiserver's Go types. The root `apiVersion`, `kind` and `metadata` are
    kept and not walked (the core handles ObjectMeta); nested ObjectMeta (`spec.template.metadata`) is pruned
    like any other struct. Unknown kinds or versions: nothing removed, [] returned.
    """
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        return []
    schema, definitions = _kind_schema(kind, api_version, version), definition_map(version)
    if schema is None or definitions is None:
        return []
    pruner = _Pruner(definitions)
    pruner.struct(obj, schema, "", keep=_ROOT_KEEP)
    return pruner.removed


@functools.lru_cache(maxsize=8)
def definition_map(version: str) -> Mapping[str, Any] | None:
    """`$defs` of `_definitions.json` by name, from the same cached load the validators use."""
    definitions = _definitions(version)
    if definitions is None:
        return None
    defs = definitions.contents.get("$defs") if isinstance(definitions.contents, dict) else None
    return defs if isinstance(defs, dict) else None


# ----------------------------------------------------------------------------------------------- errors
def _field(error: jsonschema.ValidationError) -> str:
    """Dotted field path of the error's instance, map keys in brackets as Go's field.Path renders them."""
    steps = list(error.absolute_path)
    tokens = list(error.absolute_schema_path)
    out, i = "", 0
    while i < len(tokens) and steps:
        token = tokens[i]
        if token in _NAMED_STEP and not _NAMED_STEP[token]:
            out = _join(out, str(steps.pop(0)))
        elif token in _NAMED_STEP or token in _BARE_STEP:
            out = f"{out}[{steps.pop(0)}]"
        i += 2 if token in _NAMED_STEP or token in _ARG_ONLY else 1
    for step in steps:  # not expected, but never lose a step
        out = f"{out}[{step}]" if isinstance(step, int) else _join(out, str(step))
    return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str) -> str:
    return f"{path} in body" if path else "body"


def _wanted_type(spec: Any) -> str:
    types = [spec] if isinstance(spec, str) else [t for t in spec if t != "null"]
    return " or ".join(types) if types else "null"


def _causes_for(error: jsonschema.ValidationError) -> list[JsonObj]:
    path = _field(error)
    kind, value = error.validator, error.instance
    spec_value: Any = error.validator_value  # the keyword's argument in the schema
    if kind == "required":
        present = value if isinstance(value, dict) else {}
        return [
            cause("FieldValueRequired", "Required value", _join(path, name))
            for name in spec_value
            if name not in present
        ]
    if kind == "type":
        got, want = json_type(value), _wanted_type(spec_value)
        message = f'Invalid value: "{got}": {_where(path)} must be of type {want}: "{got}"'
        return [cause("FieldValueTypeInvalid", message, path)]
    if kind == "enum":
        supported = ", ".join(render(a) for a in spec_value)
        message = f"Unsupported value: {render(value)}: supported values: {supported}"
        return [cause("FieldValueNotSupported", message, path)]
    detail = error.message
    prefix = repr(value)
    if detail.startswith(prefix):
        detail = f"{_where(path)}{detail[len(prefix) :]}"
    return [cause("FieldValueInvalid", f"Invalid value: {render(value)}: {detail}", path)]


def _dedupe(causes: Iterable[JsonObj]) -> list[JsonObj]:
    seen: set[tuple[str, str, str]] = set()
    out: list[JsonObj] = []
    for c in causes:
        key = (c["reason"], c["message"], c["field"])
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


# ----------------------------------------------------------------------------------------------- semantics
def _prune_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def _go_map(labels: Mapping[str, Any]) -> str:
    """A label map as Go's `%#v` prints it in field errors: `map[string]string{"a":"b", "c":"d"}`."""
    body = ", ".join(f"{json.dumps(k)}:{json.dumps(labels[k])}" for k in sorted(labels))
    return f"map[string]string{{{body}}}"


def _expression_holds(expr: JsonObj, labels: Mapping[str, Any]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values")
    values = values if isinstance(values, list) else []
    present = isinstance(key, str) and key in labels
    value = labels.get(key) if isinstance(key, str) else None
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not (present and value in values)
    if op == "Exists":
        return present
    return op != "DoesNotExist" or not present


def _selector_causes(obj: JsonObj) -> list[JsonObj]:
    """Workloads only manage pods their selector picks, so the template's labels must satisfy it."""
    selector = _dig(obj, "spec.selector")
    if selector is None or _dig(obj, "spec.template") is None:
        return []
    match_labels, expressions = selector.get("matchLabels") or {}, selector.get("matchExpressions") or []
    if not isinstance(match_labels, dict) or not isinstance(expressions, list) or not (match_labels or expressions):
        return []  # malformed selectors are reported by the schema; empty ones are left alone
    labels = _dig(obj, "spec.template.metadata.labels") or {}
    holds = all(labels.get(k) == v for k, v in match_labels.items()) and all(
        _expression_holds(e, labels) for e in expressions if isinstance(e, dict)
    )
    if holds:
        return []
    message = f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`"
    return [cause("FieldValueInvalid", message, "spec.template.metadata.labels")]


def _dig(obj: JsonObj, path: str) -> JsonObj | None:
    node: Any = obj
    for name in path.split("."):
        node = node.get(name) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _pod_specs(obj: JsonObj) -> Iterator[tuple[str, JsonObj]]:
    """Pod specs in `obj`: a Pod's own, a PodTemplate's, a workload's template, a CronJob's job template."""
    kind = obj.get("kind")
    paths = {"Pod": ["spec"], "PodTemplate": ["template.spec"], "CronJob": ["spec.jobTemplate.spec.template.spec"]}
    for path in paths.get(kind if isinstance(kind, str) else "", ["spec.template.spec"]):
        pod_spec = _dig(obj, path)
        if pod_spec is not None:
            yield path, pod_spec


def _image_causes(obj: JsonObj) -> list[JsonObj]:
    out: list[JsonObj] = []
    for path, pod_spec in _pod_specs(obj):
        for group in ("initContainers", "containers"):
            containers = pod_spec.get(group)
            if not isinstance(containers, list):
                continue
            for i, container in enumerate(containers):
                if isinstance(container, dict) and not container.get("image"):
                    out.append(cause("FieldValueRequired", "Required value", f"{path}.{group}[{i}].image"))
    return out


# ----------------------------------------------------------------------------------------------- entry
def validate_builtin(obj: JsonObj, *, version: str = "1.32") -> list[JsonObj]:
    """Causes (`errors.cause` dicts) for `obj`; [] when valid or when no schema exists for its kind."""
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        return []
    validator = _validator(kind, api_version, version)
    if validator is None:
        return []
    # ObjectMeta is the core's business; an empty stand-in satisfies schemas that list it as required (Event).
    body = {**_prune_nulls({k: v for k, v in obj.items() if k != "metadata"}), "metadata": {}}
    causes = [c for error in validator.iter_errors(body) for c in _causes_for(error)]
    causes += _image_causes(body)
    if (api_version, kind) in _POD_TEMPLATE_OWNERS:
        causes += _selector_causes(body)
    return _dedupe(causes)
