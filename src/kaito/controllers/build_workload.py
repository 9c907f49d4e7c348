"""Pure builders for the inference workload: engine ConfigMap, Services, and a Deployment or StatefulSet.

One node runs a Deployment; a multi-node plan runs a StatefulSet with one pod per node (pod 0 leads,
the others join it over the headless Service).
"""

from __future__ import annotations

import copy
from typing import Any

from kaito.api.engine import CONFIG_KEY as ENGINE_KEY
from kaito.api.engine import EngineAdapter, EngineConfig
from kaito.api.nodeclaim import GPU_TAINT
from kaito.controllers.adapters import Resolved, plain_http_allowed
from kaito.controllers.context import Target
from kaito.controllers.kinds import GPU, MODEL_PULLER, SERVE_PORT, SERVER_CONTAINER
from kaito.oci.dockerconfig import DOCKER_CONFIG_KEY
from kaito.oci.errors import OciError
from kaito.oci.reference import parse_reference
from kaito.workspaces.modelsource import image_pull_secrets

CONFIG_DIR = "/etc/kaito"
REGISTRY_CA_KEY = "model-registry-ca.crt"  # in the engine ConfigMap: the CA the model puller trusts
ADAPTER_DIR = "/mnt/adapter"
WEIGHTS_DIR = "/workspace/weights"
MODEL_DIR = "/mnt/model"  # where a model image's files appear in the pod (linked from the node's cache)
TERMINATION_LOG = "/dev/termination-log"
REPLANNED_ANNOTATION = "kaito.sh/replanned"  # on the pod template: a re-plan from the engine restarts the server
PULL_SECRETS_DIR = "/var/run/secrets/kaito/pull"
ADAPTER_SECRETS_DIR = "/var/run/secrets/kaito/adapters"  # <secret>/.dockerconfigjson, for every adapter's Secret
ADAPTER_SECRETS_VOLUME = "adapter-pull-secrets"
LORA_ANNOTATION = "kaito.sh/lora-rank"  # on the pod template: turning LoRA on or off, or its rank, restarts the server
TOLERATIONS = [
    {"key": GPU_TAINT.key, "operator": "Equal", "value": GPU_TAINT.value, "effect": GPU_TAINT.effect},
    {"key": GPU, "operator": "Exists", "effect": "NoSchedule"},
]


def engine_configmap_name(target: Target) -> str:
    return f"{target.name}-engine"


def headless_name(target: Target) -> str:
    return f"{target.name}-headless"


def build_engine_configmap(target: Target) -> dict[str, Any]:
    """The engine config `kaito serve` reads: the model, the plan's numbers, the adapters with their strengths.

    With a model image and a registry CA set for the manager, the CA bundle rides along for the model puller.
    """
    model = target.model
    local = target.model_image is not None  # the init step has put the files in MODEL_DIR: no hub id, no revision
    config = EngineConfig.from_plan(
        target.plan,
        model=MODEL_DIR if local else model.hf_repo if model else None,
        revision="main" if local or model is None else model.revision,
        port=SERVE_PORT,
        adapters_dir=ADAPTER_DIR,
        adapters=_engine_adapters(target),
    )
    data = config.to_configmap_data()
    if (ca := _registry_ca(target)) is not None:
        data[REGISTRY_CA_KEY] = ca
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(target, engine_configmap_name(target)),
        "data": data,
    }


def build_services(target: Target) -> list[dict[str, Any]]:
    """The ClusterIP Service users call; with several nodes also the headless one the StatefulSet's pods join over."""
    selector = dict(target.labels)
    if target.nodes > 1:
        selector["statefulset.kubernetes.io/pod-name"] = f"{target.name}-0"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(target, target.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": SERVE_PORT, "protocol": "TCP"}],
        },
    }
    if target.nodes == 1:
        return [service]
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(target, headless_name(target)),
        "spec": {"clusterIP": "None", "selector": dict(target.labels), "publishNotReadyAddresses": True},
    }
    return [service, headless]


def build_workload(target: Target, *, revision: str) -> dict[str, Any]:
    user = target.ws.inference.template if target.ws.inference else None
    template = _from_user_template(target, user) if user else {"metadata": {}, "spec": pod_spec(target)}
    meta = template["metadata"]
    meta["labels"] = {**(meta.get("labels") or {}), **target.labels}
    meta["annotations"] = {**(meta.get("annotations") or {}), "workspace.kaito.io/revision": revision}
    if target.plan.replanned_from_max_model_len is not None:  # the engine config changed under a running server
        meta["annotations"][REPLANNED_ANNOTATION] = f"max-model-len={target.plan.max_model_len}"
    if target.plan.max_loras:  # adapters load at runtime into a server started with LoRA at this rank
        meta["annotations"][LORA_ANNOTATION] = str(target.plan.max_lora_rank or "")
    selector = {"matchLabels": dict(target.labels)}
    if target.nodes == 1:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(target, target.name),
            "spec": {
                "replicas": 1,
                "selector": selector,
                # The GPU node holds one replica: the old pod must go before the new one can start.
                "strategy": {"type": "Recreate"},
                "template": template,
            },
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(target, target.name),
        "spec": {
            "replicas": target.nodes,
            "selector": selector,
            "serviceName": headless_name(target),
            "podManagementPolicy": "Parallel",
            "template": template,
        },
    }


def _from_user_template(target: Target, user: dict[str, Any]) -> dict[str, Any]:
    """A user's pod template runs as written, pinned to the workspace's GPU nodes and tolerating their taints."""
    template = copy.deepcopy(user)
    spec = template.setdefault("spec", {})
    spec["affinity"] = {
        **(spec.get("affinity") or {}),
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": node_terms(target)},
    }
    spec["tolerations"] = [*(spec.get("tolerations") or []), *TOLERATIONS]
    template.setdefault("metadata", {})
    return template


def pod_spec(target: Target) -> dict[str, Any]:
    return {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": node_terms(target)}},
        "tolerations": TOLERATIONS,
        "initContainers": _model_puller(target),
        "containers": [_server_container(target)],
        "volumes": _volumes(target),
    }


def _server_container(target: Target) -> dict[str, Any]:
    # Under vLLM, vLLM itself takes the serving port (the Service's target): OpenAI calls skip a relay hop.
    command = ["kaito", "serve", "--config", f"{CONFIG_DIR}/{ENGINE_KEY}", "--openai-direct"]
    command += ["--termination-message-path", TERMINATION_LOG]  # an engine refusing to start says why there
    env: list[dict[str, Any]] = [{"name": "KAITO_WORKSPACE", "value": target.name}]
    if target.nodes > 1:
        leader = f"{target.name}-0.{headless_name(target)}.{target.namespace}.svc.cluster.local"
        command += ["--leader-address", leader]
        env.append(
            {
                "name": "POD_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
            }
        )
    secret = _access_secret(target)
    if secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "HF_TOKEN"}}})
    env += hub_env(target)
    probe = {"httpGet": {"path": "/health", "port": SERVE_PORT}, "periodSeconds": 10}
    return {
        "name": SERVER_CONTAINER,
        "image": target.settings.image,
        "command": command,
        "ports": [{"name": "http", "containerPort": SERVE_PORT}],
        "env": env,
        "resources": {"requests": {GPU: str(target.gpus_per_node)}, "limits": {GPU: str(target.gpus_per_node)}},
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "startupProbe": {**probe, "failureThreshold": max(1, target.readiness_timeout_s() // 10)},
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {**probe, "failureThreshold": 3},
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "engine-config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "adapters", "mountPath": ADAPTER_DIR},
            {"name": "weights", "mountPath": WEIGHTS_DIR},
            *_model_mounts(target),
            *_adapter_volume_mounts(target),
            *_adapter_secret_mounts(target),
        ],
    }


def hub_env(target: Target) -> list[dict[str, Any]]:
    """HF_ENDPOINT for a container that downloads from the hub, when the manager was given one (a mirror)."""
    if target.settings.hf_endpoint is None or target.model_image is not None:
        return []
    return [{"name": "HF_ENDPOINT", "value": target.settings.hf_endpoint}]


def _model_mounts(target: Target) -> list[dict[str, Any]]:
    """The pulled model, and the node's cache its files may be symbolic links into (same path as the puller's)."""
    if target.model_image is None:
        return []
    return [
        {"name": "model", "mountPath": MODEL_DIR, "readOnly": True},
        {"name": "model-cache", "mountPath": target.settings.model_cache_dir, "readOnly": True},
    ]


def _model_puller(target: Target) -> list[dict[str, Any]]:
    """The `kaito pull-model` init step: the image into the node's cache, linked into the pod's model directory.

    It prints its progress as JSON lines (the manager reads the last one for the workspace's status) and, on
    failure, writes the registry's words to its termination message.
    """
    image = target.model_image
    if image is None:
        return []
    cache = target.settings.model_cache_dir
    command = ["kaito", "pull-model", "--image", image, "--output", MODEL_DIR, "--cache", cache]
    command += ["--termination-message-path", TERMINATION_LOG, "--progress-lines"]
    registry = _registry_of(image)
    if registry in target.settings.insecure_model_registries:  # HTTPS first, plain HTTP if it answers in HTTP
        command += ["--insecure-registry", registry]
    mounts: list[dict[str, Any]] = [
        {"name": "model", "mountPath": MODEL_DIR},
        {"name": "model-cache", "mountPath": cache},
    ]
    for secret in image_pull_secrets(target.ws):
        where = f"{PULL_SECRETS_DIR}/model/{secret}"
        mounts.append({"name": _model_secret_volume(secret), "mountPath": where, "readOnly": True})
        command += ["--docker-config", f"{PULL_SECRETS_DIR}/model/{secret}/{DOCKER_CONFIG_KEY}"]
    if _registry_ca(target) is not None:
        mounts.append({"name": "engine-config", "mountPath": CONFIG_DIR, "readOnly": True})
        command += ["--ca-file", f"{CONFIG_DIR}/{REGISTRY_CA_KEY}"]
    return [
        {
            "name": MODEL_PULLER,
            "image": target.settings.image,
            "command": command,
            "volumeMounts": mounts,
            "terminationMessagePath": TERMINATION_LOG,
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
    ]


def _registry_ca(target: Target) -> str | None:
    """The registry CA bundle the model puller trusts: the manager's, when the pods pull a model image."""
    return target.settings.model_registry_ca if target.model_image is not None else None


def _registry_of(image: str) -> str:
    try:
        return parse_reference(image).registry
    except OciError:  # admission has checked the reference; a pull of it would say the same
        return ""


def _model_secret_volume(secret: str) -> str:
    return f"model-{secret}"[:63].rstrip("-.")


def _model_volumes(target: Target) -> list[dict[str, Any]]:
    if target.model_image is None:
        return []
    cache = {"path": target.settings.model_cache_dir, "type": "DirectoryOrCreate"}
    secrets = [{"name": _model_secret_volume(s), "secret": {"secretName": s}} for s in image_pull_secrets(target.ws)]
    return [{"name": "model", "emptyDir": {}}, {"name": "model-cache", "hostPath": cache}, *secrets]


def _engine_adapters(target: Target) -> list[EngineAdapter]:
    """The adapters the pods serve, with their strengths, images and pull secrets; one still waiting (for its
    tuning Workspace) is left out until it can be pulled."""
    return [
        EngineAdapter(
            name=a.name,
            strength=a.strength,
            image=a.image,
            digest=a.digest,
            docker_configs=[f"{ADAPTER_SECRETS_DIR}/{secret}" for secret in a.secrets] if a.image else [],
            insecure=a.image is not None and plain_http_allowed(a.image, target.settings.insecure_model_registries),
        )
        for a in target.adapters
        if a.waiting is None
    ]


def _volume_adapters(target: Target) -> list[tuple[int, Resolved, dict[str, Any]]]:
    """Adapters on volumes, numbered among themselves: adding an image adapter leaves their volumes' names alone."""
    mounted = [a for a in target.adapters if a.volume_source is not None]
    return [(i, a, a.volume_source or {}) for i, a in enumerate(mounted)]


def _adapter_secrets(target: Target) -> list[str]:
    """Every Secret an image adapter pulls with: the pod template changes only when this set does."""
    return sorted({secret for a in target.adapters if a.volume_source is None for secret in a.secrets})


def _adapter_volumes(target: Target) -> list[dict[str, Any]]:
    volumes = [{"name": f"adapter-{i}", **volume} for i, _, volume in _volume_adapters(target)]
    secrets = _adapter_secrets(target)
    if secrets:
        # Optional: a Secret created late (or never) fails only the adapters that pull with it, as the pod reports.
        sources = [
            {
                "secret": {
                    "name": secret,
                    "items": [{"key": DOCKER_CONFIG_KEY, "path": f"{secret}/{DOCKER_CONFIG_KEY}"}],
                    "optional": True,
                }
            }
            for secret in secrets
        ]
        volumes.append({"name": ADAPTER_SECRETS_VOLUME, "projected": {"sources": sources}})
    return volumes


def _adapter_volume_mounts(target: Target) -> list[dict[str, Any]]:
    """Adapters on volumes appear under the adapters directory like pulled ones."""
    return [
        {"name": f"adapter-{i}", "mountPath": f"{ADAPTER_DIR}/{adapter.name}", "readOnly": True}
        for i, adapter, _ in _volume_adapters(target)
    ]


def _adapter_secret_mounts(target: Target) -> list[dict[str, Any]]:
    if not _adapter_secrets(target):
        return []
    return [{"name": ADAPTER_SECRETS_VOLUME, "mountPath": ADAPTER_SECRETS_DIR, "readOnly": True}]


def _volumes(target: Target) -> list[dict[str, Any]]:
    return [
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        {"name": "engine-config", "configMap": {"name": engine_configmap_name(target)}},
        {"name": "adapters", "emptyDir": {}},
        {"name": "weights", "emptyDir": {}},
        *_model_volumes(target),
        *_adapter_volumes(target),
    ]


def node_terms(target: Target) -> dict[str, Any]:
    """The node affinity of every workspace pod: its label selector, plus its NodeClaims' labels when provisioned."""
    selector = target.ws.resource.label_selector
    expressions = [
        {"key": key, "operator": "In", "values": [value]}
        for key, value in sorted((selector.match_labels or {}).items())
    ]
    expressions += [
        {"key": expr.key, "operator": "In", "values": list(expr.values or [])}
        for expr in selector.match_expressions or []
    ]
    if not target.settings.bring_your_own_nodes:
        expressions += [
            {"key": key, "operator": "In", "values": [value]} for key, value in sorted(target.labels.items())
        ]
    return {"nodeSelectorTerms": [{"matchExpressions": expressions}]}


def _access_secret(target: Target) -> str | None:
    inference = target.ws.inference
    options = inference.preset.preset_options if inference and inference.preset else None
    return options.model_access_secret if options else None


def _meta(target: Target, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": target.namespace,
        "labels": dict(target.labels),
        "ownerReferences": [target.owner],
    }
