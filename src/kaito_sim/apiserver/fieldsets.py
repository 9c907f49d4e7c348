"""Field sets: the paths of an object a field manager owns, and their FieldsV1 wire form in managedFields.

Server-side apply and update tracking both reason about an object as a set of paths made of path elements
(`f:name` for a map field, `k:{"name":"c"}` for an associative-list item, `v:"x"` for a set-list value),
the same vocabulary kube-apiserver writes into `metadata.managedFields[].fieldsV1`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kaito_sim.apiserver.errors import JsonObj

Path = tuple[str, ...]
ListKeyFn = Callable[[tuple[str, ...]], list[str] | None]
SetListFn = Callable[[tuple[str, ...]], bool]

# metadata the server writes: never taken from an applied body, never owned by a manager.
SERVER_META = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    }
)
_UNTRACKED_META = SERVER_META | {"name", "namespace"}
_UNTRACKED_TOP = frozenset({"apiVersion", "kind"})
_META_PATH: Path = ("f:metadata",)

# Maps keyed by free-form names (map[string]T in Go); their own node is owned too, shown as ".".
_FREE_FORM_MAPS = frozenset(
    {
        "labels",
        "annotations",
        "nodeSelector",
        "matchLabels",
        "data",
        "binaryData",
        "stringData",
        "limits",
        "requests",
        "capacity",
        "allocatable",
    }
)
_ELEMENT_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


@dataclass(frozen=True)
class ListRules:
    """How the list at a path (field names from the root) merges: by key, as a set, or replaced whole."""

    list_keys: ListKeyFn
    set_list: SetListFn

    def keys_for(self, names: Path, items: list[Any]) -> list[str] | None:
        """The merge keys when every item is an object carrying them with unique values; None -> atomic."""
        keys = self.list_keys(names)
        if not keys:
            return None
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, dict) or not all(is_scalar(item.get(k)) for k in keys):
                return None
            element = key_element(item, keys)
            if element in seen:
                return None
            seen.add(element)
        return keys

    def is_set(self, names: Path, items: list[Any]) -> bool:
        return self.set_list(names) and all(is_scalar(item) for item in items)


def is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def encode_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def field_element(name: str) -> str:
    return "f:" + name


def key_element(item: JsonObj, keys: list[str]) -> str:
    return "k:" + encode_json({key: item[key] for key in keys})


def value_element(value: Any) -> str:
    return "v:" + encode_json(value)


def same_value(a: Any, b: Any) -> bool:
    """JSON equality that tells 1 from 1.0 and from true."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ----- objects as field sets


def tracked_view(obj: JsonObj) -> JsonObj:
    """`obj` without the fields no manager owns (type meta, identity and server-written metadata)."""
    view = {key: value for key, value in obj.items() if key not in _UNTRACKED_TOP}
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        view["metadata"] = {key: value for key, value in meta.items() if key not in _UNTRACKED_META}
    return view


def flatten(obj: JsonObj, rules: ListRules) -> dict[Path, Any]:
    """Every owned-able path of `obj` mapped to the value found there."""
    out: dict[Path, Any] = {}
    for key, value in tracked_view(obj).items():
        _visit(value, (field_element(key),), (key,), rules, out, member=False)
    return out


def fieldset_of(obj: JsonObj, list_keys: ListKeyFn, set_list: SetListFn) -> set[Path]:
    """The set of paths a manager owns when it sets every field of `obj`."""
    return set(flatten(obj, ListRules(list_keys, set_list)))


def _visit(value: Any, path: Path, names: Path, rules: ListRules, out: dict[Path, Any], *, member: bool) -> None:
    if isinstance(value, dict):
        free_form = _is_free_form(names, value)
        if (member or free_form or not value) and path != _META_PATH:
            out[path] = value
        for key, child in value.items():
            _visit(child, (*path, field_element(key)), (*names, key), rules, out, member=free_form)
    elif isinstance(value, list) and value:
        _visit_list(value, path, names, rules, out, member=member)
    else:
        out[path] = value


def _visit_list(
    items: list[Any], path: Path, names: Path, rules: ListRules, out: dict[Path, Any], *, member: bool
) -> None:
    keys = rules.keys_for(names, items)
    if keys is not None:
        if member:
            out[path] = items
        for item in items:
            _visit(item, (*path, key_element(item, keys)), names, rules, out, member=True)
    elif rules.is_set(names, items):
        out[path] = items
        for item in items:
            out[(*path, value_element(item))] = item
    else:
        out[path] = items


def _is_free_form(names: Path, value: JsonObj) -> bool:
    if not names:
        return False
    if names[-1] == "selector":  # Service selectors are plain maps; LabelSelector is a struct.
        return bool(value) and all(isinstance(v, str) for v in value.values())
    return names[-1] in _FREE_FORM_MAPS


# ----- comparing two objects


@dataclass(frozen=True)
class Comparison:
    """What changed between two flattened objects."""

    added: frozenset[Path]
    modified: frozenset[Path]
    removed: frozenset[Path]

    def changed(self) -> frozenset[Path]:
        return self.added | self.modified

    def is_empty(self) -> bool:
        return not (self.added or self.modified or self.removed)


def interior(paths: Iterable[Path]) -> set[Path]:
    """Proper prefixes of `paths`: the nodes that have owned children."""
    return {path[:i] for path in paths for i in range(1, len(path))}


def compare(old: dict[Path, Any], new: dict[Path, Any]) -> Comparison:
    """Added, modified (leaf value differs) and removed paths from `old` to `new`."""
    old_inner, new_inner = interior(old), interior(new)
    modified = {
        path
        for path in old.keys() & new.keys()
        if not (path in old_inner and path in new_inner) and not same_value(old[path], new[path])
    }
    return Comparison(frozenset(new.keys() - old.keys()), frozenset(modified), frozenset(old.keys() - new.keys()))


# ----- paths inside objects


def _slot(node: Any, element: str) -> str | int | None:
    """Where `element` sits in `node`: a map key or a list index; None when absent."""
    kind, text = element[:2], element[2:]
    if kind == "f:" and isinstance(node, dict):
        return text if text in node else None
    if not isinstance(node, list):
        return None
    if kind == "i:":
        index = int(text) if text.isdigit() else -1
        return index if 0 <= index < len(node) else None
    wanted = json.loads(text)
    for index, item in enumerate(node):
        if kind == "v:" and same_value(item, wanted):
            return index
        if kind == "k:" and isinstance(item, dict) and all(same_value(item.get(k), v) for k, v in wanted.items()):
            return index
    return None


def delete_path(obj: JsonObj, path: Path) -> None:
    """Remove the node at `path` (and all below it) from `obj`; a missing path is left alone.

    Maps and lists emptied by the removal go too, as the apiserver drops them, except `metadata`.
    """
    chain: list[tuple[Any, str | int]] = []
    node: Any = obj
    for element in path:
        slot = _slot(node, element)
        if slot is None:
            return
        chain.append((node, slot))
        node = node[slot]
    while chain:
        parent, slot = chain.pop()
        del parent[slot]
        if parent or not chain or (len(chain) == 1 and chain[0][1] == "metadata"):
            return


def path_string(path: Path) -> str:
    """The path as conflict messages print it: `.spec.containers[name="c"].image`."""
    parts: list[str] = []
    for element in path:
        kind, text = element[:2], element[2:]
        if kind == "f:":
            parts.append("." + text)
        elif kind == "k:":
            fields = json.loads(text)
            parts.append("[" + ",".join(f"{k}={encode_json(v)}" for k, v in fields.items()) + "]")
        elif kind == "v:":
            parts.append("[=" + encode_json(json.loads(text)) + "]")
        else:
            parts.append("[" + text + "]")
    return "".join(parts)


# ----- FieldsV1


def to_fields_v1(paths: Iterable[Path]) -> JsonObj:
    """Encode a path set as FieldsV1: a node that is owned and also has owned children carries `".": {}`."""
    tree: JsonObj = {}
    for path in paths:
        if not path:
            continue
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        node["."] = {}
    return _render(tree)


def _render(node: JsonObj) -> JsonObj:
    children = sorted((key for key in node if key != "."), key=_element_order)
    out: JsonObj = {".": {}} if "." in node and children else {}
    for key in children:
        out[key] = _render(node[key])
    return out


def _element_order(element: str) -> tuple[int, str]:
    return _ELEMENT_RANK.get(element[:1], len(_ELEMENT_RANK)), element


def from_fields_v1(fields: Any) -> set[Path]:
    """Decode FieldsV1 into a path set; anything that is not a JSON object decodes as empty."""
    out: set[Path] = set()
    if isinstance(fields, dict):
        _collect(fields, (), out)
    return out


def _collect(node: JsonObj, path: Path, out: set[Path]) -> None:
    for key, child in node.items():
        if key == ".":
            if path:
                out.add(path)
        elif isinstance(child, dict) and child:
            _collect(child, (*path, key), out)
        else:
            out.add((*path, key))
