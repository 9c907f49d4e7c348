"""A model directory's sizing facts: read from config.json and safetensors headers, in the catalog's own terms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaito.api.modelimage import ModelDescriptionError, ModelImageConfig, describe_model, layer_media_type
from kaito.presets.models import ModelSpec
from tests.modelimages.models import CONFIG, make_model


def test_the_numbers_come_from_config_json_and_the_shards(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", shards=2, shard_bytes=400_000)
    config = describe_model(model, source_repository="org/tiny", revision="abc")
    assert (config.layers, config.attention_heads, config.kv_heads, config.head_dim) == (4, 8, 2, 32)
    assert (config.hidden_size, config.intermediate_size, config.vocab_size) == (256, 688, 1024)
    assert config.weight_bytes == sum(p.stat().st_size for p in model.glob("*.safetensors"))
    assert config.parameters_b == 0.001  # 400k BF16 elements, rounded up to the smallest figure
    assert config.architectures == ("LlamaForCausalLM",) and config.dtype == "bfloat16"
    assert ModelImageConfig.from_blob(config.to_blob()) == config
    assert b'"kvHeads":2' in config.to_blob()
    spec = ModelSpec(name="tiny", hf_repo="org/tiny", **config.sizing_fields())  # the planner's own type
    assert spec.kv_bytes_per_token() == 2 * 4 * 2 * 32 * 2


def test_mla_sliding_windows_and_quantization_are_read(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", shards=1)
    extra = {
        "kv_lora_rank": 512,
        "qk_rope_head_dim": 64,
        "sliding_window": 4096,
        "layer_types": ["sliding_attention", "full_attention"] * 2,
        "quantization_config": {"quant_method": "fp8"},
    }
    (model / "config.json").write_text(json.dumps({**CONFIG, **extra}))
    config = describe_model(model)
    assert (config.kv_layout, config.kv_lora_rank, config.qk_rope_head_dim) == ("mla", 512, 64)
    assert (config.sliding_window, config.sliding_window_pattern, config.quantization) == (4096, 2, "fp8")


def test_what_cannot_be_sized_is_refused_by_name(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", shards=1)
    (model / "config.json").write_text(json.dumps({**CONFIG, "quantization_config": {"quant_method": "bitsandbytes"}}))
    with pytest.raises(ModelDescriptionError, match="bitsandbytes"):
        describe_model(model)
    (model / "config.json").write_text(json.dumps({"architectures": ["X"]}))
    with pytest.raises(ModelDescriptionError, match="num_hidden_layers"):
        describe_model(model)
    for shard in model.glob("*.safetensors"):
        shard.unlink()
    with pytest.raises(ModelDescriptionError, match="safetensors"):
        describe_model(model)


def test_layers_are_typed_by_file() -> None:
    assert layer_media_type("sub/model.safetensors").endswith(".safetensors")
    assert layer_media_type("tokenizer.json").endswith("+json")
    assert layer_media_type("tokenizer.model") == "application/vnd.kaito.model.layer.v1"
