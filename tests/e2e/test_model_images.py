"""Workspaces with model images, driven with kubectl against the simulated cluster and a real docker-registry."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from kaito.api.modelimage import NODE_CACHE_DIR
from kaito.cli import main
from kaito.operator import OperatorOptions, build
from kaito.runtime.client import Client
from kaito_sim.aks import SimulatedAks
from kaito_sim.demo.operator import install_crds
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, wait_workspace
from tests.modelimages.models import make_model
from tests.registry import Registry

IMAGE_FIELD = "inference.preset.presetOptions.image"


@pytest.fixture
async def operator(sim: SimServer, kclient: Client, registry: Registry) -> AsyncIterator[Operator]:
    """The operator trusting the test registry's CA when admission reads a model image's config."""
    async with SimulatedAks(sim, provisioning_delay=0.0) as aks:
        await install_crds(kclient, "kaito-system")
        op = Operator(aks=aks, client=kclient)
        op.provider = op.new_provider()
        options = OperatorOptions(
            metrics_address="127.0.0.1:0",
            health_address="127.0.0.1:0",
            webhook_address="127.0.0.1:0",
            leader_election=False,
            nodeclaim_poll_interval=0.2,
            model_registry_ca=registry.ca_file,
        )
        op.manager = build(kclient, op.provider, options)
        op.stop = asyncio.Event()
        op.task = asyncio.create_task(op.manager.run(op.stop))
        await asyncio.wait_for(op.manager.elected.wait(), 15)
        for _ in range(100):  # admission answers once the webhook is registered
            if (await kclient.raw("GET", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"))[
                "items"
            ]:
                break
            await asyncio.sleep(0.1)
        yield op
        await op.halt()


def workspace(name: str, preset: str, image: str, *, secret: str = "model-pull") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace",
            "metadata": {"name": name},
            "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"app": name}}},
            "inference": {"preset": {"name": preset, "presetOptions": {"image": image, "imagePullSecrets": [secret]}}},
        }
    )


async def pull_secret(kubectl: Kubectl, registry: Registry, tmp_path: Path, *, name: str, password: str | None) -> None:
    config = registry.docker_config(tmp_path / name / ".dockerconfigjson", password=password)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.read_bytes()).decode()},
    }
    await kubectl("apply", "-f", "-", stdin=json.dumps(secret))


def push_tiny_model(registry: Registry, tmp_path: Path, tag: str) -> str:
    assert registry.ca_file is not None
    model = make_model(tmp_path / "tiny", shards=2, shard_bytes=100_000)
    config = registry.docker_config(tmp_path / "push" / ".dockerconfigjson")
    image = f"{registry.address}/models/tiny-llama:{tag}"
    argv = ["push-model", "--model", str(model), "--image", image, "--docker-config", str(config)]
    assert main([*argv, "--ca-file", str(registry.ca_file), "--source-repository", "example/tiny-llama"]) == 0
    return image


async def test_a_workspace_with_a_model_image_pulls_it_in_an_init_step_and_serves_from_the_local_copy(
    kubectl: Kubectl,
    operator: Operator,
    registry: Registry,
    tmp_path: Path,
) -> None:
    await pull_secret(kubectl, registry, tmp_path, name="model-pull", password=None)
    image = f"{registry.address}/kaito-models/phi-3-mini-4k-instruct:main"
    await kubectl("apply", "-f", "-", stdin=workspace("phi-from-image", "phi-3-mini-4k-instruct", image))
    await wait_workspace(kubectl, "phi-from-image", "WorkspaceSucceeded", "True", within=60)
    deployment = (await kubectl("get", "deployment", "phi-from-image", "-o", "json")).json()
    pod = deployment["spec"]["template"]["spec"]
    puller = pod["initContainers"][0]
    assert puller["name"] == "model-puller"
    command = puller["command"]
    assert command[:2] == ["kaito", "pull-model"] and command[command.index("--image") + 1] == image
    assert command[command.index("--output") + 1] == "/mnt/model"
    assert command[command.index("--cache") + 1] == NODE_CACHE_DIR
    assert "--progress-lines" in command and puller["terminationMessagePath"] == "/dev/termination-log"
    assert "--plain-http" not in command  # a registry not named insecure is spoken to in TLS
    assert command[command.index("--docker-config") + 1].endswith("/model-pull/.dockerconfigjson")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-cache"]["hostPath"] == {"path": NODE_CACHE_DIR, "type": "DirectoryOrCreate"}
    assert volumes["model"] == {"name": "model", "emptyDir": {}}
    assert volumes["model-model-pull"]["secret"] == {"secretName": "model-pull"}
    server = pod["containers"][0]
    assert {"name": "model", "mountPath": "/mnt/model", "readOnly": True} in server["volumeMounts"]
    engine = (await kubectl("get", "configmap", "phi-from-image-engine", "-o", "json")).json()
    config = yaml.safe_load(next(iter(engine["data"].values())))
    assert config["model"] == "/mnt/model" and config["servedModelName"] == "phi-3-mini-4k-instruct"


async def test_a_model_the_catalog_lacks_is_sized_from_its_image_at_admission(
    kubectl: Kubectl,
    operator: Operator,
    registry: Registry,
    tmp_path: Path,
) -> None:
    image = push_tiny_model(registry, tmp_path, "v1")
    await pull_secret(kubectl, registry, tmp_path, name="model-pull", password=None)
    applied = await kubectl("apply", "-f", "-", stdin=workspace("tiny", "tiny-llama", image))
    assert applied.rc == 0
    ws = await wait_workspace(kubectl, "tiny", "WorkspaceSucceeded", "True", within=60)
    plan = ws["status"]["plan"]
    assert plan["model"] == "tiny-llama" and plan["instanceType"] == "Standard_NC24ads_A100_v4"
    assert plan["maxModelLen"] == 2048  # the image config's max positions, not a catalog preset's


async def test_a_missing_tag_or_a_wrong_password_is_refused_at_apply_with_the_registrys_words(
    kubectl: Kubectl,
    operator: Operator,
    registry: Registry,
    tmp_path: Path,
) -> None:
    image = push_tiny_model(registry, tmp_path, "v2")
    await pull_secret(kubectl, registry, tmp_path, name="model-pull", password=None)
    missing = await kubectl(
        "apply", "-f", "-", stdin=workspace("tiny-x", "tiny-llama", image[:-2] + "nope"), check=False
    )
    assert missing.rc != 0 and IMAGE_FIELD in missing.stderr and "MANIFEST_UNKNOWN" in missing.stderr
    await pull_secret(kubectl, registry, tmp_path, name="wrong", password="wrong")
    denied = await kubectl(
        "apply", "-f", "-", stdin=workspace("tiny-y", "tiny-llama", image, secret="wrong"), check=False
    )
    assert denied.rc != 0 and IMAGE_FIELD in denied.stderr and "UNAUTHORIZED" in denied.stderr
    bad = await kubectl("apply", "-f", "-", stdin=workspace("tiny-z", "tiny-llama", "https://x/y"), check=False)
    assert bad.rc != 0 and IMAGE_FIELD in bad.stderr
