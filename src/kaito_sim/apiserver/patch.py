"""PATCH bodies applied the way the apiserver does: JSON merge patch, JSON patch and strategic merge patch."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kaito_sim.apiserver import errors, listkeys
from kaito_sim.apiserver.errors import JsonObj

Path = tuple[str, ...]

# ---------------------------------------------------------------------------------------------------------
# RFC 7386 JSON merge patch


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch. Returns a new value; never mutates inputs.

    A null member deletes the key; lists are replaced whole; a non-object patch replaces the target.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    base: JsonObj = target if isinstance(target, dict) else {}
    result: JsonObj = {}
    for key, value in base.items():
        if key not in patch:
            result[key] = copy.deepcopy(value)
        elif patch[key] is not None:
            result[key] = merge_patch(value, patch[key])
    for key, value in patch.items():
        if key not in base and value is not None:
            result[key] = merge_patch(None, value)
    return result


# ---------------------------------------------------------------------------------------------------------
# RFC 6902 JSON patch

_OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})
_NEEDS_VALUE = frozenset({"add", "replace", "test"})
_NEEDS_FROM = frozenset({"move", "copy"})
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


class _PathError(Exception):
    """A JSON pointer that names nothing in the document (or cannot be written there)."""


@dataclass(frozen=True)
class _Op:
    """One validated RFC 6902 operation; pointers are kept both raw (for messages) and split into tokens."""

    name: str
    path: str
    tokens: list[str]
    value: Any = None
    source: str = ""
    source_tokens: list[str] | None = None


def json_patch(target: JsonObj, operations: Any) -> JsonObj:
    """RFC 6902: add, remove, replace, move, copy, test; JSON pointer with ~0/~1 escapes and '-' for append.

    Returns a new object (deep copy) and never mutates the input. A body that is not a list, or a malformed
    operation, is 400 BadRequest; a failed `test` or a path the document lacks is 422 Invalid.
    """
    if not isinstance(operations, list):
        raise errors.bad_request(
            f"json: cannot unmarshal {_json_type(operations)} into Go value of type jsonpatch.Patch"
        )
    ops = [_parse_op(raw) for raw in operations]
    doc: Any = copy.deepcopy(target)
    for op in ops:
        doc = _apply_op(doc, op)
    if not isinstance(doc, dict):
        raise errors.ApiError(422, "Invalid", "jsonpatch result is not a JSON object")
    return doc


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


def _parse_op(raw: Any) -> _Op:
    if not isinstance(raw, dict):
        raise errors.bad_request(f"jsonpatch operation must be a JSON object, got {_json_type(raw)}")
    name = raw.get("op")
    if not isinstance(name, str) or name not in _OPS:
        raise errors.bad_request(f"Unexpected kind: {name}")
    path = raw.get("path")
    if not isinstance(path, str):
        raise errors.bad_request(f"jsonpatch {name} operation is missing the string field 'path'")
    if name in _NEEDS_VALUE and "value" not in raw:
        raise errors.bad_request(f"jsonpatch {name} operation is missing the field 'value'")
    tokens = _parse_pointer(path)
    if name not in _NEEDS_FROM:
        return _Op(name, path, tokens, value=raw.get("value"))
    source = raw.get("from")
    if not isinstance(source, str):
        raise errors.bad_request(f"jsonpatch {name} operation is missing the string field 'from'")
    return _Op(name, path, tokens, source=source, source_tokens=_parse_pointer(source))


def _parse_pointer(pointer: str) -> list[str]:
    """RFC 6901 tokens of `pointer`; "" is the whole document."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise errors.bad_request(f'JSON pointer must be empty or start with a "/": {pointer}')
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _not_applicable(op: _Op, what: str, pointer: str) -> errors.ApiError:
    return errors.ApiError(
        422, "Invalid", f"jsonpatch {op.name} operation does not apply: doc is missing {what}: {pointer}"
    )


def _apply_op(doc: Any, op: _Op) -> Any:
    """`doc` after `op`; `doc` is owned by the caller's deep copy and may be changed in place."""
    if op.source_tokens is not None:
        try:
            moved = _get(doc, op.source_tokens)
        except _PathError:
            raise _not_applicable(op, "from path", op.source) from None
        if op.name == "move":
            return _move(doc, op)
        return _guarded(op, lambda: _add(doc, op.tokens, copy.deepcopy(moved)))
    if op.name == "test":
        actual = _guarded(op, lambda: _get(doc, op.tokens))
        if not _json_equal(actual, op.value):
            raise errors.ApiError(422, "Invalid", f"jsonpatch test operation failed: testing value {op.path}")
        return doc
    if op.name == "remove":
        return _guarded(op, lambda: _remove(doc, op.tokens)[0])
    if op.name == "replace":
        return _guarded(op, lambda: _replace(doc, op.tokens, copy.deepcopy(op.value)))
    return _guarded(op, lambda: _add(doc, op.tokens, copy.deepcopy(op.value)))


def _guarded(op: _Op, step: Callable[[], Any]) -> Any:
    try:
        return step()
    except _PathError:
        raise _not_applicable(op, "path", op.path) from None


def _move(doc: Any, op: _Op) -> Any:
    source = op.source_tokens or []
    if op.tokens == source:
        return doc
    if op.tokens[: len(source)] == source:
        raise errors.ApiError(
            422, "Invalid", f"jsonpatch move operation does not apply: {op.path} is a child of {op.source}"
        )
    doc, value = _remove(doc, source)
    return _guarded(op, lambda: _add(doc, op.tokens, value))


def _index(token: str, size: int, *, allow_end: bool = False) -> int:
    """The array position `token` names in a list of `size` items; `allow_end` admits `-` and `size`."""
    if allow_end and token == "-":
        return size
    if not _ARRAY_INDEX.fullmatch(token):
        raise _PathError(token)
    position = int(token)
    if position > (size if allow_end else size - 1):
        raise _PathError(token)
    return position


def _child(node: Any, token: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            raise _PathError(token)
        return node[token]
    if isinstance(node, list):
        return node[_index(token, len(node))]
    raise _PathError(token)


def _get(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens:
        node = _child(node, token)
    return node


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _get(doc, tokens[:-1])
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(tokens[-1], len(parent), allow_end=True), value)
    else:
        raise _PathError(tokens[-1])
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    """(document, removed value); the root itself cannot be removed."""
    if not tokens:
        raise _PathError("")
    parent = _get(doc, tokens[:-1])
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise _PathError(tokens[-1])
        return doc, parent.pop(tokens[-1])
    if isinstance(parent, list):
        return doc, parent.pop(_index(tokens[-1], len(parent)))
    raise _PathError(tokens[-1])


def _replace(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _get(doc, tokens[:-1])
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise _PathError(tokens[-1])
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent[_index(tokens[-1], len(parent))] = value
    else:
        raise _PathError(tokens[-1])
    return doc


def _json_equal(left: Any, right: Any) -> bool:
    """Equality as JSON sees it: booleans are not numbers, 1 equals 1.0, containers compare deeply."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[k], right[k]) for k in left)
    return type(left) is type(right) and bool(left == right)


# ---------------------------------------------------------------------------------------------------------
# Kubernetes strategic merge patch

_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_ORDER_PREFIX = "$setElementOrder/"
_DELETE_PRIMITIVE_PREFIX = "$deleteFromPrimitiveList/"


@dataclass(frozen=True)
class _Schema:
    """Where lists merge by key and where they merge as sets."""

    key_for: Callable[[Path], str | None]
    is_set: Callable[[Path], bool]


def strategic_merge_patch(
    target: JsonObj,
    patch: JsonObj,
    *,
    key_for: Callable[[Path], str | None] = listkeys.merge_key,
    is_set: Callable[[Path], bool] = listkeys.is_set_list,
) -> JsonObj:
    """Kubernetes strategic merge patch for built-in kinds. Returns a new object, never mutates inputs.

    Maps merge recursively and `null` deletes a key; lists with a merge key merge item by item; set lists
    take the union; other lists are replaced. Honours `$patch` (replace/delete), `$retainKeys`,
    `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`; no directive is left in the result.
    """
    if not isinstance(target, dict) or not isinstance(patch, dict):
        raise errors.bad_request("strategic merge patch: both the object and the patch must be JSON objects")
    merged = _merge_map(copy.deepcopy(target), patch, (), _Schema(key_for, is_set))
    return {} if merged is None else merged


def _is_directive(key: str) -> bool:
    return key in (_PATCH, _RETAIN_KEYS) or key.startswith((_ORDER_PREFIX, _DELETE_PRIMITIVE_PREFIX))


def _merge_map(original: JsonObj, patch: JsonObj, path: Path, schema: _Schema) -> JsonObj | None:
    """`patch` merged into `original` (owned, changed in place); None when the patch deletes the map."""
    directive = patch.get(_PATCH)
    if directive == "delete":
        return None
    if directive == "replace":
        original = {}
    elif directive is not None:
        raise errors.bad_request(f"Unknown patch directive {_PATCH}: {directive!r} at {_dotted(path)}")
    result = _retain_keys(original, patch, path)
    _delete_from_primitive_lists(result, patch, path)
    for key, value in patch.items():
        if _is_directive(key):
            continue
        merged = None if value is None else _merge_value(result.get(key), value, (*path, key), schema)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    _apply_element_orders(result, patch, path, schema)
    return result


def _merge_value(original: Any, value: Any, path: Path, schema: _Schema) -> Any:
    """`value` (not null) merged into `original`; None means the key is to be removed."""
    if isinstance(value, dict):
        return _merge_map(original if isinstance(original, dict) else {}, value, path, schema)
    if isinstance(value, list):
        return _merge_list(original if isinstance(original, list) else [], value, path, schema)
    return value


def _merge_list(original: list[Any], patch: list[Any], path: Path, schema: _Schema) -> list[Any]:
    if schema.is_set(path):
        result = list(original)
        for item in patch:
            if item not in result:
                result.append(_strip(item))
        return result
    key = schema.key_for(path)
    if key is None:
        return [_strip(item) for item in patch]
    return _merge_keyed_list(original, patch, key, path, schema)


def _merge_keyed_list(original: list[Any], patch: list[Any], key: str, path: Path, schema: _Schema) -> list[Any]:
    """Items merge into the live item with the same `key` value; new ones are appended."""
    for item in patch:
        if not isinstance(item, dict):
            raise errors.bad_request(f"{_dotted(path)}: list items must be objects with merge key {key!r}")
    if any(item.get(_PATCH) == "replace" for item in patch):
        merged = [_merge_map({}, item, path, schema) for item in patch if item.get(_PATCH) != "replace"]
        return [item for item in merged if item is not None]
    result = list(original)
    for item in patch:
        if key not in item:
            raise errors.bad_request(f"map: {item} does not contain declared merge key: {key}")
        matches = [i for i, live in enumerate(result) if isinstance(live, dict) and live.get(key) == item[key]]
        if not matches:
            added = _merge_map({}, item, path, schema)
            if added is not None:
                result.append(added)
            continue
        changed = _merge_map(result[matches[0]], item, path, schema)
        if changed is None:
            result = [live for i, live in enumerate(result) if i not in matches]
        else:
            result[matches[0]] = changed
    return result


def _retain_keys(original: JsonObj, patch: JsonObj, path: Path) -> JsonObj:
    """`original` cut down to the keys `$retainKeys` names (unchanged when the patch has none)."""
    if _RETAIN_KEYS not in patch:
        return original
    keep = patch[_RETAIN_KEYS]
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise errors.bad_request(f"{_RETAIN_KEYS} at {_dotted(path)} must be a list of strings")
    for key, value in patch.items():
        if not _is_directive(key) and value is not None and key not in keep:
            raise errors.ApiError(422, "Invalid", f"{_dotted((*path, key))}: not listed in {_RETAIN_KEYS} {keep}")
    return {k: v for k, v in original.items() if k in keep}


def _delete_from_primitive_lists(result: JsonObj, patch: JsonObj, path: Path) -> None:
    for directive, values in patch.items():
        if not directive.startswith(_DELETE_PRIMITIVE_PREFIX):
            continue
        name = directive[len(_DELETE_PRIMITIVE_PREFIX) :]
        if not isinstance(values, list):
            raise errors.bad_request(f"{directive} at {_dotted(path)} must be a list")
        live = result.get(name)
        if isinstance(live, list):
            result[name] = [item for item in live if item not in values]


def _apply_element_orders(result: JsonObj, patch: JsonObj, path: Path, schema: _Schema) -> None:
    for directive, order in patch.items():
        if not directive.startswith(_ORDER_PREFIX):
            continue
        name = directive[len(_ORDER_PREFIX) :]
        if not isinstance(order, list):
            raise errors.bad_request(f"{directive} at {_dotted(path)} must be a list")
        live = result.get(name)
        if isinstance(live, list):
            list_path = (*path, name)
            key = None if schema.is_set(list_path) else schema.key_for(list_path)
            result[name] = _reorder(live, order, key)


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    """Items named in `order` first, in that order; the rest after, keeping their relative order."""

    def identity(entry: Any) -> Any:
        return entry.get(key) if key is not None and isinstance(entry, dict) else entry

    wanted = [identity(entry) for entry in order]

    def rank(pair: tuple[int, Any]) -> tuple[int, int]:
        position, item = pair
        ident = identity(item)
        for index, candidate in enumerate(wanted):
            if candidate == ident:
                return (0, index)
        return (1, position)

    return [item for _, item in sorted(enumerate(items), key=rank)]


def _strip(value: Any) -> Any:
    """A deep copy of `value` with every patch directive key removed."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not _is_directive(k)}
    if isinstance(value, list):
        return [_strip(item) for item in value]
    return value


def _dotted(path: Path) -> str:
    return ".".join(path) or "<root>"
