"""The manager's registry CA reaches a workspace's model puller: in its engine ConfigMap, mounted, as --ca-file."""

from __future__ import annotations

import argparse
import base64
import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kaito.cli_manager import MAX_CA_BUNDLE_BYTES, ca_bundle
from kaito.controllers.build_workload import build_engine_configmap, build_workload
from kaito.controllers.context import Settings, Target
from kaito_sim.nodes.launch import CONFIGMAPS, SECRETS, launch
from tests.controllers.test_builders import target_for, valid, workspace
from tests.modelimages.models import files_of, make_model
from tests.modelimages.test_push_pull import pushed
from tests.registry import Registry

CA_MOUNT = {"name": "engine-config", "mountPath": "/etc/kaito", "readOnly": True}
CA_FLAG = ["--ca-file", "/etc/kaito/model-registry-ca.crt"]
# What would let a process trust the registry without the pod's wiring; the puller runs without them.
TRUST_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")


def image_workspace(image: str) -> dict[str, Any]:
    options = {"image": image, "imagePullSecrets": ["model-pull"]}
    return workspace(inference={"preset": {"name": "phi-3-mini-4k-instruct", "presetOptions": options}})


def puller_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (puller,) = [c for c in deployment["spec"]["template"]["spec"]["initContainers"] if c["name"] == "model-puller"]
    return dict(puller)


def run_puller(target: Target, registry: Registry, root: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the built Deployment's model puller as the kubelet would: its volumes written out, its paths rewritten."""
    configmap, deployment = build_engine_configmap(target), build_workload(target, revision="1")
    config = registry.docker_config(root / "secret" / ".dockerconfigjson").read_bytes()
    secret = {"data": {".dockerconfigjson": base64.b64encode(config).decode()}}
    stored = {(CONFIGMAPS, configmap["metadata"]["name"]): configmap, (SECRETS, "model-pull"): secret}

    def get(key: tuple[str, str], namespace: str, name: str) -> dict[str, Any] | None:
        return stored.get((key, name)) if namespace == target.namespace else None

    pod = {"metadata": {"name": "phi-0", "namespace": target.namespace}, "spec": deployment["spec"]["template"]["spec"]}
    run = launch(get, pod, puller_of(deployment), root / "pod", node_dir=root / "node")
    env = {k: v for k, v in os.environ.items() if k not in TRUST_VARIABLES} | run.env
    done = subprocess.run(run.argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    return done, run.mounts["/mnt/model"]


def test_the_pods_pull_from_a_registry_with_a_private_ca_when_the_manager_trusts_it(
    registry: Registry, tmp_path: Path
) -> None:
    assert registry.ca_file is not None
    pem = registry.ca_file.read_text()
    model = make_model(tmp_path / "model", shards=2, seed=41)
    raw = image_workspace(pushed(registry, model))
    trusting, plain = target_for(raw, Settings(model_registry_ca=pem)), target_for(raw)

    configmap, deployment = build_engine_configmap(trusting), build_workload(trusting, revision="1")
    valid(configmap)
    valid(deployment)
    assert configmap["data"]["model-registry-ca.crt"] == pem
    puller = puller_of(deployment)
    assert CA_MOUNT in puller["volumeMounts"] and puller["command"][-2:] == CA_FLAG

    # Without the setting the objects are what they were: the CA key, the mount and the flag are all it adds.
    without = copy.deepcopy(configmap)
    del without["data"]["model-registry-ca.crt"]
    assert build_engine_configmap(plain) == without
    stripped = copy.deepcopy(deployment)
    stripped_puller = puller_of(stripped)
    stripped_puller["volumeMounts"].remove(CA_MOUNT)
    del stripped_puller["command"][-2:]
    stripped["spec"]["template"]["spec"]["initContainers"][0] = stripped_puller
    assert build_workload(plain, revision="1") == stripped

    done, output = run_puller(trusting, registry, tmp_path / "trusting")
    assert done.returncode == 0, done.stderr
    assert files_of(output) == files_of(model)
    done, _ = run_puller(plain, registry, tmp_path / "plain")
    assert done.returncode == 1 and "certificate verify failed" in done.stderr, done.stderr


def test_a_workspace_without_a_model_image_gets_no_ca() -> None:
    target = target_for(workspace(), Settings(model_registry_ca="-----BEGIN CERTIFICATE-----\n"))
    assert set(build_engine_configmap(target)["data"]) == {"engine.yaml"}
    pod = build_workload(target, revision="1")["spec"]["template"]["spec"]
    assert pod["initContainers"] == []


def test_the_manager_refuses_a_ca_bundle_the_pods_could_not_use(registry: Registry, tmp_path: Path) -> None:
    assert registry.ca_file is not None
    assert ca_bundle(str(registry.ca_file)) == registry.ca_file
    (tmp_path / "not-pem").write_text("hello")
    (tmp_path / "huge.crt").write_text(registry.ca_file.read_text() + "#" * MAX_CA_BUNDLE_BYTES)
    for name, words in (("missing", "not a readable PEM"), ("not-pem", "not a readable PEM"), ("huge.crt", "under")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            ca_bundle(str(tmp_path / name))
