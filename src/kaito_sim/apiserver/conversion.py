"""Version conversion of stored objects: apiVersion rewrite, and the field renames between the two Event APIs.

core/v1 Events and events.k8s.io/v1 Events are one stored object seen through two schemas, as on a real
server; every other kind converts between served versions by rewriting `apiVersion` alone (CRD conversion
strategy None).
"""

from __future__ import annotations

from kaito_sim.apiserver.errors import JsonObj

# core/v1 field -> events.k8s.io/v1 field
_EVENT_RENAMES = {
    "involvedObject": "regarding",
    "message": "note",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
    "reportingComponent": "reportingController",
}
_EVENT_RENAMES_BACK = {new: old for old, new in _EVENT_RENAMES.items()}
_EVENTS_V1 = "events.k8s.io/v1"


def _rename(obj: JsonObj, renames: dict[str, str], api_version: str) -> JsonObj:
    return {renames.get(key, key): value for key, value in obj.items()} | {"apiVersion": api_version}


def as_version(obj: JsonObj, api_version: str) -> JsonObj:
    """`obj` as served in `api_version`; the stored dict is never mutated."""
    current = obj.get("apiVersion")
    if current == api_version:
        return obj
    if obj.get("kind") == "Event" and {current, api_version} == {"v1", _EVENTS_V1}:
        return _rename(obj, _EVENT_RENAMES if api_version == _EVENTS_V1 else _EVENT_RENAMES_BACK, api_version)
    return {**obj, "apiVersion": api_version}
