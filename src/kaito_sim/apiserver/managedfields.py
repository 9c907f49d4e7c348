"""Server-side apply and `metadata.managedFields` tracking, so kubectl and controllers see real field ownership.

kubectl --server-side merges instead of replacing, gets 409 conflicts on fields another manager set, and
migrates client-side-apply ownership by rewriting managedFields; every other write records its manager as
an "Update" entry. Ownership follows structured-merge-diff rules as observed from outside (see fieldsets).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.apiserver.fieldsets import (
    SERVER_META,
    Comparison,
    ListKeyFn,
    ListRules,
    Path,
    SetListFn,
    compare,
    delete_path,
    encode_json,
    fieldset_of,
    flatten,
    from_fields_v1,
    interior,
    key_element,
    path_string,
    to_fields_v1,
)

__all__ = [
    "ListKeyFn",
    "Path",
    "SetListFn",
    "apply",
    "fieldset_of",
    "from_fields_v1",
    "record_update",
    "to_fields_v1",
    "validate_managed_fields",
]

_BAD_SHAPE = "metadata.managedFields must be a list of objects with a manager"
_RESET: list[JsonObj] = [{}]  # a client writing [{}] asks the server to drop all ownership records
_ENTRY_ORDER = ("manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource")
_OPTIONAL_STRINGS = ("operation", "apiVersion", "time", "fieldsType", "subresource")


@dataclass
class _Entry:
    """One managedFields entry: who, how and when (`info`), and the paths it owns."""

    info: JsonObj
    fields: set[Path]

    def identity(self) -> tuple[str, str, str, str]:
        """Apply entries are one per manager; Update entries one per manager and apiVersion."""
        operation = str(self.info.get("operation", ""))
        version = "" if operation == "Apply" else str(self.info.get("apiVersion", ""))
        return str(self.info.get("manager")), operation, version, str(self.info.get("subresource", ""))

    def label(self) -> str:
        """The manager as conflict messages name it: `"m"`, plus subresource and version for updaters."""
        text = encode_json(str(self.info.get("manager")))
        if self.info.get("subresource"):
            text += f" with subresource {encode_json(self.info['subresource'])}"
        if self.info.get("operation") == "Update":
            text += f" using {self.info.get('apiVersion', '')}"
        return text


def validate_managed_fields(value: Any) -> None:
    """Reject client-written managedFields that are not a list of entries naming their manager."""
    if not isinstance(value, list) or not all(_valid_entry(entry) for entry in value):
        raise errors.bad_request(_BAD_SHAPE)


def _valid_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("manager"), str)
        and isinstance(entry.get("fieldsV1", {}), dict)
        and all(isinstance(entry.get(key, ""), str) for key in _OPTIONAL_STRINGS)
    )


# ----- server-side apply


def apply(
    live: JsonObj | None,
    applied: JsonObj,
    *,
    manager: str,
    force: bool,
    api_version: str,
    now: str,
    list_keys: ListKeyFn,
    set_list: SetListFn,
) -> JsonObj:
    """Server-side apply of `applied` onto `live` (None: not there yet); returns the new object.

    Applied fields merge in and become the manager's; fields it applied last time and dropped now are
    removed unless someone else owns them; changing another manager's field raises 409 unless `force`.
    """
    rules = ListRules(list_keys, set_list)
    config = _config_of(applied)
    base: JsonObj = copy.deepcopy(live) if live is not None else {}
    merged = _merge_map(base, config, (), rules)
    after = flatten(merged, rules)
    entries = _decode(_managed_of(live))
    info = {"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": now}
    mine = _Entry({**info, "fieldsType": "FieldsV1"}, fieldset_of(config, list_keys, set_list))
    previous = _pop_entry(entries, mine.identity())
    diff = compare(flatten(base, rules), after)
    _take_ownership(entries, diff, force=force)
    if previous is not None and previous.fields == mine.fields and diff.is_empty():
        mine.info["time"] = previous.info.get("time", now)  # a no-op apply leaves the object as it was
    entries.append(mine)
    if previous is not None:
        _prune(merged, previous.fields - mine.fields, entries, after)
    _store(merged, _encode(entries))
    return merged


def _config_of(applied: JsonObj) -> JsonObj:
    """The applied body without nulls (treated as omitted) and without server-written metadata."""
    config: JsonObj = _drop_nulls(copy.deepcopy(applied))
    meta = config.get("metadata")
    if isinstance(meta, dict):
        for key in SERVER_META:
            meta.pop(key, None)
    return config


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _drop_nulls(child) for key, child in value.items() if child is not None}
    if isinstance(value, list):
        return [_drop_nulls(child) for child in value]
    return value


def _merge(live: Any, config: Any, names: Path, rules: ListRules) -> Any:
    """`config` merged onto `live`: maps per key, keyed lists per item, set lists as a union, others replaced."""
    if isinstance(live, dict) and isinstance(config, dict):
        return _merge_map(live, config, names, rules)
    if isinstance(live, list) and isinstance(config, list):
        keys = rules.keys_for(names, live)
        if keys is not None and rules.keys_for(names, config) is not None:
            return _merge_keyed(live, config, keys, names, rules)
        if rules.is_set(names, live) and rules.is_set(names, config):
            return live + [item for item in config if not any(_same_item(item, have) for have in live)]
    return config


def _merge_map(live: JsonObj, config: JsonObj, names: Path, rules: ListRules) -> JsonObj:
    out = dict(live)
    for key, value in config.items():
        out[key] = _merge(live[key], value, (*names, key), rules) if key in live else value
    return out


def _merge_keyed(live: list[Any], config: list[Any], keys: list[str], names: Path, rules: ListRules) -> list[Any]:
    """Items merge with the applied item of the same key, in live order; new items go last."""
    applied = {key_element(item, keys): item for item in config}
    out: list[Any] = []
    for item in live:
        match = applied.pop(key_element(item, keys), None)
        out.append(item if match is None else _merge(item, match, names, rules))
    return out + list(applied.values())


def _same_item(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _take_ownership(entries: list[_Entry], diff: Comparison, *, force: bool) -> None:
    """Fields the write changed leave every other manager; without `force`, that is a conflict."""
    changed = diff.changed()
    conflicts = [(entry, sorted(entry.fields & changed)) for entry in entries if entry.fields & changed]
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for entry in entries:
        entry.fields -= changed | diff.removed


def _conflict_error(conflicts: list[tuple[_Entry, list[Path]]]) -> ApiError:
    by_manager: dict[str, list[Path]] = {}
    for entry, paths in conflicts:
        by_manager.setdefault(entry.label(), []).extend(paths)
    ordered = sorted(by_manager.items())
    causes = [
        errors.cause("FieldManagerConflict", f"conflict with {label}", path_string(path))
        for label, paths in ordered
        for path in paths
    ]
    if len(causes) == 1:
        label, paths = ordered[0]
        message = f"Apply failed with 1 conflict: conflict with {label}: {path_string(paths[0])}"
    else:
        lines: list[str] = []
        for label, paths in ordered:
            lines.append(f"conflicts with {label}:")
            lines.extend(f"- {path_string(path)}" for path in paths)
        message = f"Apply failed with {len(causes)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})


def _prune(merged: JsonObj, dropped: set[Path], entries: list[_Entry], after: dict[Path, Any]) -> None:
    """Remove what the applier stopped applying, except fields (or parents of fields) others still own."""
    owned = {path for entry in entries for path in entry.fields}
    keep = interior(owned & after.keys())
    for path in sorted((dropped & after.keys()) - owned, key=len):
        if path not in keep and not _is_item_key(path):
            delete_path(merged, path)


def _is_item_key(path: Path) -> bool:
    """A key field of a list item: it goes only with its item, which is pruned (or kept) on its own."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    return path[-1][2:] in json.loads(path[-2][2:])


# ----- update tracking


def record_update(
    old: JsonObj | None,
    new: JsonObj,
    *,
    manager: str,
    operation: str,
    api_version: str,
    now: str,
    list_keys: ListKeyFn,
    set_list: SetListFn,
    subresource: str | None = None,
) -> list[JsonObj]:
    """The managedFields for `new` after a non-apply write by `manager`.

    Changed and added fields become the manager's and leave every other entry; removed fields leave all.
    Client-written managedFields that differ from `old`'s replace the recorded ones (kubectl's migration).
    """
    rules = ListRules(list_keys, set_list)
    recorded = _managed_of(old)
    supplied: Any = (new.get("metadata") or {}).get("managedFields")
    if supplied == _RESET:
        return []
    from_client = supplied not in (None, []) and supplied != recorded
    if from_client:
        validate_managed_fields(supplied)
        recorded = supplied
    diff = compare(flatten(old or {}, rules), flatten(new, rules))
    if from_client and diff.is_empty():
        return copy.deepcopy(recorded)
    entries = _decode(recorded)
    info = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": now}
    mine = _Entry({**info, "fieldsType": "FieldsV1"}, set())
    if subresource:
        mine.info["subresource"] = subresource
    mine = _pop_entry(entries, mine.identity()) or mine
    _take_ownership(entries, diff, force=True)
    if diff.changed() or mine.fields & diff.removed:
        mine.info["time"] = now
    mine.fields = (mine.fields | diff.changed()) - diff.removed
    entries.append(mine)
    return _encode(entries)


# ----- entries


def _managed_of(obj: JsonObj | None) -> list[Any]:
    managed = ((obj or {}).get("metadata") or {}).get("managedFields")
    return managed if isinstance(managed, list) else []


def _decode(raw: list[Any]) -> list[_Entry]:
    entries: list[_Entry] = []
    for item in raw:
        if isinstance(item, dict):
            info = {key: copy.deepcopy(value) for key, value in item.items() if key != "fieldsV1"}
            entries.append(_Entry(info, from_fields_v1(item.get("fieldsV1"))))
    return entries


def _pop_entry(entries: list[_Entry], identity: tuple[str, str, str, str]) -> _Entry | None:
    """Take out the entries with `identity`, merged into one; None if there are none."""
    found = [entry for entry in entries if entry.identity() == identity]
    for entry in found:
        entries.remove(entry)
        if entry is not found[0]:
            found[0].fields |= entry.fields
    return found[0] if found else None


def _encode(entries: list[_Entry]) -> list[JsonObj]:
    """Non-empty entries in the apiserver's order: Apply before Update, then oldest first, then by name."""
    kept = sorted((entry for entry in entries if entry.fields), key=_sort_key)
    out: list[JsonObj] = []
    for entry in kept:
        body = {**entry.info, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(entry.fields)}
        ordered = {key: body[key] for key in _ENTRY_ORDER if key in body}
        ordered.update((key, value) for key, value in body.items() if key not in ordered)
        out.append(ordered)
    return out


def _sort_key(entry: _Entry) -> tuple[str, ...]:
    info = entry.info
    return tuple(str(info.get(key) or "") for key in ("operation", "time", "manager", "apiVersion", "subresource"))


def _store(obj: JsonObj, managed: list[JsonObj]) -> None:
    meta = obj.setdefault("metadata", {})
    if managed:
        meta["managedFields"] = managed
    else:
        meta.pop("managedFields", None)
