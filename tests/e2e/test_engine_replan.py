"""The engine's KV shortfall at start on process pods: one re-plan to a shorter context, or, when pinned, advice.

The stand-in engine is given a KV budget (`kv-cache-memory` in inference_config.yaml) too small for the tiny model's
context, so `kaito serve` refuses at start as vLLM would, with the length that would fit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.inference.tinymodel import make_tiny_model
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, condition, wait_workspace

NAME = "phi"
KV_BYTES = 20_000  # a few dozen of the tiny model's tokens: less than its 256-token context
READY_WITHIN = 120  # a server process loads the stand-in model on this machine's CPUs


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
async def sim(tiny_model: Path) -> AsyncIterator[SimServer]:
    options = ProcessPods(model_dir=tiny_model, restart_backoff=0.5)
    async with SimServer(bookmark_interval=0.5, process_pods=options) as server:
        yield server


def manifests(vllm: dict[str, Any]) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "engine-budget"},
        "data": {"inference_config.yaml": yaml.safe_dump({"vllm": vllm})},
    }
    workspace = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": NAME},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": "phi-3"}}},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}, "config": "engine-budget"},
    }
    return yaml.safe_dump_all([config, workspace])


async def warnings(kubectl: Kubectl, reason: str) -> list[dict[str, Any]]:
    events = (await kubectl("get", "events", "--field-selector", f"involvedObject.name={NAME}", "-o", "json")).json()
    return [e for e in events["items"] if e["reason"] == reason and e["type"] == "Warning"]


async def test_a_kv_shortfall_at_start_replans_once_to_a_shorter_context_then_serves(
    kubectl: Kubectl, operator: Operator
) -> None:
    await kubectl("apply", "-f", "-", stdin=manifests({"kv-cache-memory": KV_BYTES}))
    ws = await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True", within=READY_WITHIN)
    plan, engine = ws["status"]["plan"], ws["status"]["engine"]
    assert engine["refusal"] == "EngineKVCacheTooSmall" and engine["observedMaxModelLen"] == 256
    fits = engine["fitsMaxModelLen"]
    assert 0 < fits < 256 and engine["observedKvCacheTokens"] == fits
    assert (plan["replannedFromMaxModelLen"], plan["maxModelLen"], plan["kvCacheMemory"]) == (4096, fits, KV_BYTES)
    assert f"--max-model-len={fits}" in plan["engineArgs"]
    configmap = (await kubectl("get", "configmap", f"{NAME}-engine", "-o", "json")).json()
    assert yaml.safe_load(configmap["data"]["engine.yaml"])["maxModelLen"] == fits
    (event,) = await warnings(kubectl, "ReplannedFromEngine")
    assert f"re-planned max-model-len 4096 -> {fits}" in event["message"]
    served = await kubectl("get", "--raw", f"/api/v1/namespaces/{kubectl.namespace}/services/{NAME}:80/proxy/health")
    assert served.stdout
    await kubectl("delete", "workspace", NAME, "--timeout=60s")


async def test_a_pinned_context_is_left_as_is_and_the_workspace_says_what_would_fit(
    kubectl: Kubectl, operator: Operator
) -> None:
    await kubectl("apply", "-f", "-", stdin=manifests({"kv-cache-memory": KV_BYTES, "max-model-len": 200}))
    ws = await wait_workspace(kubectl, NAME, "InferenceReady", "False", reason="EngineKVCacheTooSmall", within=90)
    message = condition(ws, "InferenceReady")["message"]
    fits = ws["status"]["engine"]["fitsMaxModelLen"]
    assert "The model's max seq len (200) is larger than the maximum number of tokens" in message
    assert f"max-model-len {fits} would fit; inference_config.yaml pins 200" in message
    plan = ws["status"]["plan"]
    assert plan["maxModelLen"] == 200 and "replannedFromMaxModelLen" not in plan
    assert not await warnings(kubectl, "ReplannedFromEngine")
    await kubectl("delete", "workspace", NAME, "--timeout=60s")
