"""Names and small object helpers the simulated controllers share: kinds, owners, conditions, pod templates."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.store import StorageKey, WatchEvent

Key = tuple[str, str]  # (namespace, name)
PODS: StorageKey = ("", "pods")
NODES: StorageKey = ("", "nodes")
EVENTS: StorageKey = ("", "events")
SERVICES: StorageKey = ("", "services")
ENDPOINTS: StorageKey = ("", "endpoints")
PVCS: StorageKey = ("", "persistentvolumeclaims")
SLICES: StorageKey = ("discovery.k8s.io", "endpointslices")
DEPLOYMENTS: StorageKey = ("apps", "deployments")
STATEFULSETS: StorageKey = ("apps", "statefulsets")
JOBS: StorageKey = ("batch", "jobs")
TERMINAL = ("Succeeded", "Failed")
_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def key_of(obj: JsonObj) -> Key:
    meta = obj["metadata"]
    return (str(meta.get("namespace", "")), str(meta["name"]))


def controller_ref(obj: JsonObj | None) -> JsonObj | None:
    for ref in (obj or {}).get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_keys(event: WatchEvent, kind: str) -> list[Key]:
    """Keys of the `kind` controllers of an event's object, before and after the change."""
    out: list[Key] = []
    for obj in (event.obj, event.old):
        ref = controller_ref(obj)
        if obj and ref and ref.get("kind") == kind:
            key = (str(obj["metadata"].get("namespace", "")), str(ref.get("name", "")))
            if key not in out:
                out.append(key)
    return out


def owner_ref(owner: JsonObj) -> JsonObj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def condition(obj: JsonObj | None, kind: str) -> JsonObj | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def is_ready(pod: JsonObj) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def is_terminal(pod: JsonObj) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL


def is_active(pod: JsonObj) -> bool:
    return not is_terminal(pod) and not pod["metadata"].get("deletionTimestamp")


def merge_conditions(old: list[JsonObj], new: list[JsonObj], now: str, *, stamps: tuple[str, ...]) -> list[JsonObj]:
    """`new` conditions with the `stamps` of unchanged ones carried over, so rewrites are no-ops.

    lastTransitionTime moves only when the status flips; any other stamp moves on any change.
    """
    before = {c.get("type"): c for c in old}
    out = []
    for cond in new:
        was = before.get(cond["type"]) or {}
        same = bool(was) and all(was.get(k) == cond.get(k) for k in ("status", "reason", "message"))
        flipped = was.get("status") != cond.get("status")
        kept = {
            k: was.get(k) for k in stamps if was.get(k) and not (flipped if k == "lastTransitionTime" else not same)
        }
        out.append({**cond, **{k: now for k in stamps}, **kept})
    return out


def template_hash(template: Any) -> str:
    """A stable 10-character digest of a pod template, in the alphabet Kubernetes uses for generated names."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_HASH_ALPHABET[b % len(_HASH_ALPHABET)] for b in digest[:10])


def pod_from_template(owner: JsonObj, template: JsonObj, labels: dict[str, str]) -> JsonObj:
    meta = template.get("metadata") or {}
    pod: JsonObj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": owner["metadata"]["namespace"],
            "labels": {**(meta.get("labels") or {}), **labels},
            "ownerReferences": [owner_ref(owner)],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }
    if meta.get("annotations"):
        pod["metadata"]["annotations"] = dict(meta["annotations"])
    return pod
