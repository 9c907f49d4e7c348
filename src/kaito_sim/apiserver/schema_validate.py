"""Value validation of a custom resource against its CRD schema, with causes worded like kube-apiserver's.

Used through `kaito_sim.apiserver.schema.validate`. Keywords apply to the JSON type of the value they meet (as in
OpenAPI), so a schema node without `type` still checks e.g. `required` or `minimum` when the value fits.
Field paths are dotted from the object root (`spec.items[2].name`); map keys are appended with a dot.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kaito_sim.apiserver.errors import JsonObj, cause

Causes = list[JsonObj]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_CLASS_OPENING = re.compile(r"\[\^?\]?")  # a `]` first in a character class is a literal
_DATE_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
)


# ----------------------------------------------------------------------------------------------- helpers
def json_type(value: Any) -> str:
    """The JSON type name of a decoded JSON value, as the apiserver names it in type errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def render(value: Any) -> str:
    """A value as it appears after `Invalid value:` (strings quoted, numbers bare, composites as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _num(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _num(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def canonical(value: Any) -> Any:
    """A hashable form of a JSON value in which equal JSON values (and only those) compare equal."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, list):
        return ("a", tuple(canonical(v) for v in value))
    if isinstance(value, dict):
        return ("o", tuple(sorted((k, canonical(v)) for k, v in value.items())))
    return ("s", value)


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str) -> str:
    return f"{path} in body" if path else "body"


def _invalid(value: Any, path: str, detail: str) -> JsonObj:
    return cause("FieldValueInvalid", f"Invalid value: {render(value)}: {_where(path)} {detail}", path)


def _type_error(got: str, want: str, path: str) -> JsonObj:
    message = f'Invalid value: "{got}": {_where(path)} must be of type {want}: "{got}"'
    return cause("FieldValueTypeInvalid", message, path)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(_end_of_text_anchors(pattern))
    except re.error:
        return None


def _end_of_text_anchors(pattern: str) -> str:
    """Give `$` and `\\z` the RE2 meaning (end of text): Python's `$` also matches before a final newline."""
    if re.match(r"\(\?[a-zA-Z]*m", pattern):
        return pattern
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        token = pattern[index : index + 2] if pattern[index] == "\\" else pattern[index]
        if token == "[" and not in_class:
            opening = _CLASS_OPENING.match(pattern, index)
            token, in_class = (opening.group(0) if opening else token), True
        elif in_class:
            in_class = token != "]"
        elif token in ("$", r"\z"):
            out.append(r"\Z")
            index += len(token)
            continue
        out.append(token)
        index += len(token)
    return "".join(out)


# ----------------------------------------------------------------------------------------------- entry
def validate_value(value: Any, schema: JsonObj, path: str) -> Causes:
    """All causes for `value` at `path` under the schema node `schema`."""
    if value is None:
        return _check_null(schema, path)
    bad_type = _check_type(value, schema, path)
    if bad_type:
        return bad_type
    out = _check_format(value, schema, path) + _check_enum(value, schema, path)
    if isinstance(value, dict):
        out += _check_object(value, schema, path)
    elif isinstance(value, list):
        out += _check_array(value, schema, path)
    elif isinstance(value, str):
        out += _check_string(value, schema, path)
    elif not isinstance(value, bool):
        out += _check_number(value, schema, path)
    return out + _check_composition(value, schema, path)


def validate_root(obj: JsonObj, schema: JsonObj) -> Causes:
    """Validate a whole custom resource; `metadata` belongs to the core, and apiVersion/kind are implicit."""
    implicit = {"apiVersion", "kind"} - set(schema.get("properties") or {})
    body = {k: v for k, v in obj.items() if k != "metadata" and k not in implicit}
    root = dict(schema)
    root["properties"] = {k: v for k, v in (schema.get("properties") or {}).items() if k != "metadata"}
    root["required"] = [r for r in schema.get("required") or [] if r != "metadata"]
    return validate_value(body, root, "")


# ----------------------------------------------------------------------------------------------- type
def _wanted_type(schema: JsonObj) -> str | None:
    if schema.get("x-kubernetes-int-or-string") is True:
        return "integer,string"
    wanted = schema.get("type")
    return wanted if isinstance(wanted, str) and wanted else None


def _has_type(value: Any, wanted: str) -> bool:
    got = json_type(value)
    if wanted == "integer,string":
        return got in ("integer", "string")
    if wanted == "number":
        return got in ("integer", "number")
    if wanted in ("object", "array", "string", "integer", "boolean"):
        return got == wanted
    return True  # an unknown type name is the CRD check's business, not the value's


def _check_null(schema: JsonObj, path: str) -> Causes:
    wanted = _wanted_type(schema)
    if schema.get("nullable") is True or wanted is None:
        return []
    return [_type_error("null", wanted, path)]


def _check_type(value: Any, schema: JsonObj, path: str) -> Causes:
    wanted = _wanted_type(schema)
    if wanted is None or _has_type(value, wanted):
        return []
    return [_type_error(json_type(value), wanted, path)]


# ------------------------------------------------------------------------------------------- format / enum
def _is_date_time(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.match(value)
    if match is None:
        return False
    try:
        datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}")
    except ValueError:
        return False
    return True


def _is_byte(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def _in_range(bounds: tuple[int, int]) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            return True
        return bounds[0] <= value <= bounds[1]

    return check


_FORMATS: dict[str, Callable[[Any], bool]] = {
    "date-time": _is_date_time,
    "byte": _is_byte,
    "uuid": _is_uuid,
    "int32": _in_range(_INT32),
    "int64": _in_range(_INT64),
}


def _check_format(value: Any, schema: JsonObj, path: str) -> Causes:
    fmt = schema.get("format")
    check = _FORMATS.get(fmt) if isinstance(fmt, str) else None
    if check is None or check(value):
        return []
    shown = value if isinstance(value, str) else render(value)
    message = f"Invalid value: {render(value)}: {_where(path)} must be of type {fmt}: {json.dumps(shown)}"
    return [cause("FieldValueTypeInvalid", message, path)]


def _check_enum(value: Any, schema: JsonObj, path: str) -> Causes:
    allowed = schema.get("enum")
    if not isinstance(allowed, list) or canonical(value) in {canonical(a) for a in allowed}:
        return []
    supported = ", ".join(render(a) for a in allowed)
    message = f"Unsupported value: {render(value)}: supported values: {supported}"
    return [cause("FieldValueNotSupported", message, path)]


# ----------------------------------------------------------------------------------------------- scalars
def _check_string(value: str, schema: JsonObj, path: str) -> Causes:
    out: Causes = []
    longest = schema.get("maxLength")
    if isinstance(longest, int) and len(value) > longest:
        message = f"Invalid value: {render(value)}: {_where(path)} should be at most {longest} chars long"
        out.append(cause("FieldValueTooLong", message, path))
    shortest = schema.get("minLength")
    if isinstance(shortest, int) and len(value) < shortest:
        out.append(_invalid(value, path, f"should be at least {shortest} chars long"))
    pattern = schema.get("pattern")
    compiled = _compiled(pattern) if isinstance(pattern, str) else None
    if compiled is not None and compiled.search(value) is None:
        out.append(_invalid(value, path, f"should match '{pattern}'"))
    return out


def _check_number(value: int | float, schema: JsonObj, path: str) -> Causes:
    out: Causes = []
    low, high, step = _bound(schema, "minimum"), _bound(schema, "maximum"), _bound(schema, "multipleOf")
    if low is not None:
        if schema.get("exclusiveMinimum") is True and value <= low:
            out.append(_invalid(value, path, f"should be greater than {_num(low)}"))
        elif value < low:
            out.append(_invalid(value, path, f"should be greater than or equal to {_num(low)}"))
    if high is not None:
        if schema.get("exclusiveMaximum") is True and value >= high:
            out.append(_invalid(value, path, f"should be less than {_num(high)}"))
        elif value > high:
            out.append(_invalid(value, path, f"should be less than or equal to {_num(high)}"))
    if step is not None and step > 0 and not _is_multiple(value, step):
        out.append(_invalid(value, path, f"should be a multiple of {_num(step)}"))
    return out


def _bound(schema: JsonObj, keyword: str) -> int | float | None:
    bound = schema.get(keyword)
    if isinstance(bound, bool) or not isinstance(bound, int | float):
        return None
    return bound


def _is_multiple(value: int | float, step: int | float) -> bool:
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0
    quotient = value / step
    return abs(quotient - round(quotient)) <= 1e-9 * max(1.0, abs(quotient))


# ----------------------------------------------------------------------------------------------- arrays
def _check_array(value: list[Any], schema: JsonObj, path: str) -> Causes:
    out: Causes = []
    fewest, most = schema.get("minItems"), schema.get("maxItems")
    if isinstance(fewest, int) and len(value) < fewest:
        out.append(_invalid(len(value), path, f"should have at least {fewest} items"))
    if isinstance(most, int) and len(value) > most:
        message = f"Too many: {len(value)}: must have at most {most} items"
        out.append(cause("FieldValueTooMany", message, path))
    out += _check_duplicates(value, schema, path)
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            out += validate_value(item, items, f"{path}[{index}]")
    return out


def _check_duplicates(value: list[Any], schema: JsonObj, path: str) -> Causes:
    list_type = schema.get("x-kubernetes-list-type")
    keys = schema.get("x-kubernetes-list-map-keys")
    if list_type == "map" and isinstance(keys, list):
        return _duplicates(value, path, lambda item: _map_key(item, keys))
    if list_type == "set" or schema.get("uniqueItems") is True:
        return _duplicates(value, path, lambda item: item)
    return []


def _map_key(item: Any, keys: list[Any]) -> Any:
    if not isinstance(item, dict):
        return item
    return {k: item[k] for k in keys if isinstance(k, str) and k in item}


def _duplicates(value: list[Any], path: str, identity: Callable[[Any], Any]) -> Causes:
    seen: set[Any] = set()
    out: Causes = []
    for index, item in enumerate(value):
        shown = identity(item)
        key = canonical(shown)
        if key in seen:
            out.append(cause("FieldValueDuplicate", f"Duplicate value: {render(shown)}", f"{path}[{index}]"))
        seen.add(key)
    return out


# ----------------------------------------------------------------------------------------------- objects
def _check_object(value: JsonObj, schema: JsonObj, path: str) -> Causes:
    out = _check_property_count(value, schema, path)
    out += [
        cause("FieldValueRequired", "Required value", child(path, name))
        for name in schema.get("required") or []
        if isinstance(name, str) and name not in value
    ]
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    embedded = schema.get("x-kubernetes-embedded-resource") is True
    for name, item in value.items():
        sub = properties.get(name)
        if isinstance(sub, dict):
            out += validate_value(item, sub, child(path, name))
        elif isinstance(extra, dict):
            out += validate_value(item, extra, child(path, name))
        elif extra is False and not (embedded and name in ("apiVersion", "kind", "metadata")):
            message = f"Forbidden: {_where(child(path, name))} is a forbidden property"
            out.append(cause("FieldValueForbidden", message, child(path, name)))
    return out


def _check_property_count(value: JsonObj, schema: JsonObj, path: str) -> Causes:
    fewest, most = schema.get("minProperties"), schema.get("maxProperties")
    out: Causes = []
    if isinstance(fewest, int) and len(value) < fewest:
        out.append(_invalid(len(value), path, f"should have at least {fewest} properties"))
    if isinstance(most, int) and len(value) > most:
        message = f"Too many: {len(value)}: must have at most {most} items"
        out.append(cause("FieldValueTooMany", message, path))
    return out


# ----------------------------------------------------------------------------------------------- allOf...
def _check_composition(value: Any, schema: JsonObj, path: str) -> Causes:
    out: Causes = []
    for sub in _subschemas(schema, "allOf"):
        out += validate_value(value, sub, path)
    any_of = _subschemas(schema, "anyOf")
    if any_of and all(validate_value(value, sub, path) for sub in any_of):
        out.append(_invalid(value, path, "must validate at least one schema (anyOf)"))
    one_of = _subschemas(schema, "oneOf")
    if one_of and sum(not validate_value(value, sub, path) for sub in one_of) != 1:
        out.append(_invalid(value, path, "must validate one and only one schema (oneOf)"))
    negated = schema.get("not")
    if isinstance(negated, dict) and not validate_value(value, negated, path):
        out.append(_invalid(value, path, "must not validate the schema (not)"))
    return out


def _subschemas(schema: JsonObj, keyword: str) -> list[JsonObj]:
    subs = schema.get(keyword)
    return [s for s in subs if isinstance(s, dict)] if isinstance(subs, list) else []
