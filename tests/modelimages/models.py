"""Tiny model directories for model image tests and benchmarks: random safetensors shards, config and tokenizer."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "hidden_size": 256,
    "intermediate_size": 688,
    "vocab_size": 1024,
    "max_position_embeddings": 2048,
    "torch_dtype": "bfloat16",
}


def write_shard(path: Path, size: int, *, seed: int) -> None:
    """A safetensors file of one BF16 tensor of random bytes, about `size` bytes in all."""
    elements = max(1, size // 2)
    header = json.dumps({"weight": {"dtype": "BF16", "shape": [elements], "data_offsets": [0, elements * 2]}})
    padded = header.encode() + b" " * (-len(header) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(padded)) + padded)
        remaining = elements * 2
        while remaining:
            step = min(remaining, 1 << 22)
            handle.write(rng.randbytes(step))
            remaining -= step


def make_model(directory: Path, *, shards: int = 3, shard_bytes: int = 300_000, seed: int = 0) -> Path:
    """A model directory: shards, config.json, tokenizer files, and a file in a subdirectory."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(shards):
        write_shard(directory / f"model-{index + 1:05d}-of-{shards:05d}.safetensors", shard_bytes, seed=seed + index)
    (directory / "config.json").write_text(json.dumps(CONFIG))
    (directory / "generation_config.json").write_text(json.dumps({"max_new_tokens": 32, "seed": seed}))
    (directory / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {f"t{i}": i for i in range(64)}}}))
    (directory / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 2048}))
    (directory / "original").mkdir(exist_ok=True)
    (directory / "original" / "params.json").write_text(json.dumps({"dim": 256, "seed": seed}))
    return directory


def files_of(directory: Path) -> dict[str, bytes]:
    """Every visible file's bytes by its path relative to the directory."""
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    }
