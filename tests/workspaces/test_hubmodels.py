"""Hugging Face models the catalog lacks: read from a stand-in hub once, pinned, planned, refused in its words."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kaito.api.fielderrors import FieldError
from kaito.presets.catalog import Catalog
from kaito.workspaces.hubmodels import HubModels, hub_models_for
from kaito.workspaces.modelsource import HubModel, ModelImages
from kaito.workspaces.plan import Invalid, Planned, validate_and_plan
from tests.hub import HubRepo, StandInHub, llama_config
from tests.hub import hub as hub  # the stand-in hub fixture

CATALOG = Catalog.builtin()
NAME_FIELD = "inference.preset.name"
SECRET_FIELD = "inference.preset.presetOptions.modelAccessSecret"
TOKEN = "hf_open_sesame"


def workspace(preset: str, *, secret: str | None = None, tuning: bool = False) -> dict[str, Any]:
    options = {"presetOptions": {"modelAccessSecret": secret}} if secret else {}
    doc: dict[str, Any] = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "ws", "namespace": "default"},
        "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"app": "ws"}}},
    }
    if tuning:
        doc["tuning"] = {
            "preset": {"name": preset, **options},
            "method": "qlora",
            "input": {"urls": ["https://example.com/data.parquet"]},
            "output": {"volumeSource": {"emptyDir": {}}},
        }
    else:
        doc["inference"] = {"preset": {"name": preset, **options}}
    return doc


async def token_of(namespace: str, name: str) -> str | None:
    return {"hf-token": TOKEN, "someone-elses-token": "hf_not_for_this_repo"}.get(name)


def repos(hub: StandInHub) -> None:
    params = {"BF16": 600_000_000}
    hub.add(
        "org/small-llama",
        HubRepo(config=llama_config(), weights={"model.safetensors": 1_200_000_000}, parameters=params),
    )
    hub.add(
        "org/gated-llama",
        HubRepo(config=llama_config(), weights={"model.safetensors": 1_200_000_000}, gated=True, token=TOKEN),
    )
    hub.add(
        "org/encoder",
        HubRepo(config=llama_config(architectures=["BertForMaskedLM"]), weights={"model.safetensors": 1000}),
    )


async def plan(doc: dict[str, Any], models: HubModels) -> Planned:
    found = await hub_models_for(doc, catalog=CATALOG, hub=models, read_token=token_of)
    return validate_and_plan(doc, catalog=CATALOG, cloud="azure", model_images=ModelImages(hub=found))


async def refusal(doc: dict[str, Any], models: HubModels) -> FieldError:
    with pytest.raises(Invalid) as caught:
        await plan(doc, models)
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


async def test_an_uncatalogued_id_is_planned_from_its_config_and_pinned_to_the_commit_read(hub: StandInHub) -> None:
    repos(hub)
    models = HubModels(endpoint=hub.url)
    planned = await plan(workspace("org/small-llama"), models)
    model, status = planned.model, planned.plan
    commit = hub.repos["org/small-llama"].commit
    assert model is not None and model.source == "hub" and model.hf_repo == "org/small-llama"
    assert model.revision == commit and (model.layers, model.kv_heads, model.head_dim) == (4, 2, 64)
    assert model.parameters_b == 0.6 and model.weight_bytes == 1_200_000_000
    assert status.hub is not None and status.hub.revision == commit and status.max_model_len == 4096
    assert hub.calls("org/small-llama") == 2  # its info, then config.json at the commit
    again = await plan(workspace("org/small-llama"), models)
    assert again.plan == status and hub.calls("org/small-llama") == 2  # kept: no second read


async def test_the_hub_moving_on_does_not_move_a_pinned_model(hub: StandInHub) -> None:
    repos(hub)
    models = HubModels(endpoint=hub.url)
    first = await plan(workspace("org/small-llama"), models)
    hub.add("org/small-llama", HubRepo(config=llama_config(num_hidden_layers=40), weights={"model.safetensors": 9}))
    second = await plan(workspace("org/small-llama"), models)
    assert second.model == first.model and hub.calls("org/small-llama") == 2


async def test_a_plan_in_status_is_read_back_without_the_hub(hub: StandInHub) -> None:
    """After a restart (a new HubModels) the plan in status gives the pinned revision and numbers: no hub call."""
    repos(hub)
    doc = workspace("org/small-llama")
    first = await plan(doc, HubModels(endpoint=hub.url))
    stored = {**copy.deepcopy(doc), "status": {"plan": first.plan.to_wire()}}
    restarted = HubModels(endpoint=hub.url)
    again = await plan(stored, restarted)
    assert again.plan == first.plan and again.model == first.model
    assert hub.calls("org/small-llama") == 2 and restarted.reads == 0
    # A new workspace naming the same id in that manager gets the same pinned revision, still without a read.
    other = await plan(workspace("org/small-llama"), restarted)
    assert other.model == first.model and hub.calls("org/small-llama") == 2


async def test_a_revision_can_be_named_and_a_missing_one_is_refused_on_the_name(hub: StandInHub) -> None:
    repos(hub)
    models = HubModels(endpoint=hub.url)
    commit = hub.repos["org/small-llama"].commit
    planned = await plan(workspace(f"org/small-llama@{commit}"), models)
    assert planned.model is not None and planned.model.revision == commit
    error = await refusal(workspace("org/small-llama@v9"), models)
    assert error.path == NAME_FIELD and "Revision Not Found" in error.message and "v9" in error.message


async def test_a_missing_repository_is_refused_with_the_hubs_words(hub: StandInHub) -> None:
    error = await refusal(workspace("org/nothing-here"), HubModels(endpoint=hub.url))
    assert error.path == NAME_FIELD and "Repository Not Found" in error.message


async def test_a_gated_model_needs_the_secret_and_its_token(hub: StandInHub) -> None:
    repos(hub)
    models = HubModels(endpoint=hub.url)
    error = await refusal(workspace("org/gated-llama"), models)
    assert error.path == SECRET_FIELD and "gated" in error.message
    error = await refusal(workspace("org/gated-llama", secret="no-such-secret"), models)
    assert error.path == SECRET_FIELD and "not found" in error.message
    planned = await plan(workspace("org/gated-llama", secret="hf-token"), models)
    assert planned.model is not None and planned.model.download_auth_required
    # Kept now; a workspace without the secret is still refused on the field, without a hub call.
    calls = len(hub.requests)
    error = await refusal(workspace("org/gated-llama"), models)
    assert error.path == SECRET_FIELD and len(hub.requests) == calls


async def test_an_architecture_vllm_does_not_serve_is_refused_naming_it(hub: StandInHub) -> None:
    repos(hub)
    error = await refusal(workspace("org/encoder"), HubModels(endpoint=hub.url))
    assert error.path == NAME_FIELD and "BertForMaskedLM" in error.message and "vLLM" in error.message


async def test_an_unreachable_hub_is_refused_with_the_connection_error(hub: StandInHub) -> None:
    url = hub.url
    await hub.stop()
    error = await refusal(workspace("org/small-llama"), HubModels(endpoint=url, timeout=1.0))
    assert error.path == NAME_FIELD and url in error.message and "Connect" in error.message


async def test_a_tuning_preset_may_name_a_hub_model(hub: StandInHub) -> None:
    repos(hub)
    models = HubModels(endpoint=hub.url)
    planned = await plan(workspace("org/small-llama", tuning=True), models)
    assert planned.model is not None and planned.model.supports_tuning
    error = await refusal(workspace("org/gated-llama", tuning=True), models)
    assert error.path == "tuning.preset.presetOptions.modelAccessSecret"


async def test_a_catalog_name_or_a_plain_unknown_name_never_asks_the_hub(hub: StandInHub) -> None:
    models = HubModels(endpoint=hub.url)
    assert await hub_models_for(workspace("phi-4"), catalog=CATALOG, hub=models, read_token=token_of) == {}
    assert await hub_models_for(workspace("microsoft/phi-4"), catalog=CATALOG, hub=models, read_token=token_of) == {}
    assert await hub_models_for(workspace("no-such-model"), catalog=CATALOG, hub=models, read_token=token_of) == {}
    assert hub.requests == []


def test_a_hub_model_round_trips_through_status() -> None:
    from kaito.api.modelimage import ModelImageConfig

    config = ModelImageConfig(
        parameters_b=1.0,
        weight_bytes=10,
        layers=2,
        attention_heads=4,
        kv_heads=2,
        head_dim=8,
        hidden_size=32,
        max_position_embeddings=128,
        experts=8,
        experts_per_token=2,
        source_repository="org/m",
        revision="abc",
    )
    model = HubModel(config=config, gated=True)
    assert HubModel.from_status(model.to_status()) == model


async def test_a_kept_gated_model_is_checked_against_each_workspaces_own_token(hub: StandInHub) -> None:
    repos(hub)
    models = HubModels(endpoint=hub.url)
    await plan(workspace("org/gated-llama", secret="hf-token"), models)  # read and kept with the right token
    # Another workspace names a Secret whose token the hub refuses: refused on the field, though the model is kept.
    calls = len(hub.requests)
    error = await refusal(workspace("org/gated-llama", secret="someone-elses-token"), models)
    assert error.path == SECRET_FIELD and len(hub.requests) == calls + 1
    assert models.reads == 1  # the model itself was not read again
    # The right token is known to open it: planned without asking the hub again, as often as asked.
    calls = len(hub.requests)
    for _ in range(2):
        planned = await plan(workspace("org/gated-llama", secret="hf-token"), models)
        assert planned.model is not None and planned.model.download_auth_required
    assert len(hub.requests) == calls
