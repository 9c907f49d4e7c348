"""The vLLM engine: the plan becomes vLLM's exact command line, and the managed child process is served."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kaito.api.engine import EngineAdapter, EngineConfig
from kaito.api.workspace import Workspace
from kaito.controllers.build_workload import build_engine_configmap
from kaito.controllers.context import Settings, Target
from kaito.inference.engine import Chunk, NotReady, Request, Sampling, UnknownModel
from kaito.inference.engines.adapter_files import AdapterDir, find_adapters, with_strength
from kaito.inference.engines.vllm_args import check_with_vllm_parser, vllm_args
from kaito.inference.engines.vllm_engine import VllmEngine
from kaito.inference.serve import add_serve_arguments, build_engine, load_config, resolve, vllm_config
from kaito.presets.catalog import Catalog
from kaito.workspaces.plan import plan_workspace

FAKE = str(Path(__file__).with_name("fake_vllm.py"))


def engine_config(preset: str, instance_type: str, adapters: int = 0) -> EngineConfig:
    configmap = build_engine_configmap(planned_target(preset, instance_type, adapters=adapters))
    return EngineConfig.from_configmap_data(configmap["data"])


def planned_target(preset: str, instance_type: str, *, adapters: int = 0, inference_config: str = "") -> Target:
    raw = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "w", "namespace": "n", "uid": "u"},
        "resource": {"instanceType": instance_type, "labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {
            "preset": {"name": preset},
            "adapters": [{"source": {"name": f"a{i}", "image": "r.io/a:1"}} for i in range(adapters)],
            **({"config": "tuned"} if inference_config else {}),
        },
    }
    ws = Workspace.parse(raw)
    configs = {"tuned": {"inference_config.yaml": inference_config}}
    lookup = lambda ns, name: configs.get(name)  # noqa: E731
    plan, model = plan_workspace(ws, catalog=Catalog.builtin(), cloud="azure", config_lookup=lookup)
    return Target(ws=ws, uid="u", plan=plan, model=model, settings=Settings())


@pytest.mark.parametrize(
    ("preset", "instance_type", "adapters", "inference_config"),
    [
        pytest.param("phi-3-mini-4k-instruct", "Standard_NC6s_v3", 2, "", id="one-node-lora"),
        pytest.param("llama-3.1-8b-instruct", "Standard_NC4as_T4_v3", 0, "", id="multi-node"),
        pytest.param(
            "llama-3.1-8b-instruct",
            "Standard_NC24ads_A100_v4",
            0,
            "vllm:\n  kv-cache-dtype: fp8\n  max-num-batched-tokens: 4096\n",
            id="user-overrides",
        ),
    ],
)
def test_the_pod_runs_vllm_with_exactly_the_plans_engine_args(
    tmp_path: Path, preset: str, instance_type: str, adapters: int, inference_config: str
) -> None:
    """Controller-built ConfigMap -> the file the kubelet mounts -> `kaito serve`'s loader -> vLLM's command line."""
    target = planned_target(preset, instance_type, adapters=adapters, inference_config=inference_config)
    configmap = build_engine_configmap(target)
    mounted = tmp_path / "engine.yaml"
    mounted.write_text(configmap["data"]["engine.yaml"])
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--config", str(mounted)])
    config = load_config(args.config)
    engine = build_engine(resolve(args, config), config, args)
    assert isinstance(engine, VllmEngine)
    launch = engine.launch_args()[len(engine.command) :]
    assert target.model is not None and target.plan.model is not None and target.plan.engine_args
    head = ["--model", target.model.hf_repo, "--served-model-name", target.plan.model, "--host", "127.0.0.1"]
    head += ["--port", "5001", "--revision", target.model.revision, "--download-dir", "/workspace/weights"]
    assert launch == [*head, *target.plan.engine_args]


def test_every_plan_field_reaches_the_command_line() -> None:
    config = engine_config("phi-3-mini-4k-instruct", "Standard_NC6s_v3", adapters=2)
    args = vllm_args(config)
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
    args = vllm_args(config.model_copy(update={"vllm": {"enforce-eager": True, "swap_space": 4}}))
    assert any(a.startswith("--pipeline-parallel-size=") and a != "--pipeline-parallel-size=1" for a in args)
    assert "--distributed-executor-backend=ray" in args
    assert "--enforce-eager" in args and "--swap-space=4" in args

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    flags = parser.parse_args(["--max-model-len", "1024", "--dtype", "half"])
    pinned = vllm_args(vllm_config(resolve(flags, config), config, flags))
    assert "--max-model-len=1024" in pinned and "--dtype=half" in pinned


def test_vllms_own_parser_accepts_the_arguments() -> None:
    pytest.importorskip("vllm", reason="vLLM is not installed here (it is an optional extra for GPU machines)")
    args = vllm_args(engine_config("phi-3-mini-4k-instruct", "Standard_NC6s_v3", 1))
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
    config = EngineConfig(
        model=str(model),
        served_model_name="tiny",
        max_model_len=512,
        adapters_dir=str(tmp_path / "adapters"),
        adapters=[EngineAdapter(name="style", strength=0.25)],
    )
    engine = VllmEngine(config, port=free_port(), command=[sys.executable, FAKE])
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
    config = EngineConfig(model=str(model), served_model_name="tiny", vllm={"crash": True})
    engine = VllmEngine(config, port=free_port(), command=[sys.executable, FAKE])
    with pytest.raises(NotReady, match="CUDA out of memory"):
        await engine.load()
    await engine.close()
