"""A hybrid's per-sequence recurrent state from config.json: Mamba-2 (NemotronH), Gated DeltaNet (Qwen3-Next)."""

from __future__ import annotations

from typing import Any

from kaito.api.modelconfig import config_facts
from tests.hub import llama_config

NEMOTRON_PATTERN = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"  # 23 M, 23 E (MoE), 6 * (attention)


def nemotron_h(**extra: Any) -> dict[str, Any]:
    return llama_config(
        architectures=["NemotronHForCausalLM"],
        model_type="nemotron_h",
        num_hidden_layers=52,
        hybrid_override_pattern=NEMOTRON_PATTERN,
        mamba_num_heads=64,
        mamba_head_dim=64,
        ssm_state_size=128,
        n_groups=8,
        conv_kernel=4,
        **extra,
    )


def qwen3_next(**extra: Any) -> dict[str, Any]:
    return llama_config(
        architectures=["Qwen3NextForCausalLM"],
        model_type="qwen3_next",
        num_hidden_layers=48,
        layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 12,
        linear_num_key_heads=16,
        linear_num_value_heads=32,
        linear_key_head_dim=128,
        linear_value_head_dim=128,
        linear_conv_kernel_dim=4,
        **extra,
    )


def state(config: dict[str, Any]) -> int | None:
    found: int | None = config_facts(config, source="org/m config.json")["state_bytes_per_sequence"]
    return found


def test_nemotron_h_charges_conv_window_and_float32_ssm_state_per_mamba_layer() -> None:
    # Per 'M' layer: conv (4 - 1) x (64 x 64 + 2 x 8 x 128) = 3 x 6144 = 18432 bf16 values = 36864 B;
    # SSM 64 heads x 64 x 128 = 524288 values in float32 (vLLM's NemotronH default) = 2097152 B.
    # 2134016 B a layer x 23 Mamba layers ('E' and '*' layers keep none) = 49082368 B.
    assert state(nemotron_h()) == 49_082_368
    # A config that names the SSM cache dtype gets it: bf16 halves the SSM part, 23 x (36864 + 1048576).
    assert state(nemotron_h(mamba_ssm_cache_dtype="bfloat16")) == 23 * (36_864 + 1_048_576)


def test_gated_delta_net_charges_conv_over_qkv_and_the_recurrent_state() -> None:
    # Per linear-attention layer: conv (4 - 1) x (2 x 16 x 128 + 32 x 128) = 3 x 8192 = 24576 bf16 = 49152 B;
    # recurrent 32 value heads x 128 x 128 = 524288 bf16 = 1048576 B. 1097728 B x 36 linear layers = 39518208 B.
    assert state(qwen3_next()) == 39_518_208
    # Qwen3.5 names its recurrent-state dtype (mamba_ssm_dtype): float32 doubles that part, 36 x (49152 + 2097152).
    assert state(qwen3_next(mamba_ssm_dtype="float32")) == 36 * (49_152 + 2_097_152)
    # Multimodal checkpoints keep the numbers under text_config.
    wrapped = {"architectures": ["Qwen3_5ForConditionalGeneration"], "text_config": qwen3_next()}
    assert state(wrapped) == 39_518_208


def test_models_without_recurrent_layers_or_numbers_carry_none() -> None:
    assert state(llama_config()) is None
    assert state(llama_config(num_hidden_layers=48, full_attention_interval=4)) is None  # split known, shapes not
    incomplete = nemotron_h()
    del incomplete["n_groups"]
    assert state(incomplete) is None


def test_jamba_mamba1_and_falcon_h1_parallel_layers() -> None:
    # Jamba: 1 attention layer in 8; Mamba-1 with intermediate 2 x 4096 = 8192:
    # conv 3 x 8192 bf16 = 49152 B, SSM 8192 x 16 bf16 = 262144 B; 311296 B x 28 Mamba layers of 32.
    jamba = llama_config(
        num_hidden_layers=32, hidden_size=4096, attn_layer_period=8, mamba_expand=2, mamba_d_state=16, mamba_d_conv=4
    )
    assert state(jamba) == 28 * 311_296
    # Falcon-H1 runs Mamba-2 beside attention in every layer: conv 3 x (4096 + 2 x 1 x 256) bf16 = 27648 B,
    # SSM 32 x 128 x 256 bf16 = 2097152 B; x all 4 layers.
    falcon = llama_config(
        model_type="falcon_h1",
        num_hidden_layers=4,
        mamba_n_heads=32,
        mamba_d_head=128,
        mamba_d_state=256,
        mamba_n_groups=1,
        mamba_d_conv=4,
        mamba_expand=2,
        mamba_d_ssm=4096,
    )
    assert state(falcon) == 4 * (27_648 + 2_097_152)
