"""The kustomize trees rendered by the real `kubectl kustomize`, shared by the deploy and RBAC tests."""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("sim", "azure")
Obj = dict[str, Any]


@functools.cache
def _render(target: str) -> tuple[Obj, ...]:
    if shutil.which("kubectl") is None:
        raise AssertionError("kubectl must be on PATH to render deploy/")
    result = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / target)], capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize deploy/{target} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(target: str) -> list[Obj]:
    """Every object of `deploy/<target>` (e.g. `overlays/sim`), as fresh copies the caller may edit."""
    return copy.deepcopy(list(_render(target)))


def find(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    matches = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def manager_container(objs: list[Obj]) -> Obj:
    deployment = find(objs, "Deployment", "kaito-manager")
    containers: list[Obj] = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "manager")
