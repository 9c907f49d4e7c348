"""Pure builders for a tuning workspace: the run-config ConfigMap and the Job that fetches data, trains and pushes.

The pod has one init step for the data (`kaito fetch-data` for URLs, `kaito pull-data` for an image; a
volume is mounted as is) and one main container, `kaito tune`, which trains on the GPU and then pushes the
adapter when the output is an image. The pushed digest comes back in the container's termination message.
"""

from __future__ import annotations

from typing import Any

import yaml

from kaito.api.tuningconfig import CONFIG_KEY as TRAINING_CONFIG_KEY
from kaito.api.tuningconfig import DEFAULT_TARGET_MODULES_ENV
from kaito.controllers.build_workload import TOLERATIONS, node_terms
from kaito.controllers.context import Target
from kaito.controllers.kinds import GPU
from kaito.oci.dockerconfig import DOCKER_CONFIG_KEY

RUN_CONFIG_KEY = "tuning.yaml"
RUN_CONFIG_DIR = "/etc/kaito"
TRAINING_CONFIG_DIR = "/mnt/config"
DATA_DIR = "/mnt/data"
RESULTS_DIR = "/mnt/results"
PUSH_SECRET_DIR = "/var/run/secrets/kaito/push"
PULL_SECRETS_DIR = "/var/run/secrets/kaito/pull"
METRICS_PORT = 5000
# Upstream's LoRA targets for phi-3, whose attention is one fused projection in some revisions.
PHI3_TARGET_MODULES = "k_proj,q_proj,v_proj,o_proj,gate_proj,down_proj,up_proj"


def tuning_configmap_name(target: Target) -> str:
    return f"{target.name}-tuning"


def run_config(target: Target) -> dict[str, Any]:
    """What `kaito tune --config` reads."""
    spec = target.ws.tuning
    assert spec is not None
    model = target.model
    config: dict[str, Any] = {
        "model": model.hf_repo if model else (spec.preset.name if spec.preset else ""),
        "revision": model.revision if model else "main",
        "baseModel": model.name if model else (spec.preset.name if spec.preset else ""),
        "method": (spec.method or "lora").lower(),
        "dataDir": DATA_DIR,
        "outputDir": RESULTS_DIR,
        "metricsPort": METRICS_PORT,
    }
    if spec.config:
        config["trainingConfig"] = f"{TRAINING_CONFIG_DIR}/{TRAINING_CONFIG_KEY}"
    if spec.output and spec.output.image:
        config["output"] = {"image": spec.output.image, "dockerConfig": f"{PUSH_SECRET_DIR}/{DOCKER_CONFIG_KEY}"}
    return config


def build_tuning_configmap(target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": tuning_configmap_name(target),
            "namespace": target.namespace,
            "labels": dict(target.labels),
            "ownerReferences": [target.owner],
        },
        "data": {RUN_CONFIG_KEY: yaml.safe_dump(run_config(target), sort_keys=False)},
    }


def build_job(target: Target, *, revision: str) -> dict[str, Any]:
    volumes, init = _data_input(target)
    volumes += _results_output(target)
    volumes += [
        {"name": "run-config", "configMap": {"name": tuning_configmap_name(target)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]
    spec = target.ws.tuning
    assert spec is not None
    if spec.config:
        volumes.append({"name": "training-config", "configMap": {"name": spec.config}})
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
            # A failed run is reported, not silently repeated on a GPU node: the user fixes and re-creates.
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": dict(target.labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "affinity": {
                        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": node_terms(target)}
                    },
                    "tolerations": TOLERATIONS,
                    "initContainers": init,
                    "containers": [_tuner(target)],
                    "volumes": volumes,
                },
            },
        },
    }


def _tuner(target: Target) -> dict[str, Any]:
    spec = target.ws.tuning
    assert spec is not None
    gpus = str(target.gpus_per_node)
    env: list[dict[str, Any]] = [{"name": "PYTORCH_CUDA_ALLOC_CONF", "value": "expandable_segments:True"}]
    if target.model and target.model.name.startswith("phi-3"):
        env.append({"name": DEFAULT_TARGET_MODULES_ENV, "value": PHI3_TARGET_MODULES})
    options = spec.preset.preset_options if spec.preset else None
    if options and options.model_access_secret:
        secret = {"secretKeyRef": {"name": options.model_access_secret, "key": "HF_TOKEN"}}
        env.append({"name": "HF_TOKEN", "valueFrom": secret})
    if target.settings.hf_endpoint is not None:
        env.append({"name": "HF_ENDPOINT", "value": target.settings.hf_endpoint})
    mounts = [
        {"name": "run-config", "mountPath": RUN_CONFIG_DIR, "readOnly": True},
        {"name": "data", "mountPath": DATA_DIR, "readOnly": True},
        {"name": "results", "mountPath": RESULTS_DIR},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    if spec.config:
        mounts.append({"name": "training-config", "mountPath": TRAINING_CONFIG_DIR, "readOnly": True})
    if spec.output and spec.output.image:
        mounts.append({"name": "push-secret", "mountPath": PUSH_SECRET_DIR, "readOnly": True})
    return {
        "name": "tuner",
        "image": target.settings.image,
        "command": ["kaito", "tune", "--config", f"{RUN_CONFIG_DIR}/{RUN_CONFIG_KEY}"],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "env": env,
        "resources": {"requests": {GPU: gpus}, "limits": {GPU: gpus}},
        "volumeMounts": mounts,
        # kaito tune writes its result (or its error) here; a crash falls back to the log's tail.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _data_input(target: Target) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The data volume and the init step that fills it."""
    spec = target.ws.tuning
    assert spec is not None
    source = spec.input
    if source is not None and source.volume_source:
        return [{"name": "data", **source.volume_source}], []
    volumes: list[dict[str, Any]] = [{"name": "data", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "data", "mountPath": DATA_DIR}]
    if source is not None and source.image:
        command = ["kaito", "pull-data", "--image", source.image, "--output", DATA_DIR]
        for index, secret in enumerate(source.image_pull_secrets or []):
            volume = f"pull-secret-{index}"
            volumes.append({"name": volume, "secret": {"secretName": secret}})
            mounts.append({"name": volume, "mountPath": f"{PULL_SECRETS_DIR}/{secret}", "readOnly": True})
            command += ["--docker-config", f"{PULL_SECRETS_DIR}/{secret}/{DOCKER_CONFIG_KEY}"]
        return volumes, [_step("data-puller", target, command, mounts)]
    command = ["kaito", "fetch-data", "--output", DATA_DIR]
    for url in (source.urls if source else None) or []:
        command += ["--url", url]
    return volumes, [_step("data-downloader", target, command, mounts)]


def _results_output(target: Target) -> list[dict[str, Any]]:
    spec = target.ws.tuning
    assert spec is not None
    output = spec.output
    if output is not None and output.volume_source:
        return [{"name": "results", **output.volume_source}]
    volumes: list[dict[str, Any]] = [{"name": "results", "emptyDir": {}}]
    if output is not None and output.image and output.image_push_secret:
        secret = {
            "secretName": output.image_push_secret,
            "items": [{"key": DOCKER_CONFIG_KEY, "path": DOCKER_CONFIG_KEY}],
        }
        volumes.append({"name": "push-secret", "secret": secret})
    return volumes


def _step(name: str, target: Target, command: list[str], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "image": target.settings.image,
        "command": command,
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
