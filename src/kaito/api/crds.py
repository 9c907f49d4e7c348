"""CustomResourceDefinitions generated from the models: the Workspace and InferenceSet CRDs, and the NodeClaim
subset we write.

`kaito crds` writes them to `crds/`; a test fails when the committed files differ from this output.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from kaito.api import inferenceset, nodeclaim, workspace
from kaito.api.schema import Schema, model_schema

Crd = dict[str, Any]


def _condition_column(name: str, condition: str, *, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {
        "name": name,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status',
        "description": f"Status of the {condition} condition",
    }
    if priority:
        column["priority"] = priority
    return column


WORKSPACE_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Instance",
        "type": "string",
        "jsonPath": ".status.plan.instanceType",
        "description": "The GPU instance type in use",
    },
    _condition_column("ResourceReady", "ResourceReady"),
    _condition_column("InferenceReady", "InferenceReady"),
    _condition_column("WorkspaceReady", "WorkspaceSucceeded"),
    _condition_column("JobStarted", "JobStarted", priority=1),
    {"name": "State", "type": "string", "jsonPath": ".status.state", "priority": 1},
    {"name": "Nodes", "type": "integer", "jsonPath": ".status.plan.nodes", "priority": 1},
    {
        "name": "Adapters",
        "type": "string",
        "jsonPath": ".status.adaptersLoaded",
        "description": "LoRA adapters loaded out of wanted",
        "priority": 1,
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def workspace_schema() -> Schema:
    schema = model_schema(workspace.Workspace, skip=frozenset({"api_version", "kind", "metadata"}))
    schema["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **schema["properties"],
    }
    schema["description"] = "A model to serve (inference) or fine-tune (tuning) on GPU nodes kaito provisions."
    return schema


def workspace_crd() -> Crd:
    schema = workspace_schema()
    versions = [
        {
            "name": version,
            "served": True,
            "storage": version == workspace.STORAGE_VERSION,
            "schema": {"openAPIV3Schema": schema},
            "subresources": {"status": {}},
            "additionalPrinterColumns": WORKSPACE_COLUMNS,
        }
        for version in workspace.SERVED_VERSIONS
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{workspace.PLURAL}.{workspace.GROUP}"},
        "spec": {
            "group": workspace.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": workspace.KIND,
                "listKind": f"{workspace.KIND}List",
                "plural": workspace.PLURAL,
                "singular": "workspace",
                "shortNames": ["wk", "wks"],
                "categories": ["workspace"],
            },
            "versions": versions,
        },
    }


INFERENCESET_COLUMNS: list[dict[str, Any]] = [
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "description": "Replicas asked for"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas", "description": "Replicas ready"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def inferenceset_schema() -> Schema:
    schema = model_schema(inferenceset.InferenceSet, skip=frozenset({"api_version", "kind", "metadata"}))
    schema["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **schema["properties"],
    }
    _add_defaults(schema["properties"]["spec"], inferenceset.InferenceSetSpec)
    schema["description"] = "Replicas of one inference Workspace template behind one endpoint, scaled as one."
    return schema


def _add_defaults(schema: Schema, model: type[BaseModel]) -> None:
    """Scalar defaults of `model` (and the models it holds) written into `schema`, so the API server fills them:
    the scale subresource reads `spec.replicas` as stored."""
    for name, field in model.model_fields.items():
        sub = schema.get("properties", {}).get(field.alias or name)
        if sub is None:
            continue
        if isinstance(field.default, int | str) and not field.is_required():
            sub["default"] = field.default
        held = [a for a in typing.get_args(field.annotation) or (field.annotation,) if isinstance(a, type)]
        for annotation in held:
            if issubclass(annotation, BaseModel):
                _add_defaults(sub, annotation)


def inferenceset_crd() -> Crd:
    schema = inferenceset_schema()
    scale = {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    versions = [
        {
            "name": version,
            "served": True,
            "storage": version == workspace.STORAGE_VERSION,
            "schema": {"openAPIV3Schema": schema},
            "subresources": {"status": {}, "scale": scale},
            "additionalPrinterColumns": INFERENCESET_COLUMNS,
        }
        for version in workspace.SERVED_VERSIONS
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{inferenceset.PLURAL}.{workspace.GROUP}"},
        "spec": {
            "group": workspace.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": inferenceset.KIND,
                "listKind": f"{inferenceset.KIND}List",
                "plural": inferenceset.PLURAL,
                "singular": "inferenceset",
                "shortNames": list(inferenceset.SHORT_NAMES),
            },
            "versions": versions,
        },
    }


def nodeclaim_crd() -> Crd:
    schema = model_schema(nodeclaim.NodeClaim, skip=frozenset({"api_version", "kind", "metadata"}))
    schema["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **schema["properties"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{nodeclaim.PLURAL}.{nodeclaim.GROUP}"},
        "spec": {
            "group": nodeclaim.GROUP,
            "scope": "Cluster",
            "names": {
                "kind": nodeclaim.KIND,
                "listKind": f"{nodeclaim.KIND}List",
                "plural": nodeclaim.PLURAL,
                "singular": "nodeclaim",
                "categories": ["karpenter"],
            },
            "versions": [
                {
                    "name": nodeclaim.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": nodeclaim.COLUMNS,
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared sub-trees (both versions use one schema) out in full: CRD readers expect no YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def rendered() -> dict[str, str]:
    """File name -> YAML text, exactly as committed under `crds/`."""
    header = "# Generated by `kaito crds` from src/kaito/api; do not edit.\n"
    files = {
        f"{workspace.GROUP}_{workspace.PLURAL}.yaml": workspace_crd(),
        f"{workspace.GROUP}_{inferenceset.PLURAL}.yaml": inferenceset_crd(),
        f"{nodeclaim.GROUP}_{nodeclaim.PLURAL}.yaml": nodeclaim_crd(),
    }
    return {
        name: header + yaml.dump(crd, Dumper=_NoAliasDumper, sort_keys=False, width=120) for name, crd in files.items()
    }


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in rendered().items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths


def stale(directory: Path) -> list[str]:
    """Files under `directory` that are missing or differ from what the generator produces."""
    return [
        name
        for name, text in rendered().items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]
