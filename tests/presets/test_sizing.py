"""The planner: worked examples, the README's V100 case, refusals with alternatives, and invariants over the catalog."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaito.presets.catalog import Catalog, SkuSpec
from kaito.presets.choice import Choice, fitting, plan_for
from kaito.presets.memory import GIB, flat_overhead_kv
from kaito.presets.overrides import OverrideError, Overrides
from kaito.presets.sizing import Plan, PlanError, Request, plan, valid_tensor_parallel
from kaito.workspaces.plan import plan_status

CATALOG = Catalog.builtin()
MODELS = sorted(CATALOG.models)
SKUS = sorted(CATALOG.skus)


def engine_args(sku: SkuSpec, p: Plan) -> list[str]:
    """The vLLM flags `status.plan.engineArgs` records for the plan."""
    return plan_status(Choice(sku, p, "")).engine_args or []


@pytest.mark.parametrize(
    ("model", "sku", "tp", "util", "load", "budget_gib", "kv_gib", "kv_tokens"),
    [
        pytest.param("phi-3-mini-4k-instruct", "Standard_NC6s_v3", 1, 0.90, 1.02, 14.20, 4.3, 11_900, id="phi3-v100"),
        pytest.param(
            "phi-3-mini-4k-instruct", "Standard_NC6s_v3", 1, 0.95, 1.02, 14.99, 5.1, 14_000, id="phi3-v100-.95"
        ),
        pytest.param(
            "llama-3.1-8b-instruct", "Standard_NC24ads_A100_v4", 1, 0.90, 1.0, 71.3, 53.7, 440_000, id="l8-a100"
        ),
        pytest.param(
            "llama-3.1-8b-instruct", "Standard_NC24ads_A100_v4", 1, 0.95, 1.0, 75.2, 57.7, 472_000, id="l8-.95"
        ),
        pytest.param("llama-3.1-8b-instruct", "Standard_NV36ads_A10_v5", 1, 0.90, 1.0, 20.2, 2.65, 21_700, id="l8-a10"),
        pytest.param(
            "llama-3.1-8b-instruct", "Standard_NV36ads_A10_v5", 1, 0.82, 1.0, 18.4, 0.85, 7_000, id="l8-a10-.82"
        ),
        pytest.param(
            "llama-3.1-8b-instruct", "Standard_NV72ads_A10_v5", 2, 0.90, 1.0, 20.2, 10.2, 166_000, id="l8-2xa10"
        ),
        pytest.param(
            "llama-3.3-70b-instruct", "Standard_ND96amsr_A100_v4", 8, 0.90, 1.02, 71.3, 51.5, 1_350_000, id="l70"
        ),
        pytest.param("llama-3.3-70b-instruct", "Standard_ND96asr_v4", 8, 0.90, 1.02, 35.5, 15.7, 412_000, id="l70-40g"),
        pytest.param(
            "llama-3.3-70b-instruct", "Standard_NC80adis_H100_v5", 2, 0.90, 1.02, 83.7, 13.7, 90_000, id="l70-h100"
        ),
    ],
)
def test_worked_examples_within_tolerance(
    model: str, sku: str, tp: int, util: float, load: float, budget_gib: float, kv_gib: float, kv_tokens: int
) -> None:
    """The published worked examples (flat 2.6 GiB overhead): budget within 1 %, KV within 0.6 GiB, tokens within 6 %.

    The table loads the weights at 1.00x of their size in the Llama-8B rows and 1.02x elsewhere; `load` follows it.
    """
    mem = flat_overhead_kv(
        CATALOG.model(model), CATALOG.sku(sku), tp=tp, utilization=util, overhead_gib=2.6, load_factor=load
    )
    assert mem.budget / GIB == pytest.approx(budget_gib, rel=0.01)
    assert mem.kv_bytes / GIB == pytest.approx(kv_gib, abs=0.6)  # the table adds ~0.4 GiB per GPU beyond one
    assert mem.kv_tokens == pytest.approx(kv_tokens, rel=0.06)


def test_readme_example_plans_a_v100_that_vllm_starts_on() -> None:
    model, sku = CATALOG.model("phi-3-mini-4k-instruct"), CATALOG.sku("Standard_NC6s_v3")
    p = plan(model, sku)
    assert (p.layout.tp, p.layout.pp, p.layout.dp, p.nodes) == (1, 1, 1, 1)
    assert p.dtype == "float16"  # V100 is compute capability 7.0: no bfloat16
    assert p.max_model_len == 4096
    assert p.gpu_memory_utilization <= 0.95
    # vLLM refuses to start when free memory < util x total; leave room for the CUDA context (~0.5 GiB).
    assert sku.gpu_memory_gib * (1 - p.gpu_memory_utilization) >= 0.5
    # Even with the pessimistic flat 2.6 GiB overhead, the cache holds two full-length requests at this util.
    flat = flat_overhead_kv(model, sku, tp=1, utilization=p.gpu_memory_utilization, overhead_gib=2.6)
    assert flat.kv_tokens >= 2 * p.max_model_len
    assert "--dtype=float16" in engine_args(sku, p) and "--max-model-len=4096" in engine_args(sku, p)
    assert any("float16" in line for line in p.explanation)


def test_heads_decide_tensor_parallel() -> None:
    qwen = CATALOG.model("qwen2.5-coder-7b-instruct")
    assert [tp for tp in (1, 2, 4, 7, 8) if valid_tensor_parallel(qwen, tp)] == [1, 2, 4] or not valid_tensor_parallel(
        qwen, 8
    )
    p = plan(qwen, CATALOG.sku("Standard_ND96amsr_A100_v4"))
    assert qwen.attention_heads % p.layout.tp == 0
    assert p.layout.tp * p.layout.dp <= 8


def test_smallest_tensor_parallel_then_data_parallel() -> None:
    p = plan(CATALOG.model("llama-3.1-8b-instruct"), CATALOG.sku("Standard_ND96amsr_A100_v4"))
    assert (p.layout.tp, p.layout.dp) == (1, 8)
    assert p.concurrency_at(8192) > 8 * 20


def test_big_model_needs_tensor_parallel() -> None:
    p = plan(CATALOG.model("llama-3.3-70b-instruct"), CATALOG.sku("Standard_ND96amsr_A100_v4"))
    assert p.layout.tp in (2, 4, 8) and p.layout.tp * p.layout.dp == 8
    assert p.kv_cache_tokens >= p.max_model_len


def test_refusal_names_skus_that_fit() -> None:
    model = CATALOG.model("llama-3.3-70b-instruct")
    with pytest.raises(PlanError) as info:
        plan_for(model, CATALOG, "Standard_NC6s_v3", cloud="azure")
    assert info.value.path == "resource.instanceType"
    assert "does not fit Standard_NC6s_v3" in str(info.value)
    assert info.value.alternatives and all(name in CATALOG.skus for name in info.value.alternatives)
    for name in info.value.alternatives:
        plan(model, CATALOG.sku(name))  # each alternative really fits


def test_auto_picks_the_cheapest_that_fits() -> None:
    model = CATALOG.model("phi-3-mini-4k-instruct")
    choice = plan_for(model, CATALOG, "auto", cloud="azure")
    options = fitting(model, CATALOG, "azure")
    priced = [c for c in options if c.sku.hourly_price_usd is not None]
    assert priced, "the catalog should price some azure SKUs"
    assert choice.sku.name == min(priced, key=lambda c: (c.sku.hourly_price_usd or 0) * c.plan.nodes).sku.name
    assert "cheapest" in choice.reason
    assert choice.sku.retired is None


def test_user_overrides_are_honoured_or_refused() -> None:
    model, sku = CATALOG.model("llama-3.1-8b-instruct"), CATALOG.sku("Standard_NC24ads_A100_v4")
    pinned = plan(model, sku, Request(overrides=Overrides(max_model_len=32768, max_num_seqs=64)))
    assert (pinned.max_model_len, pinned.max_num_seqs) == (32768, 64)
    with pytest.raises(PlanError, match="exceeds"):
        plan(model, sku, Request(overrides=Overrides(max_model_len=10**6)))
    long_context = Request(overrides=Overrides(max_model_len=131072))
    spread = plan(CATALOG.model("llama-3.1-8b-instruct"), CATALOG.sku("Standard_NV36ads_A10_v5"), long_context)
    assert spread.nodes > 1 and spread.layout.pp == spread.nodes and "one node cannot hold" in spread.explanation[2]
    with pytest.raises(PlanError, match="does not fit"):
        plan(
            CATALOG.model("llama-3.1-8b-instruct"),
            CATALOG.sku("Standard_NV36ads_A10_v5"),
            Request(overrides=Overrides(max_model_len=131072), max_nodes=1),
        )
    with pytest.raises(PlanError, match="allowed here"):
        plan(
            CATALOG.model("qwen2.5-coder-7b-instruct"),
            CATALOG.sku("Standard_ND96amsr_A100_v4"),
            Request(overrides=Overrides(tensor_parallel_size=8)),
        )
    with pytest.raises(PlanError, match="bfloat16"):
        plan(
            CATALOG.model("phi-3-mini-4k-instruct"),
            CATALOG.sku("Standard_NC6s_v3"),
            Request(overrides=Overrides(dtype="bfloat16")),
        )


def test_override_parsing_names_the_key() -> None:
    text = "vllm:\n  max-model-len: 8192\n  gpu-memory-utilization: 0.9\n  swap-space: 4\n"
    assert Overrides.from_config_text(text) == Overrides(max_model_len=8192, gpu_memory_utilization=0.9)
    with pytest.raises(OverrideError, match="max-lora-rank"):
        Overrides.from_config_text("vllm:\n  max-lora-rank: 12\n")
    with pytest.raises(OverrideError, match="max-model-len"):
        Overrides.from_config_text("vllm:\n  max-model-len: auto\n")


def test_lora_slots_cost_kv_cache() -> None:
    model, sku = CATALOG.model("llama-3.1-8b-instruct"), CATALOG.sku("Standard_NC24ads_A100_v4")
    plain, with_lora = plan(model, sku), plan(model, sku, Request(adapters=4))
    assert with_lora.max_loras == 4 and "--enable-lora" in engine_args(sku, with_lora)
    # ~80 MiB per rank-16 slot for Llama-3.1-8B (from vLLM's LoRA slot shapes): 4 slots ~ 320 MiB
    assert with_lora.memory.lora / 2**20 == pytest.approx(4 * 80, rel=0.1)
    assert with_lora.kv_cache_tokens < plain.kv_cache_tokens


def test_deprecated_and_quantized_models_are_refused_where_they_cannot_run() -> None:
    with pytest.raises(PlanError, match="deprecated"):
        plan(CATALOG.model("falcon-7b"), CATALOG.sku("Standard_NC24ads_A100_v4"))
    with pytest.raises(PlanError, match="compute capability"):
        plan(CATALOG.model("gpt-oss-20b"), CATALOG.sku("Standard_NC4as_T4_v3"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_name=st.sampled_from(MODELS), sku_name=st.sampled_from(SKUS))
def test_every_pair_plans_soundly_or_explains(model_name: str, sku_name: str) -> None:
    model, sku = CATALOG.model(model_name), CATALOG.sku(sku_name)
    try:
        p = plan(model, sku)
    except PlanError as exc:
        assert exc.path and str(exc)
        return
    mem = p.memory
    assert model.attention_heads % p.layout.tp == 0
    assert p.layout.gpus_per_replica * p.layout.dp <= sku.gpu_count * p.nodes
    assert mem.weights + mem.activation + mem.non_torch + mem.cuda_graphs + mem.lora + mem.kv_bytes == mem.budget
    assert mem.budget <= mem.visible
    assert p.max_model_len <= model.max_position_embeddings
    assert p.kv_cache_tokens >= p.max_model_len
    assert 1 <= p.max_num_seqs <= 1024
    assert len(p.explanation) >= 8


@settings(max_examples=100, deadline=None)
@given(model_name=st.sampled_from(MODELS), factor=st.floats(min_value=1.0, max_value=3.0))
def test_more_gpu_memory_never_needs_more_nodes_or_gives_less_kv(model_name: str, factor: float) -> None:
    model = CATALOG.model(model_name)
    base = CATALOG.sku("Standard_NC24ads_A100_v4")
    bigger = base.model_copy(update={"gpu_memory_gib": base.gpu_memory_gib * factor})
    try:
        small = plan(model, base)
    except PlanError:
        return
    large = plan(model, bigger)
    assert large.nodes <= small.nodes
    if large.nodes == small.nodes:
        assert large.kv_cache_tokens * large.layout.dp >= small.kv_cache_tokens * small.layout.dp
