"""What the engines report at start: KV cache tokens and max model length, or a refusal the operator can read."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kaito.api.engine import EngineConfig
from kaito.api.engine_report import KV_TOO_SMALL, OUT_OF_MEMORY, TERMINATION_BYTES, Refusal
from kaito.inference.engine_report import EngineRefused, kv_tokens_in, refusal_in
from kaito.inference.engines.transformers_engine import TransformersEngine
from kaito.inference.engines.vllm_engine import VllmEngine
from kaito.inference.serve import REFUSED, add_serve_arguments, run_serve
from tests.inference.test_app import running
from tests.inference.test_vllm_engine import FAKE, free_port

V0_KV = (
    "ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be stored in KV "
    "cache (20480). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
)
V1_KV = (
    "(EngineCore_DP0 pid=7) ERROR 10-08 20:33:48 [core.py:708] ValueError: To serve at least one request with the "
    "models's max seq len (40960), (5.62 GiB KV cache is needed, which is larger than the available KV cache memory "
    "(4.50 GiB). Based on the available memory, the estimated maximum model length is 32768. Try increasing "
    "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
)
OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.96 GiB. GPU 0 has a total capacity of 79.1 GiB"


def test_vllms_refusals_are_read_with_their_numbers() -> None:
    v0 = refusal_in(["INFO loading", V0_KV])
    assert v0 == Refusal(KV_TOO_SMALL, V0_KV, max_model_len=32768, kv_cache_tokens=20480, fits_max_model_len=20480)
    v1 = refusal_in([V1_KV, "INFO shutting down"])
    assert v1 is not None and v1.reason == KV_TOO_SMALL
    assert (v1.max_model_len, v1.kv_cache_tokens, v1.fits_max_model_len) == (40960, None, 32768)
    assert v1.message.startswith("ValueError: To serve at least one request")
    none_left = refusal_in(["ValueError: No available memory for the cache blocks. Try increasing ..."])
    assert none_left is not None and (none_left.reason, none_left.kv_cache_tokens) == (KV_TOO_SMALL, 0)
    oom = refusal_in([OOM])
    assert oom is not None and oom.reason == OUT_OF_MEMORY and "Tried to allocate 1.96 GiB" in oom.message
    assert refusal_in(["RuntimeError: NCCL error", "INFO bye"]) is None


def test_kv_cache_size_is_read_from_either_vllm_log() -> None:
    assert kv_tokens_in("INFO [kv_cache_utils.py:1087] GPU KV cache size: 1,234,560 tokens") == 1234560
    assert kv_tokens_in("INFO worker.py:123] # GPU blocks: 7281, # CPU blocks: 2048", block_size=16) == 116496
    assert kv_tokens_in("INFO Maximum concurrency for 4096 tokens per request: 30.14x") is None


def test_the_termination_message_round_trips_and_fits_four_kib() -> None:
    refusal = Refusal(KV_TOO_SMALL, "x" * 10000, max_model_len=4096, kv_cache_tokens=100, fits_max_model_len=100)
    text = refusal.to_json()
    assert len(text.encode()) <= TERMINATION_BYTES
    back = Refusal.from_json(text)
    assert back is not None and back.message == refusal.message[: len(back.message)]
    assert (back.max_model_len, back.kv_cache_tokens, back.fits_max_model_len) == (4096, 100, 100)
    assert Refusal.from_json(Refusal(OUT_OF_MEMORY, OOM).to_json()) == Refusal(OUT_OF_MEMORY, OOM)
    assert Refusal.from_json("Error: something else") is None
    assert Refusal.from_json(json.dumps({"reason": "Other", "message": "m"})) is None


async def test_vllm_engine_reports_its_kv_cache_or_its_refusal(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    config = EngineConfig(model=str(model), served_model_name="tiny", max_model_len=4096)
    engine = VllmEngine(config, port=free_port(), command=[sys.executable, FAKE])
    try:
        await engine.load()
        assert (engine.kv_cache_tokens, engine.max_model_len) == (12345, 4096)
    finally:
        await engine.close()
    refusing = config.model_copy(update={"vllm": {"kv-too-small": True}})
    engine = VllmEngine(refusing, port=free_port(), command=[sys.executable, FAKE])
    with pytest.raises(EngineRefused) as raised:
        await engine.load()
    await engine.close()
    assert raised.value.refusal.reason == KV_TOO_SMALL
    assert (raised.value.refusal.max_model_len, raised.value.refusal.fits_max_model_len) == (4096, 1024)


async def test_transformers_engine_computes_its_kv_tokens_from_the_memory_it_allows(tiny_model_dir: Path) -> None:
    roomy = TransformersEngine(tiny_model_dir, served_model_name="tiny", max_model_len=64, kv_cache_memory=2**20)
    await roomy.load()
    per_token = 2**20 // roomy.kv_cache_tokens
    await roomy.close()
    assert roomy.kv_cache_tokens >= 64
    tight = TransformersEngine(
        tiny_model_dir, served_model_name="tiny", max_model_len=64, kv_cache_memory=per_token * 63
    )
    with pytest.raises(EngineRefused) as raised:
        await tight.load()
    await tight.close()
    refusal = raised.value.refusal
    assert (refusal.reason, refusal.max_model_len, refusal.kv_cache_tokens, refusal.fits_max_model_len) == (
        KV_TOO_SMALL,
        64,
        63,
        63,
    )


async def test_metrics_carry_what_the_engine_got(tiny_model_dir: Path) -> None:
    engine = TransformersEngine(tiny_model_dir, served_model_name="tiny", max_model_len=64, kv_cache_memory=2**20)
    async with running(engine) as server:
        status, text = await server.get("/metrics")
    assert status == 200
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["kaito_engine_max_model_len"] == 64
    assert values["kaito_engine_kv_cache_tokens"] == engine.kv_cache_tokens > 0


async def test_serve_exits_with_the_refusal_in_its_termination_message(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    message = tmp_path / "termination-log"
    argv = ["--model", str(tiny_model_dir), "--engine", "transformers", "--port", "0", "--max-model-len", "64"]
    argv += ["--kv-cache-memory", "1", "--termination-message-path", str(message)]
    assert await run_serve(parser.parse_args(argv)) == REFUSED
    refusal = Refusal.from_json(message.read_text())
    assert refusal is not None and refusal.reason == KV_TOO_SMALL and refusal.kv_cache_tokens == 0
    assert "max seq len (64)" in refusal.message
    assert f"({KV_TOO_SMALL})" in capsys.readouterr().err
