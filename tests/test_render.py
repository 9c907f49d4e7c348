"""`kaito render`: plans from manifests with no cluster, catalog overrides, and clear failures."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
import yaml

from kaito.cli import main
from kaito.presets.catalog import Catalog
from kaito.render import render
from tests.hub import HubRepo, StandInHub, llama_config
from tests.hub import hub as hub  # the stand-in hub fixture
from tests.workspaces.counting import CountingSizing

ROOT = Path(__file__).resolve().parents[1]
PHI3 = str(ROOT / "examples/inference/kaito_workspace_phi_3.yaml")
TUNING = str(ROOT / "examples/tuning/kaito_workspace_tuning_phi_3.yaml")


def test_render_explains_the_readme_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", PHI3]) == 0
    out = capsys.readouterr().out
    assert "workspace default/workspace-phi-3-mini" in out
    assert "dtype: float16" in out and "maxModelLen: 4096" in out
    assert "bfloat16 needs compute capability 8.0+" in out
    assert "--gpu-memory-utilization=0.93" in out
    assert "NodeClaim workspace-phi-3-mini-" in out and "Deployment workspace-phi-3-mini" in out
    assert "Service workspace-phi-3-mini" in out and "workspace-phi-3-mini-headless" not in out


def test_render_json_carries_the_status_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", PHI3, "-o", "json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    plan = item["plan"]
    assert plan["instanceType"] == "Standard_NC6s_v3"
    assert plan["tensorParallelSize"] == 1 and plan["kvCacheTokens"] >= 2 * plan["maxModelLen"]
    assert "--max-model-len=4096" in item["vllmArgs"]
    kinds = [obj["kind"] for obj in item["objects"]]
    assert kinds == ["NodeClaim", "ConfigMap", "Service", "Deployment"]


def test_render_auto_picks_an_instance_type_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "ws.yaml"
    manifest.write_text(
        "apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata: {name: q}\n"
        "resource: {instanceType: auto, labelSelector: {matchLabels: {a: b}}}\n"
        "inference: {preset: {name: qwen2.5-coder-7b-instruct}}\n"
    )
    assert main(["render", "-f", str(manifest), "--cloud", "aws", "-o", "yaml"]) == 0
    [item] = list(yaml.safe_load_all(capsys.readouterr().out))
    assert item["plan"]["instanceType"].startswith(("g5.", "g6."))
    assert "is the cheapest of" in item["plan"]["explanation"][-1]


def test_render_refuses_what_does_not_fit_and_lists_alternatives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "ws.yaml"
    manifest.write_text(Path(PHI3).read_text().replace("phi-3-mini-4k-instruct", "mistral-large-3-675b-instruct"))
    assert main(["render", "-f", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "resource.instanceType" in err and "instance types that fit" in err


def test_render_uses_catalog_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "models.yaml").write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "name": "acme/tiny-chat",
                        "parameters_b": 1.1,
                        "weight_bytes": 2_200_000_000,
                        "layers": 22,
                        "attention_heads": 32,
                        "kv_heads": 4,
                        "head_dim": 64,
                        "hidden_size": 2048,
                        "max_position_embeddings": 2048,
                    }
                ]
            }
        )
    )
    (catalog / "prices.yaml").write_text("prices:\n  Standard_NC6s_v3: 0.01\n")
    manifest = tmp_path / "ws.yaml"
    manifest.write_text(Path(PHI3).read_text().replace("phi-3-mini-4k-instruct", "acme/tiny-chat"))
    assert main(["render", "-f", str(manifest), "--catalog", str(catalog)]) == 0
    assert "model: acme/tiny-chat" in capsys.readouterr().out
    assert main(["render", "--list-skus", "--catalog", str(catalog)]) == 0
    assert "$0.01/h" in capsys.readouterr().out
    (catalog / "models.yaml").write_text("models:\n  - name: broken\n    layerz: 3\n")
    assert main(["render", "-f", str(manifest), "--catalog", str(catalog)]) == 2
    assert "models.yaml" in capsys.readouterr().err


def test_render_lists_models_with_deprecations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--list-models"]) == 0
    out = capsys.readouterr().out
    assert "phi-3-mini-4k-instruct" in out and "phi-2" in out and "deprecated" in out


def test_render_shows_the_tuning_job_and_its_steps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(ROOT / "examples/tuning/kaito_workspace_tuning_phi_3.yaml")]) == 0
    out = capsys.readouterr().out
    assert "method: qlora" in out and "ConfigMap workspace-phi-3-mini-tuning" in out
    assert "Job workspace-phi-3-mini: data-downloader (kaito fetch-data) -> tuner (kaito tune)" in out


def test_render_sizes_each_manifest_once() -> None:
    sizing = CountingSizing()
    out, err = io.StringIO(), io.StringIO()
    code = render(
        [PHI3, TUNING], cloud="azure", catalog=Catalog.builtin(), output="json", out=out, err=err, sizing=sizing
    )
    assert code == 0 and len(json.loads(out.getvalue())) == 2
    assert sizing.runs == 2


def test_render_of_a_multi_node_plan_adds_the_headless_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "ws.yaml"
    manifest.write_text(
        "apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata: {name: big}\n"
        "resource: {instanceType: Standard_NC4as_T4_v3, labelSelector: {matchLabels: {a: b}}}\n"
        "inference: {preset: {name: llama-3.1-8b-instruct, presetOptions: {modelAccessSecret: hf}}}\n"
    )
    assert main(["render", "-f", str(manifest), "-o", "json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    services = [obj for obj in item["objects"] if obj["kind"] == "Service"]
    assert [s["metadata"]["name"] for s in services] == ["big", "big-headless"]
    assert services[1]["spec"]["clusterIP"] == "None"
    assert [obj["kind"] for obj in item["objects"]][-1] == "StatefulSet"


QWEN_EXAMPLE = str(ROOT / "examples/inference/hub_model_qwen2_5_0_5b.yaml")


def serve_qwen(hub: StandInHub) -> str:
    """Qwen2.5-0.5B-Instruct's published config.json numbers, on the stand-in hub; returns the commit."""
    config = llama_config(
        architectures=["Qwen2ForCausalLM"],
        model_type="qwen2",
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        hidden_size=896,
        intermediate_size=4864,
        vocab_size=151936,
        max_position_embeddings=32768,
    )
    repo = hub.add("Qwen/Qwen2.5-0.5B-Instruct", HubRepo(config=config, weights={"model.safetensors": 988_097_824}))
    return repo.commit


async def test_render_reads_a_hub_id_from_hf_endpoint(
    hub: StandInHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commit = serve_qwen(hub)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert await asyncio.to_thread(main, ["render", "-f", QWEN_EXAMPLE]) == 0
    out = capsys.readouterr().out
    assert f"model: qwen/qwen2.5-0.5b-instruct (Qwen/Qwen2.5-0.5B-Instruct@{commit})" in out
    assert "maxModelLen: 32768" in out
    assert hub.calls("Qwen/Qwen2.5-0.5B-Instruct") == 2


async def test_list_models_marks_catalog_and_hub_entries_with_what_they_require(
    hub: StandInHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commit = serve_qwen(hub)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert await asyncio.to_thread(main, ["render", "--list-models", "-f", QWEN_EXAMPLE]) == 0
    lines = capsys.readouterr().out.splitlines()
    phi = next(line for line in lines if line.startswith("phi-4 "))
    assert phi.split()[1] == "catalog" and "requires" not in phi
    fp8 = next(line for line in lines if line.startswith("deepseek-v3-0324 "))
    assert "requires cc 8.0+" in fp8 and "FP8" in fp8
    assert lines[-1].split() == ["qwen/qwen2.5-0.5b-instruct", "hub", f"Qwen/Qwen2.5-0.5B-Instruct@{commit}"]
    await hub.stop()
    assert await asyncio.to_thread(main, ["render", "--list-models", "-f", QWEN_EXAMPLE]) == 1
    assert "cannot be read" in capsys.readouterr().out
