"""Adapters edited on a running workspace, answered for real: the simulated cluster runs `kaito serve` as a process,
adapters come from a real docker-registry on loopback, and `kubectl patch` adds, swaps and removes them while the
pod stays the same pod.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.inference.tinymodel import make_tiny_adapter, make_tiny_model
from kaito.tuning.artifacts import push_adapter
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, bring_your_own_node, wait_workspace
from tests.registry import Registry, require_registry_binary

NAME = "live"
PRESET = "phi-3-mini-4k-instruct"
NODE = "my-gpu-node"
PROXY = f"services/{NAME}:80/proxy"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A loopback registry in plain HTTP with no password: the pod pulls as Docker would from localhost."""
    require_registry_binary()
    with Registry(tmp_path_factory.mktemp("adapter-registry"), auth="none", tls=False) as running:
        yield running


@pytest.fixture(scope="module")
def images(registry: Registry, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Adapters `one` and `two` (different weights) for the served base, and `other`, trained for another model."""
    work = tmp_path_factory.mktemp("adapters")
    pushed = {}
    for name, seed, base in (("one", 1, PRESET), ("two", 2, PRESET), ("other", 3, "another-model")):
        adapter = make_tiny_adapter(tiny_model, work / name, seed=seed)
        image = f"{registry.address}/adapters/{name}:v1"
        push_adapter(adapter, image, base_model=base, auth=None, plain_http=True)
        pushed[name] = image
    return pushed


@pytest.fixture
async def sim(tiny_model: Path, tmp_path: Path) -> AsyncIterator[SimServer]:
    options = ProcessPods(model_dir=tiny_model, nodes_dir=tmp_path / "nodes", restart_backoff=300)
    async with SimServer(bookmark_interval=0.5, process_pods=options) as server:
        yield server


@pytest.fixture
async def byo(sim: SimServer, operator: Operator) -> Operator:
    return await bring_your_own_node(sim, operator, name=NODE, gpus=1)


def adapter(name: str, image: str) -> dict[str, Any]:
    return {"source": {"name": name, "image": image}}


def workspace(*adapters: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace",
            "metadata": {"name": NAME},
            "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": "phi-3"}}},
            "inference": {"preset": {"name": PRESET}, "adapters": list(adapters)},
        }
    )


async def until(check: Callable[[], Awaitable[Any]], what: str, *, within: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def the_pod(kubectl: Kubectl) -> tuple[str, int]:
    [pod] = (await kubectl("get", "pods", "-l", f"kaito.sh/workspace={NAME}", "-o", "json")).json()["items"]
    restarts = sum(int(s.get("restartCount") or 0) for s in pod["status"].get("containerStatuses") or [])
    return pod["metadata"]["uid"], restarts


async def served(kubectl: Kubectl) -> set[str]:
    models = await kubectl("get", "--raw", f"/api/v1/namespaces/{kubectl.namespace}/{PROXY}/v1/models", check=False)
    return {m["id"] for m in json.loads(models.stdout)["data"]} if models.rc == 0 else set()


async def answer(kubectl: Kubectl, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 12, "temperature": 0}
    path = f"/api/v1/namespaces/{kubectl.namespace}/{PROXY}/v1/chat/completions"
    reply = await kubectl("create", "--raw", path, "-f", "-", stdin=json.dumps(body))
    return str(json.loads(reply.stdout)["choices"][0]["message"]["content"])


async def adapter_states(kubectl: Kubectl) -> dict[str, tuple[str, str]]:
    ws = (await kubectl("get", "workspace", NAME, "-o", "json")).json()
    return {a["name"]: (a["state"], a.get("message") or "") for a in (ws.get("status") or {}).get("adapters") or []}


async def test_adapters_are_added_swapped_failed_and_removed_without_a_restart(
    kubectl: Kubectl, byo: Operator, images: dict[str, str]
) -> None:
    await kubectl("apply", "-f", "-", stdin=workspace(adapter("one", images["one"])))
    await wait_workspace(kubectl, NAME, "InferenceReady", "True", within=120)
    await until(lambda: _has(kubectl, "one"), "adapter one served")
    pod = await the_pod(kubectl)
    base, one = await answer(kubectl, PRESET), await answer(kubectl, "one")

    # Added: served within 30 s, by the same pod, answering otherwise than the base.
    await kubectl("apply", "-f", "-", stdin=workspace(adapter("one", images["one"]), adapter("two", images["two"])))
    await until(lambda: _has(kubectl, "two"), "adapter two served")
    assert await the_pod(kubectl) == pod
    two = await answer(kubectl, "two")
    assert len({base, one, two}) == 3, (base, one, two)

    # Swapped: `one` now holds two's weights, and answers as `two` did.
    await kubectl("apply", "-f", "-", stdin=workspace(adapter("one", images["two"]), adapter("two", images["two"])))

    async def swapped() -> bool:
        return await answer(kubectl, "one") == two

    await until(swapped, "adapter one answering with its new weights")

    # A wrong image fails alone, with the registry's (or the loader's) words; the rest still answer.
    missing = images["one"].replace("adapters/one:v1", "adapters/nope:v1")
    wrong = workspace(adapter("one", images["two"]), adapter("two", images["two"]), adapter("bad", missing))
    await kubectl("apply", "-f", "-", stdin=wrong)

    async def failed() -> tuple[str, str] | None:
        state = (await adapter_states(kubectl)).get("bad")
        return state if state and state[0] == "Failed" else None

    state = await until(failed, "adapter bad Failed on the workspace")
    assert "nope" in state[1] or "not found" in state[1].lower() or "unknown" in state[1].lower(), state
    assert await answer(kubectl, "two") == two and await answer(kubectl, PRESET) == base

    # Removed: unloaded, and still the same pod throughout.
    await kubectl("apply", "-f", "-", stdin=workspace(adapter("one", images["two"])))

    async def two_gone() -> bool:
        return "two" not in await served(kubectl)

    await until(two_gone, "adapter two unloaded")
    assert await the_pod(kubectl) == pod


async def _has(kubectl: Kubectl, name: str) -> bool:
    return name in await served(kubectl)
