"""hostPath volumes of process pods: one directory per simulated node, shared by its pods and kept across them.

On a real node a hostPath volume is a path on the node's disk, so every pod on that node sees the same
files, and they outlive the pods (a node-local model cache relies on it). A simulated node's disk is a
directory on this machine, `<nodes root>/<node name>`, and a pod's `hostPath.path` lives under it. The
kubelet checks the path's `type` before any container starts, with the same words as
`pkg/volume/hostpath` (the pod waits, and a `FailedMount` event says why).
"""

from __future__ import annotations

import posixpath
import stat
from pathlib import Path

from kaito_sim.apiserver.errors import JsonObj

FAILED_MOUNT = "FailedMount"  # the event's reason
# type -> (what the path must be, the check's wording); "" and the *OrCreate types create a missing path.
_KINDS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "FileOrCreate": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def node_path(node_dir: Path, path: str) -> Path:
    """Where the node path `path` (absolute, as in the pod spec) lives on this machine; never outside `node_dir`."""
    return node_dir / posixpath.normpath("/" + path).lstrip("/")


def set_up(pod: JsonObj, node_dir: Path) -> str | None:
    """Check (and where the type says so, create) every hostPath volume of `pod`: the FailedMount message, or None."""
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        source = volume.get("hostPath") if isinstance(volume, dict) else None
        if isinstance(source, dict):
            name, path = str(volume.get("name")), str(source.get("path") or "/")
            failure = _check(path, str(source.get("type") or ""), node_dir)
            if failure is not None:
                return f'MountVolume.SetUp failed for volume "{name}" : {failure}'
    return None


def _check(path: str, kind: str, node_dir: Path) -> str | None:
    local = node_path(node_dir, path)
    try:
        if not local.exists() and kind in ("", "DirectoryOrCreate"):
            local.mkdir(parents=True, exist_ok=True)  # unset type: the runtime creates a missing path as a directory
        elif not local.exists() and kind == "FileOrCreate":
            local.parent.mkdir(parents=True, exist_ok=True)
            local.touch()
    except OSError as exc:
        return f"mkdir {path}: {exc.strerror or exc}"
    if kind not in _KINDS:
        return None
    test, what = _KINDS[kind]
    try:
        ok = test(local.stat().st_mode)
    except OSError:
        ok = False
    return None if ok else f"hostPath type check failed: {path} is not {what}"
