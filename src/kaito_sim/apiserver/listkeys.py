"""Which lists merge by key (strategic merge patch, server-side apply) and which are replaced whole.

Real servers read `x-kubernetes-patch-merge-key` / `x-kubernetes-list-map-keys` from the OpenAPI of
built-in types. The simulated server keeps the small table the operator and kubectl need: a list field
name (optionally qualified by its parent field) maps to the key its items merge on.
"""

from __future__ import annotations

# A list named by a key here merges item by item on that key; "ports" depends on where it sits.
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "tolerations": "key",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}

# Lists of scalars that merge as sets (union) rather than being replaced.
_SET_LISTS: frozenset[str] = frozenset({"finalizers"})


def merge_key(path: tuple[str, ...]) -> str | None:
    """The merge key for the list at `path` (field names from the object root), or None if atomic.

    Container ports merge on `containerPort`; Service ports (`spec.ports`) merge on `port`.
    """
    if not path:
        return None
    name = path[-1]
    if name == "ports":
        return "port" if path == ("spec", "ports") else "containerPort"
    return _MERGE_KEYS.get(name)


def is_set_list(path: tuple[str, ...]) -> bool:
    """True for scalar lists that merge as sets (e.g. `metadata.finalizers`)."""
    return bool(path) and path[-1] in _SET_LISTS
