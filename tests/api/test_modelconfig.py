"""config.json -> the numbers a preset carries: the usual variants of attention, experts, hybrids and formats."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.api.modelconfig import ModelDescriptionError, config_facts
from kaito.presets.catalog import Catalog
from kaito.presets.models import ModelSpec
from tests.hub import llama_config


def facts(config: dict[str, Any], stored: frozenset[str] = frozenset()) -> dict[str, Any]:
    return config_facts(config, source="org/m config.json", stored_dtypes=stored)


def as_spec(config: dict[str, Any]) -> ModelSpec:
    found = facts(config)
    found.pop("model_type")
    return ModelSpec(name="org/m", parameters_b=1.0, weight_bytes=2_000_000_000, **found)


def test_gqa_reads_kv_heads_and_derives_head_dim() -> None:
    found = facts(llama_config())
    assert (found["attention_heads"], found["kv_heads"], found["head_dim"]) == (8, 2, 64)
    assert found["architectures"] == ("LlamaForCausalLM",) and found["dtype"] == "bfloat16"
    assert found["full_attention_layers"] is None and "experts" not in found
    assert as_spec(llama_config()).kv_bytes_per_token() == 2 * 4 * 2 * 64 * 2


def test_multi_query_and_missing_kv_heads() -> None:
    config = llama_config(num_key_value_heads=None)
    assert facts(config)["kv_heads"] == 8  # no GQA: one KV head per head
    assert facts({**config, "multi_query": True})["kv_heads"] == 1


def test_mla_keeps_the_latent_and_the_rotary_key() -> None:
    config = llama_config(
        architectures=["DeepseekV3ForCausalLM"],
        num_attention_heads=128,
        num_key_value_heads=128,
        kv_lora_rank=512,
        qk_rope_head_dim=64,
        qk_nope_head_dim=128,
        n_routed_experts=256,
        num_experts_per_tok=8,
    )
    found = facts(config)
    assert found["kv_layout"] == "mla" and (found["kv_lora_rank"], found["qk_rope_head_dim"]) == (512, 64)
    assert found["head_dim"] == 192 and (found["experts"], found["experts_per_token"]) == (256, 8)
    assert as_spec(config).kv_bytes_per_token() == 4 * (512 + 64) * 2


@pytest.mark.parametrize("key", ["num_experts", "n_routed_experts", "num_local_experts"])
def test_moe_expert_counts_under_each_name(key: str) -> None:
    found = facts(llama_config(**{key: 64, "num_experts_per_tok": 4}))
    assert (found["experts"], found["experts_per_token"]) == (64, 4)


def test_a_dense_config_with_zero_experts_is_dense_and_experts_without_top_k_are_refused() -> None:
    assert "experts" not in facts(llama_config(num_experts=0))
    with pytest.raises(ModelDescriptionError, match="num_experts_per_tok"):
        facts(llama_config(num_experts=8))


def test_sliding_window_with_its_global_period() -> None:
    types = ["sliding_attention"] * 5 + ["full_attention"]
    found = facts(llama_config(sliding_window=1024, layer_types=types * 2, num_hidden_layers=12))
    assert (found["sliding_window"], found["sliding_window_pattern"]) == (1024, 6)
    assert found["full_attention_layers"] is None  # sliding layers keep a KV cache too: not a hybrid
    assert "sliding_window" not in facts(llama_config(sliding_window=4096, use_sliding_window=False))


def test_hybrid_layer_types_count_only_attention_layers() -> None:
    types = ["linear_attention"] * 3 + ["full_attention"]
    found = facts(llama_config(num_hidden_layers=8, layer_types=types * 2))
    assert found["full_attention_layers"] == 2
    assert as_spec(llama_config(num_hidden_layers=8, layer_types=types * 2)).kv_layers == 2


def test_hybrid_interval_and_nemotron_pattern() -> None:
    assert facts(llama_config(num_hidden_layers=48, full_attention_interval=4))["full_attention_layers"] == 12
    pattern = "M-M-M*-M-M-M*-"
    found = facts(llama_config(num_hidden_layers=len(pattern), hybrid_override_pattern=pattern))
    assert found["full_attention_layers"] == 2


def test_multimodal_text_config_holds_the_language_model() -> None:
    config = {
        "architectures": ["Mistral3ForConditionalGeneration"],
        "model_type": "mistral3",
        "text_config": llama_config(num_hidden_layers=40, hidden_size=5120, num_attention_heads=32, head_dim=128),
        "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24},
    }
    found = facts(config)
    assert found["architectures"] == ("Mistral3ForConditionalGeneration",) and found["model_type"] == "mistral3"
    assert (found["layers"], found["hidden_size"], found["head_dim"]) == (40, 5120, 128)


@pytest.mark.parametrize(
    ("quant", "expected"),
    [
        ({"quant_method": "fp8"}, "fp8"),
        ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "fp8-block"),
        ({"quant_method": "mxfp4"}, "mxfp4"),
        ({"quant_method": "awq", "bits": 4}, "awq"),
        ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4"),
        ({"quant_method": "compressed-tensors", "format": "pack-quantized"}, "int4"),
    ],
)
def test_quantization_formats(quant: dict[str, Any], expected: str) -> None:
    assert facts(llama_config(quantization_config=quant))["quantization"] == expected


def test_an_unknown_quantization_or_dtype_names_the_key() -> None:
    with pytest.raises(ModelDescriptionError, match="quant_method 'bitsandbytes'"):
        facts(llama_config(quantization_config={"quant_method": "bitsandbytes"}))
    with pytest.raises(ModelDescriptionError, match="torch_dtype 'int8'"):
        facts(llama_config(torch_dtype="int8"))
    assert facts(llama_config(torch_dtype=None), frozenset({"F16"}))["dtype"] == "float16"


def test_missing_sizes_are_named() -> None:
    with pytest.raises(ModelDescriptionError, match="no layers"):
        facts({"hidden_size": 8, "num_attention_heads": 2})


def test_every_catalog_architecture_is_one_vllm_serves() -> None:
    from kaito.presets.architectures import served_architectures, unserved

    for model in Catalog.builtin().models.values():
        assert model.architectures, model.name
        assert unserved(model.architectures) is None, model.name
    assert "LlamaForCausalLM" in served_architectures()
    why = unserved(["BertForMaskedLM"])
    assert why is not None and "BertForMaskedLM" in why
