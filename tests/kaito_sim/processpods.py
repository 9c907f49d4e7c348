"""Manifests and waits shared by the process-pod and service-proxy tests."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from typing import Any

import yaml

from kaito_sim.server import SimServer

JsonObj = dict[str, Any]
SERVED = "phi-3-mini-4k-instruct"
PYTHON_IMAGE = "local-python:3.11"  # a process-pod image in these tests: its containers run this interpreter
PODS = ("", "pods")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def manifest(*objects: JsonObj) -> str:
    """Objects as one multi-document YAML stream for `kubectl apply -f -`."""
    return yaml.safe_dump_all(objects, sort_keys=False)


def serve_objects(name: str) -> list[JsonObj]:
    """What the operator creates for a one-node workspace, cut down: engine ConfigMap, Deployment, Service."""
    engine = f"servedModelName: {SERVED}\nmodel: microsoft/Phi-3-mini-4k-instruct\nport: 5000\nengine: vllm\n"
    probe = {"httpGet": {"path": "/health", "port": 5000}, "periodSeconds": 10}
    container = {
        "name": "server",
        "image": "mcr.microsoft.com/aks/kaito/kaito-runtime:0.1.0",
        "command": ["kaito", "serve", "--config", "/etc/kaito/engine.yaml"],
        "ports": [{"name": "http", "containerPort": 5000}],
        "env": [{"name": "KAITO_WORKSPACE", "value": name}],
        "startupProbe": {**probe, "failureThreshold": 60},
        "readinessProbe": probe,
        "volumeMounts": [
            {"name": "engine-config", "mountPath": "/etc/kaito", "readOnly": True},
            {"name": "adapters", "mountPath": "/mnt/adapter"},
        ],
    }
    labels = {"app": name}
    template = {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [container],
            "volumes": [
                {"name": "engine-config", "configMap": {"name": f"{name}-engine"}},
                {"name": "adapters", "emptyDir": {}},
            ],
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-engine"},
            "data": {"engine.yaml": engine},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template},
        },
        service(name, labels, port=80, target=5000),
    ]


def service(name: str, selector: dict[str, str], *, port: int, target: int) -> JsonObj:
    ports = [{"name": "http", "port": port, "targetPort": target, "protocol": "TCP"}]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": ports},
    }


def python_pod(name: str, code: str, *args: str, restart: str = "Never", **spec: Any) -> JsonObj:
    """A bare pod whose one container runs `code` in this interpreter."""
    container: JsonObj = {
        "name": "main",
        "image": PYTHON_IMAGE,
        "command": [sys.executable, "-c", code],
        "args": list(args),
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"restartPolicy": restart, "containers": [container], **spec},
    }


def pods(sim: SimServer, namespace: str, app: str) -> list[JsonObj]:
    return [
        p for p in sim.cluster.store.items(PODS, namespace) if (p["metadata"].get("labels") or {}).get("app") == app
    ]


def container_status(pod: JsonObj) -> JsonObj:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def is_ready(pod: JsonObj) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or []
    )


async def until(check: Callable[[], Any], what: str, *, within: float = 60, every: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


def pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].startswith("Z")  # a zombie has exited; only its parent's wait is due
    except FileNotFoundError:
        return True
