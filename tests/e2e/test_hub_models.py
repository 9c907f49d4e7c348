"""Workspaces naming Hugging Face models the catalog lacks, read from a stand-in hub, driven with kubectl."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.operator import OperatorOptions, build
from kaito.runtime.client import Client
from kaito_sim.aks import SimulatedAks
from kaito_sim.demo.operator import install_crds
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, condition, wait_workspace, workspace_json
from tests.hub import HubRepo, StandInHub, llama_config
from tests.hub import hub as hub  # the stand-in hub fixture

TOKEN = "hf_e2e_token"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "inference"
SECRET_FIELD = "inference.preset.presetOptions.modelAccessSecret"


async def start_operator(op: Operator, kclient: Client, endpoint: str) -> None:
    op.provider = op.new_provider()
    options = OperatorOptions(
        metrics_address="127.0.0.1:0",
        health_address="127.0.0.1:0",
        webhook_address="127.0.0.1:0",
        leader_election=False,
        nodeclaim_poll_interval=0.2,
        hf_endpoint=endpoint,
    )
    op.manager = build(kclient, op.provider, options)
    op.stop = asyncio.Event()
    op.task = asyncio.create_task(op.manager.run(op.stop))
    await asyncio.wait_for(op.manager.elected.wait(), 15)
    for _ in range(100):  # admission answers once the webhook is registered
        path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
        if (await kclient.raw("GET", path))["items"]:
            break
        await asyncio.sleep(0.1)


@pytest.fixture
async def operator(sim: SimServer, kclient: Client, hub: StandInHub) -> AsyncIterator[Operator]:
    """The operator reading models the catalog lacks from the stand-in hub (its --hf-endpoint)."""
    weights = {"model-00001-of-00002.safetensors": 700_000_000, "model-00002-of-00002.safetensors": 500_000_000}
    hub.add("org/small-llama", HubRepo(config=llama_config(), weights=weights, parameters={"BF16": 600_000_000}))
    gated = HubRepo(config=llama_config(), weights={"model.safetensors": 1_000_000}, gated=True, token=TOKEN)
    hub.add("org/gated-llama", gated)
    hub.add("org/encoder", HubRepo(config=llama_config(architectures=["BertModel"]), weights={"model.safetensors": 9}))
    async with SimulatedAks(sim, provisioning_delay=0.0) as aks:
        await install_crds(kclient, "kaito-system")
        op = Operator(aks=aks, client=kclient)
        await start_operator(op, kclient, hub.url)
        yield op
        await op.halt()


def workspace(name: str, preset: str, *, secret: str | None = None) -> str:
    options = {"presetOptions": {"modelAccessSecret": secret}} if secret else {}
    doc: dict[str, Any] = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"app": name}}},
        "inference": {"preset": {"name": preset, **options}},
    }
    return yaml.safe_dump(doc)


async def nudge(kubectl: Kubectl, name: str, value: str) -> None:
    """An edit that brings the workspace back to the controller without changing what it plans from."""
    await kubectl("annotate", "--overwrite", "workspace", name, f"example.com/nudge={value}")


async def test_an_uncatalogued_id_is_admitted_planned_from_its_config_and_served_from_the_pinned_revision(
    kubectl: Kubectl, operator: Operator, hub: StandInHub
) -> None:
    applied = await kubectl("apply", "-f", "-", stdin=workspace("small", "org/small-llama"))
    assert applied.rc == 0, applied.stderr
    ws = await wait_workspace(kubectl, "small", "WorkspaceSucceeded", "True", within=60)
    commit = hub.repos["org/small-llama"].commit
    plan = ws["status"]["plan"]
    assert plan["model"] == "org/small-llama" and plan["maxModelLen"] == 4096  # its config's, no preset's
    assert plan["hub"]["repository"] == "org/small-llama" and plan["hub"]["revision"] == commit
    engine = (await kubectl("get", "configmap", "small-engine", "-o", "json")).json()
    config = yaml.safe_load(next(iter(engine["data"].values())))
    assert config["model"] == "org/small-llama" and config["revision"] == commit
    deployment = (await kubectl("get", "deployment", "small", "-o", "json")).json()
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_ENDPOINT"] == hub.url
    assert hub.calls("org/small-llama") == 2  # admission read it; the controller planned from what it kept

    # Another reconcile asks the hub nothing.
    await nudge(kubectl, "small", "1")
    await asyncio.sleep(1.0)
    assert hub.calls("org/small-llama") == 2

    # A new manager, with the hub gone: the plan in status keeps the pinned revision and numbers.
    await operator.halt()
    url = hub.url
    await hub.stop()
    await start_operator(operator, operator.client, url)
    await nudge(kubectl, "small", "2")
    ws = await wait_workspace(kubectl, "small", "WorkspaceSucceeded", "True", within=30)
    await asyncio.sleep(1.0)
    after = await workspace_json(kubectl, "small")
    assert after["status"]["plan"] == plan and after["status"]["plan"]["hub"]["revision"] == commit
    assert condition(after, "WorkspaceSucceeded")["status"] == "True"  # reconciled without asking the hub


async def test_a_gated_model_is_refused_at_apply_without_a_secret_and_admitted_with_one(
    kubectl: Kubectl, operator: Operator
) -> None:
    refused = await kubectl("apply", "-f", "-", stdin=workspace("gated", "org/gated-llama"), check=False)
    assert refused.rc != 0 and SECRET_FIELD in refused.stderr and "gated" in refused.stderr
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hf-token"},
        "data": {"HF_TOKEN": base64.b64encode(TOKEN.encode()).decode()},
    }
    await kubectl("apply", "-f", "-", stdin=json.dumps(secret))
    applied = await kubectl("apply", "-f", "-", stdin=workspace("gated", "org/gated-llama", secret="hf-token"))
    assert applied.rc == 0, applied.stderr
    await wait_workspace(kubectl, "gated", "WorkspaceSucceeded", "True", within=60)


async def test_an_unsupported_architecture_and_an_unreachable_hub_are_refused_with_the_reason(
    kubectl: Kubectl, operator: Operator, hub: StandInHub
) -> None:
    refused = await kubectl("apply", "-f", "-", stdin=workspace("encoder", "org/encoder"), check=False)
    assert refused.rc != 0 and "inference.preset.name" in refused.stderr and "BertModel" in refused.stderr
    await hub.stop()
    refused = await kubectl("apply", "-f", "-", stdin=workspace("later", "org/small-llama"), check=False)
    assert refused.rc != 0 and "inference.preset.name" in refused.stderr and hub.url in refused.stderr
    assert "Connect" in refused.stderr


async def test_a_model_the_hub_cannot_give_yet_is_a_condition_and_retried_until_it_can(
    kubectl: Kubectl, operator: Operator, hub: StandInHub
) -> None:
    # Admission would refuse it; a workspace stored while the webhook was away reaches the controller as it is.
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        await kubectl("delete", kind, "--all", namespaced=False)
    applied = await kubectl("apply", "-f", "-", stdin=workspace("later", "org/later-llama"))
    assert applied.rc == 0, applied.stderr
    ws = await wait_workspace(kubectl, "later", "ResourceReady", "False", reason="ModelNotRead", within=30)
    assert "cannot read org/later-llama from the hub" in condition(ws, "ResourceReady")["message"]
    tries = hub.calls("org/later-llama")

    hub.add("org/later-llama", HubRepo(config=llama_config(), weights={"model.safetensors": 900_000_000}))
    ws = await wait_workspace(kubectl, "later", "WorkspaceSucceeded", "True", within=90)
    assert ws["status"]["plan"]["hub"]["revision"] == hub.repos["org/later-llama"].commit
    assert hub.calls("org/later-llama") > tries  # the controller asked again, with backoff, and got it


async def test_the_readme_hub_example_is_admitted_and_pinned(
    kubectl: Kubectl, operator: Operator, hub: StandInHub
) -> None:
    qwen = llama_config(architectures=["Qwen2ForCausalLM"])
    repo = hub.add("Qwen/Qwen2.5-0.5B-Instruct", HubRepo(config=qwen, weights={"model.safetensors": 988_097_824}))
    applied = await kubectl("apply", "-f", str(EXAMPLES / "hub_model_qwen2_5_0_5b.yaml"))
    assert applied.rc == 0, applied.stderr
    ws = await wait_workspace(kubectl, "workspace-qwen2-5-0-5b", "ResourceReady", "True", within=60)
    assert ws["status"]["plan"]["hub"] | {"config": None} == {
        "repository": "Qwen/Qwen2.5-0.5B-Instruct",
        "revision": repo.commit,
        "gated": False,
        "config": None,
    }
