"""Session-wide tiny model and adapters for inference tests, plus a freshly loaded engine per test (~50 ms)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kaito.inference.engines.transformers_engine import TransformersEngine
from kaito.inference.tinymodel import make_tiny_adapter, make_tiny_model

SERVED_NAME = "tiny"
# tiny-lora-zero and tiny-lora-env are copies of tiny-lora switched off in two ways; tiny-lora's explicit 1.0
# must beat the environment's 0.
ADAPTER_STRENGTHS = {"tiny-lora": 1.0, "tiny-lora-zero": 0.0}
ADAPTER_ENV = {"tiny-lora": "0", "tiny-lora-env": "0"}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_adapters_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """tiny-lora, tiny-lora-zero, tiny-lora-env (same weights), and notes/ which has no adapter_config.json."""
    root = tmp_path_factory.mktemp("adapters")
    make_tiny_adapter(tiny_model_dir, root / "tiny-lora")
    for copy in ("tiny-lora-zero", "tiny-lora-env"):
        shutil.copytree(root / "tiny-lora", root / copy)
    (root / "notes").mkdir()
    (root / "notes" / "README").write_text("not an adapter")
    return root


@pytest.fixture
async def tiny_engine(tiny_model_dir: Path, tiny_adapters_dir: Path) -> AsyncIterator[TransformersEngine]:
    engine = TransformersEngine(
        tiny_model_dir,
        served_model_name=SERVED_NAME,
        adapters_dir=tiny_adapters_dir,
        adapter_strengths=ADAPTER_STRENGTHS,
        environ=ADAPTER_ENV,
        max_concurrency=2,
    )
    await engine.load()
    yield engine
    await engine.close()
