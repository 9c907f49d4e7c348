"""The OpenAI client against `kaito serve` on the vLLM engine, on the tiny model — only where vLLM and a GPU exist."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
from pathlib import Path

import aiohttp
import openai
import pytest
import torch

from kaito.api.engine import EngineConfig
from kaito.inference.app import create_app
from kaito.inference.engines.vllm_engine import VllmEngine
from kaito.inference.serve import serving

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (optional extra)"),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_openai_client_through_vllm(tiny_model_dir: Path) -> None:
    config = EngineConfig(
        model=str(tiny_model_dir),
        served_model_name="tiny",
        max_model_len=256,
        gpu_memory_utilization=0.3,
        dtype="float16",
    )
    engine = VllmEngine(config, port=free_port(), startup_timeout=600)
    app = create_app(engine)
    async with serving(app, host="127.0.0.1", port=0) as port:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):  # vLLM's start (weights, profiling, graphs) takes a while even for a tiny model
                async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(1)
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        reply = await client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=8, temperature=0
        )
        assert reply.usage is not None and reply.usage.completion_tokens <= 8
        stream = await client.completions.create(model="tiny", prompt="hello", max_tokens=8, stream=True)
        texts = [chunk.choices[0].text async for chunk in stream if chunk.choices]
        assert texts
