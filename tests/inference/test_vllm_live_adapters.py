"""vLLM's runtime LoRA API as `kaito serve` drives it, against a stand-in vLLM server that checks what it receives:
load, replace (load the new, unload the old once nothing runs on it), unload, and a refused load reported Failed."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kaito.api.engine import EngineAdapter, EngineConfig
from kaito.inference.engine import AdapterRefused, Request
from kaito.inference.engines.vllm_engine import RUNTIME_LORA_ENV, VllmEngine
from kaito.inference.live_adapters import AdapterManager
from kaito.inference.serve import serving
from tests.inference.fake_vllm import fake_app
from tests.inference.test_app import until


@dataclass
class LoraCalls:
    """What the stand-in received on its LoRA routes, in order: ("load", name, path) or ("unload", name)."""

    calls: list[tuple[str, ...]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # lora paths whose load is answered 400


def stand_in(names: list[str], lora: LoraCalls) -> web.Application:
    """vLLM's OpenAI server with its runtime LoRA routes: the same bodies vLLM takes and the same refusals."""
    app = fake_app(names)

    async def load(request: web.Request) -> web.Response:
        body = await request.json()
        assert set(body) == {"lora_name", "lora_path"}, body
        name, path = body["lora_name"], body["lora_path"]
        assert (Path(path) / "adapter_config.json").is_file(), f"vLLM cannot read {path}"
        lora.calls.append(("load", name, path))
        if name in names:
            return web.json_response({"message": f"The lora adapter '{name}' has already been loaded."}, status=400)
        if Path(path).name in lora.refuse or any(part in lora.refuse for part in Path(path).parts):
            return web.json_response({"message": "LoRA rank 64 is greater than max_lora_rank 16."}, status=400)
        names.append(name)
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def unload(request: web.Request) -> web.Response:
        body = await request.json()
        assert set(body) == {"lora_name"}, body
        lora.calls.append(("unload", body["lora_name"]))
        if body["lora_name"] not in names:
            return web.json_response(
                {"message": f"The lora adapter '{body['lora_name']}' cannot be found."}, status=404
            )
        names.remove(body["lora_name"])
        return web.Response(text="Success")

    app.router.add_post("/v1/load_lora_adapter", load)
    app.router.add_post("/v1/unload_lora_adapter", unload)
    return app


@contextlib.asynccontextmanager
async def vllm(names: list[str], lora: LoraCalls) -> AsyncIterator[VllmEngine]:
    async with serving(stand_in(names, lora), host="127.0.0.1", port=0) as port:
        config = EngineConfig(model="/models/tiny", served_model_name="tiny", max_loras=2, max_lora_rank=16)
        engine = VllmEngine(config, upstream=f"http://127.0.0.1:{port}")
        await engine.load()
        try:
            yield engine
        finally:
            await engine.close()


def adapter_dir(root: Path, name: str, rank: int = 8) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank}))
    (path / "adapter_model.safetensors").write_bytes(b"weights of " + name.encode())
    return path


async def said(engine: VllmEngine, model: str) -> str:
    return "".join([chunk.text async for chunk in engine.generate(Request(model=model, prompt="hi"))])


async def test_load_replace_and_unload_through_the_runtime_lora_api(tmp_path: Path) -> None:
    names, lora = ["tiny"], LoraCalls()
    async with vllm(names, lora) as engine:
        await engine.load_adapter("style", adapter_dir(tmp_path, "v1"), strength=1.0)
        assert lora.calls[0][:2] == ("load", "style") and engine.models() == ["tiny", "style"]
        assert (Path(lora.calls[0][2]) / "adapter_model.safetensors").read_bytes() == b"weights of v1"
        assert "echo style" in await said(engine, "style")

        # A request on the old weights is still running while the new version arrives.
        running = engine.generate(Request(model="style", prompt="slow"))
        first = await anext(running)
        await engine.load_adapter("style", adapter_dir(tmp_path, "v2"), strength=1.0)
        assert lora.calls[1][0] == "load" and lora.calls[1][1].startswith("style--"), lora.calls
        assert len(lora.calls) == 2, "the old version stays while a request runs on it"
        rest = [chunk.text async for chunk in running]
        assert first.text and rest and "echo" not in "".join(rest)
        await until(_of(lora), lambda calls: ("unload", "style") in calls)
        new_name = lora.calls[1][1]
        assert f"echo {new_name}" in await said(engine, "style"), "requests for style now reach the new version"
        assert engine.models() == ["tiny", "style"]

        await engine.unload_adapter("style")
        await until(_of(lora), lambda calls: calls[-1] == ("unload", new_name))
        assert engine.models() == ["tiny"] and names == ["tiny"]


async def test_a_refused_load_is_reported_failed_and_the_rest_serves(tmp_path: Path) -> None:
    names, lora = ["tiny"], LoraCalls(refuse={"big"})
    adapters = tmp_path / "adapters"
    adapter_dir(adapters, "good")
    adapter_dir(adapters, "big")
    async with vllm(names, lora) as engine:
        with pytest.raises(AdapterRefused, match="max_lora_rank 16"):
            await engine.load_adapter("big", adapters / "big", strength=1.0)
        manager = AdapterManager(engine, adapters_dir=adapters, base_names=["tiny"])
        manager.start()
        try:
            manager.follow(EngineConfig(adapters=[EngineAdapter(name="good"), EngineAdapter(name="big")], max_loras=2))
            reports = await until(
                lambda: _async(manager.reports()), lambda now: all(r.state != "Pulling" for r in now), within=10
            )
            states = {r.name: (r.state, r.message) for r in reports}
            assert states["good"][0] == "Loaded"
            assert states["big"][0] == "Failed" and "max_lora_rank 16" in states["big"][1], states
            assert engine.models() == ["tiny", "good"]
            assert "echo good" in await said(engine, "good") and "echo tiny" in await said(engine, "tiny")
        finally:
            await manager.close()


def test_vllm_starts_with_runtime_lora_updates_when_adapters_are_listed() -> None:
    config = EngineConfig(
        model="/models/tiny", adapters=[EngineAdapter(name="a", image="r.io/a:1")], max_loras=3, max_lora_rank=32
    )
    engine = VllmEngine(config)
    argv = engine.launch_args()
    assert "--enable-lora" in argv and "--max-loras=3" in argv and "--max-lora-rank=32" in argv
    assert engine.child_env()[RUNTIME_LORA_ENV] == "True"
    assert RUNTIME_LORA_ENV not in VllmEngine(EngineConfig(model="/models/tiny")).child_env()


def _of(lora: LoraCalls) -> Any:
    async def read() -> list[tuple[str, ...]]:
        return list(lora.calls)

    return read


async def _async(value: Any) -> Any:
    return value
