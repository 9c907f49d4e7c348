"""Model images on process pods: the real puller pulls from a real registry into the node's cache, as users see it.

The simulated cluster runs the workspace's `model-puller` init container and its server as real processes on a
bring-your-own node whose hostPath cache is a directory here, against a docker-registry with TLS and basic auth
whose access log counts blob downloads. The puller trusts the registry's CA through REQUESTS_CA_BUNDLE, as a
node image would carry a private registry's CA in its trust store.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.api.modelimage import NODE_CACHE_DIR
from kaito.inference.tinymodel import make_tiny_model
from kaito_sim.nodes.hostpath import node_path
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, bring_your_own_node, condition, wait_workspace
from tests.e2e.test_model_images import pull_secret
from tests.modelimages.models import files_of, make_model
from tests.modelimages.test_push_pull import blob_gets, pushed
from tests.registry import Registry, require_registry_binary

NODE = "my-gpu-node"
PRESET = "phi-3-mini-4k-instruct"
READY_WITHIN = 120  # a server process loads the stand-in model on this machine's CPUs


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """This module's registry, with the access log on: blob GETs are counted per repository."""
    require_registry_binary()
    with Registry(tmp_path_factory.mktemp("pull-registry"), username="kaito", access_log=True) as running:
        yield running


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
async def sim(
    tiny_model: Path, tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SimServer]:
    assert registry.ca_file is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(registry.ca_file))  # what the pods' processes trust
    # A failed pull is not retried within a test: what it left behind is what the test looks at.
    options = ProcessPods(model_dir=tiny_model, nodes_dir=tmp_path / "nodes", restart_backoff=300)
    async with SimServer(bookmark_interval=0.5, process_pods=options) as server:
        yield server


@pytest.fixture
async def byo(sim: SimServer, operator: Operator) -> Operator:
    """The operator without a cloud provider, and one GPU node of the user's with room for three servers."""
    return await bring_your_own_node(sim, operator, name=NODE, gpus=3)


def workspace(name: str, image: str, *, secret: str = "model-pull") -> dict[str, Any]:
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": "phi-3"}}},
        "inference": {"preset": {"name": PRESET, "presetOptions": {"image": image, "imagePullSecrets": [secret]}}},
    }


async def apply(kubectl: Kubectl, *workspaces: dict[str, Any]) -> None:
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(workspaces))


def node_cache(tmp_path: Path) -> Path:
    return node_path(tmp_path / "nodes" / NODE, NODE_CACHE_DIR)


def blob_count(model: Path) -> int:
    return len(files_of(model)) + 1  # one layer a file, and the config


@contextlib.contextmanager
def downloading(cache: Path, blob: bytes) -> Iterator[None]:
    """Hold the blob's lock in the node's cache, as a pull downloading it does: pullers of it wait until we let go."""
    lock = cache / "locks" / f"blob-{hashlib.sha256(blob).hexdigest()}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


async def workspace_pods(kubectl: Kubectl, name: str) -> list[dict[str, Any]]:
    found = (await kubectl("get", "pods", "-l", f"kaito.sh/workspace={name}", "-o", "json")).json()["items"]
    return list(found)


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def puller_summary(kubectl: Kubectl, pod: str) -> dict[str, Any]:
    """The summary `kaito pull-model` printed in the pod (its last JSON line on stdout)."""
    log = (await kubectl("logs", pod, "-c", "model-puller")).stdout
    for line in reversed(log.splitlines()):
        with contextlib.suppress(ValueError):
            found = json.loads(line)
            if isinstance(found, dict) and "downloadedBlobs" in found:
                return found
    raise AssertionError(f"no summary in the puller's log:\n{log}")


async def test_a_workspace_pulls_its_model_image_serves_it_and_a_new_pod_starts_from_the_node_cache(
    kubectl: Kubectl, byo: Operator, registry: Registry, tmp_path: Path
) -> None:
    model = make_tiny_model(tmp_path / "model", seed=1)  # a model kaito serve loads: the pod serves what it pulled
    image = pushed(registry, model)
    before = blob_gets(registry, image)
    await pull_secret(kubectl, registry, tmp_path, name="model-pull", password=None)
    cache = node_cache(tmp_path)

    with downloading(cache, (model / "model.safetensors").read_bytes()):
        await apply(kubectl, workspace("phi", image))
        ws = await wait_workspace(kubectl, "phi", "InferenceReady", "False", reason="PullingModel", within=60)
        assert f"pulling {image}" in condition(ws, "InferenceReady")["message"]
        table = (await kubectl("get", "pods", "-l", "kaito.sh/workspace=phi", "--no-headers")).stdout.split()
        assert table[2] == "Init:0/1"

    await wait_workspace(kubectl, "phi", "WorkspaceSucceeded", "True", within=READY_WITHIN)
    assert blob_gets(registry, image) - before == blob_count(model), "each blob downloaded once"
    (first,) = await workspace_pods(kubectl, "phi")
    summary = await puller_summary(kubectl, first["metadata"]["name"])
    assert (summary["image"], summary["downloadedBlobs"], summary["link"]) == (image, blob_count(model), "hardlink")
    assert sorted(p.name for p in (cache / "tmp").iterdir()) == []
    served = await kubectl("get", "--raw", f"/api/v1/namespaces/{kubectl.namespace}/services/phi:80/proxy/v1/models")
    assert [m["id"] for m in served.json()["data"]] == [PRESET]

    await kubectl("delete", "pod", first["metadata"]["name"])

    async def replaced() -> list[dict[str, Any]]:
        pods = await workspace_pods(kubectl, "phi")
        return [p for p in pods if p["metadata"]["uid"] != first["metadata"]["uid"] and ready(p)]

    (second,) = await until_async(replaced, "a new Ready pod")
    assert blob_gets(registry, image) - before == blob_count(model), "the new pod downloaded nothing"
    assert (await puller_summary(kubectl, second["metadata"]["name"]))["downloadedBlobs"] == 0
    await wait_workspace(kubectl, "phi", "WorkspaceSucceeded", "True", within=READY_WITHIN)


async def test_two_workspaces_of_one_model_on_one_node_download_it_once(
    kubectl: Kubectl, byo: Operator, registry: Registry, tmp_path: Path
) -> None:
    model = make_tiny_model(tmp_path / "model", seed=2)
    image = pushed(registry, model)
    before = blob_gets(registry, image)
    await pull_secret(kubectl, registry, tmp_path, name="model-pull", password=None)
    await apply(kubectl, workspace("one", image), workspace("two", image))
    for name in ("one", "two"):
        await wait_workspace(kubectl, name, "WorkspaceSucceeded", "True", within=READY_WITHIN)
    assert blob_gets(registry, image) - before == blob_count(model)
    downloaded = []
    for name in ("one", "two"):
        (pod,) = await workspace_pods(kubectl, name)
        assert pod["spec"]["nodeName"] == NODE
        downloaded.append((await puller_summary(kubectl, pod["metadata"]["name"]))["downloadedBlobs"])
    assert sum(downloaded) == blob_count(model)


async def test_a_tampered_blob_a_missing_tag_and_a_wrong_password_end_in_model_pull_errors(
    kubectl: Kubectl, byo: Operator, registry: Registry, tmp_path: Path
) -> None:
    model = make_model(tmp_path / "model", shards=2, shard_bytes=300_000, seed=3)
    image = pushed(registry, model)
    shard = (model / "model-00002-of-00002.safetensors").read_bytes()
    hexdigest = hashlib.sha256(shard).hexdigest()
    stored = registry.workdir / "storage/docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    stored.write_bytes(b"\x00" * len(shard))  # same size, other bytes
    missing = image.replace(":rev1", ":nope")
    await pull_secret(kubectl, registry, tmp_path, name="model-pull", password=None)
    await pull_secret(kubectl, registry, tmp_path, name="wrong", password="wrong")
    await apply(
        kubectl,
        workspace("tampered", image),
        workspace("untagged", missing),
        workspace("denied", image, secret="wrong"),
    )
    expected = {
        "tampered": (image, f"digest mismatch: blob sha256:{hexdigest}"),
        "untagged": (missing, "MANIFEST_UNKNOWN"),
        "denied": (image, "UNAUTHORIZED"),
    }
    for name, (named, words) in expected.items():
        ws = await wait_workspace(kubectl, name, "InferenceReady", "False", reason="ModelPullError", within=60)
        message = condition(ws, "InferenceReady")["message"]
        assert f"cannot pull {named}" in message and words in message, message
    cache = node_cache(tmp_path)
    assert {sub: sorted(p.name for p in (cache / sub).iterdir()) for sub in ("tmp", "models")} == {
        "tmp": [],
        "models": [],
    }
    assert not (cache / "blobs" / "sha256" / hexdigest).exists()


async def until_async(check: Callable[[], Awaitable[Any]], what: str, *, within: float = READY_WITHIN) -> Any:
    """Poll the coroutine function `check` until it returns something truthy; fail naming `what` after `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {within}s waiting for {what}")
