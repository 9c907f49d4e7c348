"""The engine config contract: built from a plan, through the ConfigMap and back, rendered to vLLM flags, and refused
with the field named when it is malformed."""

from __future__ import annotations

import pytest

from kaito.api.engine import CONFIG_KEY, EngineAdapter, EngineConfig, EngineConfigError, with_engine_args
from kaito.api.workspace import PlanStatus

TWO_NODES = PlanStatus(
    model="llama-3.1-8b-instruct",
    nodes=2,
    tensor_parallel_size=1,
    pipeline_parallel_size=2,
    data_parallel_size=1,
    dtype="float16",
    gpu_memory_utilization=0.93,
    max_model_len=8192,
    max_num_seqs=12,
    max_loras=2,
    max_lora_rank=16,
)


def test_the_plan_renders_as_engine_args_in_plan_order() -> None:
    plan = with_engine_args(TWO_NODES.model_copy(update={"max_num_batched_tokens": 2048, "kv_cache_dtype": "fp8"}))
    assert (plan.max_num_batched_tokens, plan.kv_cache_dtype) == (2048, "fp8")
    assert plan.engine_args == [
        "--tensor-parallel-size=1",
        "--pipeline-parallel-size=2",
        "--data-parallel-size=1",
        "--dtype=float16",
        "--gpu-memory-utilization=0.93",
        "--max-model-len=8192",
        "--max-num-seqs=12",
        "--max-num-batched-tokens=2048",
        "--kv-cache-dtype=fp8",
        "--enable-lora",
        "--max-loras=2",
        "--max-lora-rank=16",
        "--distributed-executor-backend=ray",
    ]
    plain = with_engine_args(
        TWO_NODES.model_copy(update={"max_loras": None, "max_num_batched_tokens": 1, "kv_cache_dtype": "auto"})
    )
    assert not any("lora" in flag or "kv-cache" in flag for flag in plain.engine_args or [])


def test_the_configmap_round_trips_the_config() -> None:
    plan = with_engine_args(TWO_NODES.model_copy(update={"max_num_batched_tokens": 2048, "kv_cache_dtype": "auto"}))
    adapters = [EngineAdapter(name="style", strength=0.5), EngineAdapter(name="tone")]
    config = EngineConfig.from_plan(
        plan, model="meta-llama/Llama-3.1-8B-Instruct", revision="abc", port=5000, adapters=adapters
    )
    data = config.to_configmap_data()
    assert list(data) == [CONFIG_KEY]
    back = EngineConfig.from_configmap_data(data)
    assert back == config
    assert (back.model, back.served_model_name, back.revision) == (
        "meta-llama/Llama-3.1-8B-Instruct",
        plan.model,
        "abc",
    )
    assert back.adapter_strengths == {"style": 0.5, "tone": 1.0}
    assert back.plan_flags() == plan.engine_args


def test_vllm_flags_lead_with_the_model_and_end_with_the_extra_flags() -> None:
    config = EngineConfig(
        model="org/m",
        revision="r1",
        max_loras=1,
        max_lora_rank=8,
        vllm={"enforce_eager": True, "swap-space": 4, "skip": False, "unset": None},
    )
    flags = config.vllm_flags(
        host="127.0.0.1", port=5001, download_dir="/w", local_model=False, lora_modules=[("a", "/a"), ("b", "/b")]
    )
    assert flags[:8] == ["--model", "org/m", "--served-model-name", "org/m", "--host", "127.0.0.1", "--port", "5001"]
    assert flags[8:12] == ["--revision", "r1", "--download-dir", "/w"]
    assert flags[12:] == [
        "--enable-lora",
        "--max-loras=2",
        "--max-lora-rank=8",
        "--lora-modules",
        "a=/a",
        "b=/b",
        "--enforce-eager",
        "--swap-space=4",
    ]
    local = config.vllm_flags(host="h", port=1, download_dir="/w", local_model=True)
    assert "--revision" not in local and "--download-dir" not in local and "--enable-lora" not in local
    with pytest.raises(EngineConfigError, match="no model"):
        EngineConfig().vllm_flags(host="h", port=1, download_dir=None, local_model=False)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("maxModelLen: lots\n", "maxModelLen", id="not-a-number"),
        pytest.param("adapters: [{name: a, strength: full}]\n", "adapters.0.strength", id="adapter-strength"),
        pytest.param("engine: tgi\n", "engine", id="unknown-engine"),
        pytest.param("engineArgs: [--max-model-len=4096]\n", "engineArgs", id="unknown-field"),
        pytest.param("vllm: {swap-space: [4]}\n", "swap-space", id="flag-value"),
    ],
)
def test_a_malformed_configmap_names_the_field(text: str, field: str) -> None:
    with pytest.raises(EngineConfigError) as caught:
        EngineConfig.from_configmap_data({CONFIG_KEY: text})
    assert str(caught.value).startswith(f"{CONFIG_KEY}: ") and field in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({}, "no key engine.yaml", id="no-key"),
        pytest.param({CONFIG_KEY: "- a list\n"}, "a mapping", id="not-a-mapping"),
        pytest.param({CONFIG_KEY: "model: [unclosed\n"}, "not valid YAML", id="bad-yaml"),
    ],
)
def test_an_unreadable_configmap_says_why(data: dict[str, str], message: str) -> None:
    with pytest.raises(EngineConfigError, match=message):
        EngineConfig.from_configmap_data(data)
