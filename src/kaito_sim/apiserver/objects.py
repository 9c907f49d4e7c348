"""ObjectMeta rules shared by every kind: server-owned fields, name checks, generation and timestamps."""

from __future__ import annotations

import copy
import datetime
import random
import re
import uuid
from typing import Any

from kaito_sim.apiserver.builtin_ranges import name_causes
from kaito_sim.apiserver.errors import JsonObj, cause

# Fields of metadata a client may not set; the server owns them.
SERVER_OWNED_META = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def generated_name(prefix: str) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return prefix + "".join(random.choice(alphabet) for _ in range(5))


def deep(obj: JsonObj) -> JsonObj:
    return copy.deepcopy(obj)


def _label_causes(labels: Any) -> list[JsonObj]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [cause("FieldValueTypeInvalid", "Invalid value: must be a map of strings", "metadata.labels")]
    out: list[JsonObj] = []
    for key, value in labels.items():
        name = key.rsplit("/", 1)[-1]
        prefix = key[: -len(name) - 1] if "/" in key else ""
        if (
            not name
            or len(name) > 63
            or not _QUALIFIED_NAME.match(name)
            or (prefix and not _DNS1123_SUBDOMAIN.match(prefix))
        ):
            out.append(
                cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{key}": name part must consist of '
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character",
                    "metadata.labels",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            out.append(
                cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{value}": a valid label must be an empty '
                    "string or consist of alphanumeric characters, '-', '_' or '.', and must start "
                    "and end with an alphanumeric character",
                    "metadata.labels",
                )
            )
    return out


def metadata_causes(kind: str, meta: JsonObj) -> list[JsonObj]:
    """Validation of ObjectMeta as every kind's strategy does it."""
    name = meta.get("name")
    if not name:
        return [cause("FieldValueRequired", "Required value: name or generateName is required", "metadata.name")]
    if not isinstance(name, str):
        return [cause("FieldValueTypeInvalid", "Invalid value: name must be a string", "metadata.name")]
    out = name_causes(kind, name) + _label_causes(meta.get("labels"))
    annotations = meta.get("annotations")
    if annotations is not None and (
        not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values())
    ):
        out.append(cause("FieldValueTypeInvalid", "Invalid value: must be a map of strings", "metadata.annotations"))
    finalizers = meta.get("finalizers")
    if finalizers is not None and (not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)):
        out.append(cause("FieldValueTypeInvalid", "Invalid value: must be a list of strings", "metadata.finalizers"))
    return out


def spec_changed(old: JsonObj, new: JsonObj, *, status_is_subresource: bool) -> bool:
    """True when anything outside metadata (and status, when it has its own endpoint) differs."""
    skip = {"metadata", "apiVersion", "kind"} | ({"status"} if status_is_subresource else set())
    keys = (set(old) | set(new)) - skip
    return any(old.get(k) != new.get(k) for k in keys)
