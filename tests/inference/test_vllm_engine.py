"""The vLLM engine: the plan becomes vLLM's exact command line, and the managed child process is served."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from kaito.api.workspace import Workspace
from kaito.controllers.build_workload import build_engine_configmap
from kaito.controllers.context import Settings, Target
from kaito.inference.engine import Chunk, NotReady, Request, Sampling, UnknownModel
from kaito.inference.engines.adapter_files import AdapterDir, find_adapters, with_strength
from kaito.inference.engines.vllm_args import VllmSettings, check_with_vllm_parser, vllm_args
from kaito.inference.engines.vllm_engine import VllmEngine
from kaito.presets.catalog import Catalog
from kaito.workspaces.plan import plan_workspace

FAKE = str(Path(__file__).with_name("fake_vllm.py"))


def engine_config(preset: str, instance_type: str, adapters: int = 0) -> dict[str, object]:
    raw = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "w", "namespace": "n", "uid": "u"},
        "resource": {"instanceType": instance_type, "labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {
            "preset": {"name": preset},
            "adapters": [{"source": {"name": f"a{i}", "image": "r.io/a:1"}} for i in range(adapters)],
        },
    }
    ws = Workspace.parse(raw)
    plan, model = plan_workspace(ws, catalog=Catalog.builtin(), cloud="azure")
    target = Target(ws=ws, uid="u", plan=plan, model=model, settings=Settings())
    return dict(yaml.safe_load(build_engine_configmap(target)["data"]["engine.yaml"]))


def test_every_plan_field_reaches_the_command_line() -> None:
    config = engine_config("phi-3-mini-4k-instruct", "Standard_NC6s_v3", adapters=2)
    args = vllm_args(VllmSettings.from_config(config))
    for expected in [
        "--tensor-parallel-size=1",
        "--pipeline-parallel-size=1",
        "--data-parallel-size=1",
        "--dtype=float16",
        "--gpu-memory-utilization=0.93",
        "--max-model-len=4096",
        "--max-num-seqs=6",
        "--max-num-batched-tokens=2048",
        "--enable-lora",
        "--max-loras=2",
        "--max-lora-rank=16",
    ]:
        assert expected in args, expected
    assert args[:4] == ["--model", "microsoft/Phi-3-mini-4k-instruct", "--served-model-name", "phi-3-mini-4k-instruct"]
    assert "--revision" in args and "--download-dir" in args
    assert args[args.index("--port") + 1] == "5001"


def test_multi_node_plans_use_ray_and_flags_override_the_file() -> None:
    config = engine_config("llama-3.1-8b-instruct", "Standard_NC4as_T4_v3")
    settings = VllmSettings.from_config({**config, "vllm": {"enforce-eager": True, "swap_space": 4}})
    args = vllm_args(settings)
    assert any(a.startswith("--pipeline-parallel-size=") and a != "--pipeline-parallel-size=1" for a in args)
    assert "--distributed-executor-backend=ray" in args
    assert "--enforce-eager" in args and "--swap-space=4" in args

    class Flags:
        max_model_len = 1024
        dtype = "half"

    pinned = vllm_args(VllmSettings.from_config(config, Flags()))
    assert "--max-model-len=1024" in pinned and "--dtype=half" in pinned


def test_vllms_own_parser_accepts_the_arguments() -> None:
    pytest.importorskip("vllm", reason="vLLM is not installed here (it is an optional extra for GPU machines)")
    args = vllm_args(VllmSettings.from_config(engine_config("phi-3-mini-4k-instruct", "Standard_NC6s_v3", 1)))
    check = check_with_vllm_parser(args)
    assert check.accepted, check.error
    assert check.namespace["max_model_len"] == 4096


def lora_dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    tensors = {
        "base_model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.ones(4, 8),
        "base_model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.full((8, 4), 2.0),
    }
    save_file(tensors, str(path / "adapter_model.safetensors"))
    return path


def test_strength_is_baked_into_the_b_matrices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lora_dir(tmp_path / "adapters", "half")
    lora_dir(tmp_path / "adapters", "full")
    monkeypatch.setenv("half", "0.5")
    found = find_adapters(tmp_path / "adapters")
    assert [(a.name, a.strength) for a in found] == [("full", 1.0), ("half", 0.5)]
    assert with_strength(found[0], tmp_path / "scratch") == found[0].path
    scaled = load_file(str(with_strength(found[1], tmp_path / "scratch") / "adapter_model.safetensors"))
    b = next(t for k, t in scaled.items() if "lora_B" in k)
    a = next(t for k, t in scaled.items() if "lora_A" in k)
    assert torch.equal(b, torch.full((8, 4), 1.0)) and torch.equal(a, torch.ones(4, 8))
    with pytest.raises(ValueError, match="outside"):
        find_adapters(tmp_path / "adapters", {"half": 1.5})
    assert with_strength(AdapterDir("x", found[1].path, 0.0), tmp_path / "s2").name == "x-x0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_engine_launches_and_streams_from_the_child(tmp_path: Path) -> None:
    lora_dir(tmp_path / "adapters", "style")
    model = tmp_path / "model"
    model.mkdir()
    settings = VllmSettings(model=str(model), served_model_name="tiny", port=free_port(), max_model_len=512)
    engine = VllmEngine(
        settings, adapters_dir=tmp_path / "adapters", adapter_strengths={"style": 0.25}, command=[sys.executable, FAKE]
    )
    try:
        await engine.load()
        argv = json.loads((model / "argv.json").read_text())
        assert "--enable-lora" in argv and any(a.startswith("style=") and "x0.25" in a for a in argv)
        assert engine.models() == ["tiny", "style"] and engine.max_model_len == 512
        chunks: list[Chunk] = [
            c async for c in engine.generate(Request(model="style", sampling=Sampling(max_tokens=7), prompt="hi"))
        ]
        assert "".join(c.text for c in chunks) == "echo style 7 "
        assert chunks[-1].finish_reason == "length" and chunks[-1].completion_tokens == 3
        chat = Request(model="tiny", messages=({"role": "user", "content": "hi"},))
        assert "".join([c.text async for c in engine.generate(chat)]).startswith("echo tiny")
        with pytest.raises(UnknownModel):
            _ = [c async for c in engine.generate(Request(model="nope", prompt="x"))]
    finally:
        await engine.close()


async def test_a_crashing_vllm_is_reported_with_its_log(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    settings = VllmSettings(model=str(model), served_model_name="tiny", port=free_port(), extra=("--crash",))
    engine = VllmEngine(settings, command=[sys.executable, FAKE])
    with pytest.raises(NotReady, match="CUDA out of memory"):
        await engine.load()
    await engine.close()
