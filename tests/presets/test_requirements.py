"""Upstream's catalog breadth, hybrid/MoE/quantization facts, and the planner's compute-capability gate."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kaito.presets.catalog import Catalog, ModelSpec
from kaito.presets.choice import fitting, plan_for, provisionable
from kaito.presets.memory import kv_bytes_per_token_per_gpu
from kaito.presets.overrides import Overrides
from kaito.presets.sizing import PlanError, Request, plan

CATALOG = Catalog.builtin()
MODELS = sorted(CATALOG.models)

# Every model upstream's generated catalog (v0.12.0) lists beyond its 25 legacy presets.
UPSTREAM_CATALOG_ONLY = [
    "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16",
    "nvidia/Nemotron-Cascade-2-30B-A3B",
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
    "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16",
    "nvidia/NVIDIA-Nemotron-Nano-9B-v2",
    "nvidia/NVIDIA-Nemotron-3-Nano-4B-BF16",
    "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-NVFP4",
    "Qwen/Qwen3-8B-AWQ",
    "Qwen/Qwen3.5-2B",
    "Qwen/Qwen3.5-4B",
    "Qwen/Qwen3.5-9B",
    "Qwen/Qwen3.5-122B-A10B",
    "Qwen/Qwen3.5-122B-A10B-GPTQ-Int4",
    "Qwen/Qwen3.5-397B-A17B-GPTQ-Int4",
    "Qwen/Qwen3.6-35B-A3B",
    "Qwen/Qwen3.6-35B-A3B-FP8",
    "Qwen/Qwen3.6-27B",
    "Qwen/Qwen3.8-27B",
    "google/gemma-4-31B-it",
    "google/gemma-4-26B-A4B-it",
    "google/gemma-4-12B-it",
    "google/gemma-4-E4B-it",
    "google/gemma-4-E2B-it",
    "mistralai/Mistral-Small-4-119B-2603",
    "mistralai/Mistral-Small-4-119B-2603-NVFP4",
    "mistralai/Mistral-Medium-3.5-128B",
    "moonshotai/Kimi-K2.5",
    "moonshotai/Kimi-K2.6",
    "moonshotai/Kimi-K2.7-Code",
    "MiniMaxAI/MiniMax-M2.7",
    "deepseek-ai/DeepSeek-V4-Flash-0731",
    "deepseek-ai/DeepSeek-V4-Pro",
    "deepseek-ai/DeepSeek-V3.2",
    "zai-org/GLM-5.2-FP8",
    "ibm-granite/granite-4.1-8b",
]


@pytest.mark.parametrize("hf_id", UPSTREAM_CATALOG_ONLY)
def test_upstream_catalog_models_resolve_by_hf_id_and_short_name(hf_id: str) -> None:
    spec = CATALOG.model(hf_id)
    assert spec.hf_repo == hf_id
    # Upstream names a generated preset by the repo's last path segment, lowercased.
    assert spec.name == hf_id.rsplit("/", 1)[1].lower()
    assert CATALOG.model(spec.name) is spec


def test_catalog_is_as_broad_as_upstreams() -> None:
    assert len(UPSTREAM_CATALOG_ONLY) == 35 and len(CATALOG.models) >= 25 + 35


def test_hybrid_models_charge_only_their_attention_layers() -> None:
    nano = CATALOG.model("nvidia-nemotron-3-nano-30b-a3b-bf16")
    assert (nano.layers, nano.full_attention_layers, nano.kv_layers) == (52, 6, 6)
    assert nano.kv_bytes_per_token() == 2 * 6 * 2 * 128 * 2
    qwen = CATALOG.model("qwen3.6-35b-a3b")
    assert qwen.kv_bytes_per_token() == 2 * 10 * 2 * 256 * 2
    # Without a known split every layer is charged: never less than the real cache.
    assert CATALOG.model("qwen3.5-9b").kv_bytes_per_token() == 2 * 32 * 4 * 256 * 2


def test_pipeline_stages_charge_every_attention_layer_a_stage_could_hold() -> None:
    nano = CATALOG.model("nvidia-nemotron-3-nano-30b-a3b-bf16")
    per_layer = 2 * 2 * 128 * 2  # two KV heads of 128, K and V, two bytes
    assert kv_bytes_per_token_per_gpu(nano, tp=1, pp=1) == 6 * per_layer
    assert kv_bytes_per_token_per_gpu(nano, tp=1, pp=4) == 6 * per_layer  # 13 layers a stage: all 6 may fall in one
    llama = CATALOG.model("llama-3.3-70b-instruct")
    assert kv_bytes_per_token_per_gpu(llama, tp=8, pp=2) == 40 * 2 * 1 * 128 * 2


def test_moe_mla_and_quantization_kinds_are_recorded() -> None:
    assert (CATALOG.model("qwen3.5-397b-a17b-gptq-int4").experts, CATALOG.model("kimi-k2.5").experts_per_token) == (
        512,
        8,
    )
    assert CATALOG.model("qwen3.5-397b-a17b-gptq-int4").quantization == "gptq"
    assert CATALOG.model("qwen3-8b-awq").quantization == "awq"
    assert CATALOG.model("kimi-k2.5").kv_bytes_per_token() == 61 * (512 + 64) * 2
    assert CATALOG.model("mistral-small-4-119b-2603").kv_bytes_per_token() == 36 * (256 + 64) * 2
    nvfp4 = CATALOG.model("mistral-small-4-119b-2603-nvfp4")
    assert nvfp4.quantization == "nvfp4" and nvfp4.requires.fp4 and not nvfp4.requires.fp8
    v4 = CATALOG.model("deepseek-v4-pro")
    assert v4.quantization == "fp8-block" and v4.requires.fp8 and v4.requires.fp4


def test_requirements_mark_capability_formats_and_kernels() -> None:
    assert CATALOG.model("phi-4").min_compute_capability is None
    assert CATALOG.model("ministral-3-8b-instruct").min_compute_capability == 8.0
    for name in ("deepseek-v4-flash-0731", "deepseek-v4-pro", "deepseek-v3.2", "glm-5.2-fp8"):
        spec = CATALOG.model(name)
        assert spec.min_compute_capability == 9.0 and spec.requires.kernels == ("deepgemm",), name
    assert CATALOG.model("mistral-small-4-119b-2603").requires.kernels == ("flashinfer-nvcc",)
    assert CATALOG.model("deepseek-v4-flash-0731").requires.kv_cache_dtype == "fp8"


def _entry(**changes: Any) -> dict[str, Any]:
    return CATALOG.model("qwen3.6-35b-a3b").model_dump() | changes


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"full_attention_layers": 41}, "exceeds layers"),
        ({"experts_per_token": None}, "go together"),
        ({"experts_per_token": 300}, "exceeds experts"),
        ({"requires": {"kernels": ["deepgemm"]}}, "DeepGEMM"),
        ({"quantization": "fp8", "requires": {"compute_capability": 7.5}}, "Marlin"),
        ({"quantization": "int8"}, "quantization"),
        ({"requires": {"kernels": ["cutlass"]}}, "kernels"),
    ],
)
def test_inconsistent_entries_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelSpec.model_validate(_entry(**changes))


def test_quantized_weights_imply_their_format_requirement() -> None:
    spec = ModelSpec.model_validate(_entry(quantization="fp8", requires={"kernels": ["flashinfer-nvcc"]}))
    assert spec.requires.fp8 and spec.requires.kernels == ("flashinfer-nvcc",)
    assert ModelSpec.model_validate(spec.model_dump()) == spec


def test_explicit_instance_type_below_the_requirement_is_refused_naming_both() -> None:
    model = CATALOG.model("deepseek-v4-pro")
    with pytest.raises(PlanError) as info:
        plan_for(model, CATALOG, "Standard_ND96amsr_A100_v4", cloud="azure")
    text = str(info.value)
    assert "needs compute capability 9.0+" in text and "deepgemm" in text
    assert "A100" in text and "compute capability 8.0" in text
    assert info.value.path == "resource.instanceType"
    assert info.value.alternatives and all("H100" in a or "H200" in a for a in info.value.alternatives)


def test_cuda_kernels_are_refused_on_other_vendors() -> None:
    with pytest.raises(PlanError, match="CUDA kernels"):
        plan(CATALOG.model("glm-5.2-fp8"), CATALOG.sku("Standard_ND96isr_MI300X_v5"))


def test_a_required_fp8_kv_cache_is_planned_and_a_contrary_override_refused() -> None:
    model, sku = CATALOG.model("deepseek-v4-flash-0731"), CATALOG.sku("Standard_ND96isr_H200_v5")
    p = plan(model, sku)
    assert p.kv_cache_dtype == "fp8"
    assert p.memory.kv_bytes_per_token == kv_bytes_per_token_per_gpu(
        model, tp=p.layout.tp, pp=p.layout.pp, kv_dtype_bytes=1
    )
    with pytest.raises(PlanError, match="only a fp8 KV cache") as info:
        plan(model, sku, Request(overrides=Overrides(kv_cache_dtype="auto")))
    assert info.value.path.endswith("kv-cache-dtype")
    assert plan(model, sku, Request(overrides=Overrides(kv_cache_dtype="fp8_e4m3"))).kv_cache_dtype == "fp8_e4m3"


@settings(max_examples=60, deadline=None)
@given(model_name=st.sampled_from(MODELS), cloud=st.sampled_from(["azure", "aws", "arc"]))
def test_the_planner_never_chooses_a_gpu_below_the_models_requirement(model_name: str, cloud: str) -> None:
    model = CATALOG.model(model_name)
    need = model.min_compute_capability
    for choice in fitting(model, CATALOG, cloud):
        assert provisionable(choice.sku)
        cc = choice.sku.compute_capability
        assert need is None or (cc is not None and cc >= need), (model.name, choice.sku.name)
