"""Pure builder for a tuning workspace's Job: one pod on the GPU node running `kaito tune`."""

from __future__ import annotations

from typing import Any

import yaml

from kaito.controllers.build_workload import TOLERATIONS, _node_terms
from kaito.controllers.context import Target
from kaito.controllers.kinds import GPU

TUNING_KEY = "tuning.yaml"


def tuning_configmap_name(target: Target) -> str:
    return f"{target.name}-tuning"


def build_tuning_configmap(target: Target) -> dict[str, Any]:
    spec = target.ws.tuning
    assert spec is not None
    config = {
        "model": target.model.hf_repo if target.model else (spec.preset.name if spec.preset else ""),
        "revision": target.model.revision if target.model else "main",
        "method": (spec.method or "").lower(),
        "input": spec.input.to_wire() if spec.input else {},
        "output": spec.output.to_wire() if spec.output else {},
        "userConfig": spec.config,
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": tuning_configmap_name(target),
            "namespace": target.namespace,
            "labels": dict(target.labels),
            "ownerReferences": [target.owner],
        },
        "data": {TUNING_KEY: yaml.safe_dump(config, sort_keys=False)},
    }


def build_job(target: Target, *, revision: str) -> dict[str, Any]:
    gpus = str(target.gpus_per_node)
    container = {
        "name": "tuner",
        "image": target.settings.image,
        "command": ["kaito", "tune", "--config", f"/etc/kaito/{TUNING_KEY}"],
        "resources": {"requests": {GPU: gpus}, "limits": {GPU: gpus}},
        "volumeMounts": [
            {"name": "tuning-config", "mountPath": "/etc/kaito", "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": target.name,
            "namespace": target.namespace,
            "labels": dict(target.labels),
            "annotations": {"workspace.kaito.io/revision": revision},
            "ownerReferences": [target.owner],
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": dict(target.labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "affinity": {
                        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": _node_terms(target)}
                    },
                    "tolerations": TOLERATIONS,
                    "containers": [container],
                    "volumes": [
                        {"name": "tuning-config", "configMap": {"name": tuning_configmap_name(target)}},
                        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
                    ],
                },
            },
        },
    }
