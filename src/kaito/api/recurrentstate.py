"""The fixed state a hybrid's Mamba and linear-attention layers keep per sequence, read off its config.json.

vLLM keeps, for every sequence, one convolution window and one recurrent state per such layer, whatever the
sequence's length; the planner charges it for every sequence slot. The shapes are vLLM's (per layer, before
tensor parallelism, which splits both by heads / channels):

- Mamba-2 (NemotronH, Granite 4 hybrids, Falcon-H1, Bamba): conv (d_conv - 1) x (intermediate + 2 x n_groups x
  d_state); SSM n_heads x head_dim x d_state.
- Mamba-1 (Jamba): conv (d_conv - 1) x intermediate; SSM intermediate x d_state.
- Gated DeltaNet (Qwen3-Next, Qwen3.5): conv (kernel - 1) x (2 x key_heads x key_dim + value_heads x value_dim);
  recurrent value_heads x value_dim x key_dim.

Dtypes: the convolution window is kept in the model's dtype; the recurrent (SSM) state too, except where vLLM
reads it from the config: NemotronH's `mamba_ssm_cache_dtype` (float32 when absent), Qwen3.5's `mamba_ssm_dtype`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
# layer_types / layers_block_type entries whose layers keep a recurrent state rather than a KV cache.
STATE_LAYER_KINDS = frozenset({"mamba", "mamba2", "linear_attention"})


def _int(config: Mapping[str, Any], *keys: str) -> int | None:
    value = next((config[key] for key in keys if config.get(key) is not None), None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def state_layers(config: Mapping[str, Any], *, layers: int) -> int:
    """How many layers keep a recurrent state: from layer_types, a layer pattern or an attention period."""
    for key in ("layer_types", "layers_block_type"):
        kinds = config.get(key)
        if isinstance(kinds, list) and kinds:
            return sum(1 for kind in kinds if str(kind) in STATE_LAYER_KINDS)
    pattern = config.get("hybrid_override_pattern")  # NemotronH: 'M' is a Mamba-2 layer
    if isinstance(pattern, str) and pattern:
        return pattern.count("M")
    if config.get("model_type") == "falcon_h1":
        return layers  # parallel hybrid: every layer runs attention and Mamba-2 side by side
    period = _int(config, "full_attention_interval", "attn_layer_period")
    return layers - layers // period if period else 0


def state_bytes_per_sequence(config: Mapping[str, Any], *, layers: int, dtype: str) -> int | None:
    """Bytes of recurrent state one sequence keeps across all layers (before tensor parallelism), or None.

    None when the model keeps no such state or its config lacks a number the shapes need.
    """
    count = state_layers(config, layers=layers)
    per_layer = _gated_delta_net(config, dtype) or _mamba2(config, dtype) or _mamba1(config, dtype)
    if not count or per_layer is None:
        return None
    return count * per_layer


def _ssm_bytes(config: Mapping[str, Any], dtype: str) -> int:
    named = config.get("mamba_ssm_cache_dtype") or config.get("mamba_ssm_dtype")
    if named is None and config.get("model_type") == "nemotron_h":
        named = "float32"  # vLLM's NemotronH default: "only float32 is known to have no accuracy issues"
    default = DTYPE_BYTES.get(dtype, 2)
    return DTYPE_BYTES.get(str(named), default) if named else default


def _gated_delta_net(config: Mapping[str, Any], dtype: str) -> int | None:
    key_heads = _int(config, "linear_num_key_heads")
    value_heads = _int(config, "linear_num_value_heads")
    key_dim = _int(config, "linear_key_head_dim")
    value_dim = _int(config, "linear_value_head_dim")
    kernel = _int(config, "linear_conv_kernel_dim")
    if not (key_heads and value_heads and key_dim and value_dim and kernel):
        return None
    conv = (kernel - 1) * (2 * key_heads * key_dim + value_heads * value_dim) * DTYPE_BYTES.get(dtype, 2)
    return conv + value_heads * value_dim * key_dim * _ssm_bytes(config, dtype)


def _mamba2(config: Mapping[str, Any], dtype: str) -> int | None:
    heads = _int(config, "mamba_num_heads", "mamba_n_heads")
    head_dim = _int(config, "mamba_head_dim", "mamba_d_head")
    d_state = _int(config, "ssm_state_size", "mamba_d_state")
    groups = _int(config, "n_groups", "mamba_n_groups")
    kernel = _int(config, "conv_kernel", "mamba_d_conv")
    if not (heads and head_dim and d_state and groups and kernel):
        return None
    inner = _int(config, "mamba_d_ssm") or heads * head_dim
    conv = (kernel - 1) * (inner + 2 * groups * d_state) * DTYPE_BYTES.get(dtype, 2)
    return conv + heads * head_dim * d_state * _ssm_bytes(config, dtype)


def _mamba1(config: Mapping[str, Any], dtype: str) -> int | None:
    expand = _int(config, "mamba_expand")
    hidden = _int(config, "hidden_size")
    d_state = _int(config, "mamba_d_state")
    kernel = _int(config, "mamba_d_conv")
    if not (expand and hidden and d_state and kernel):
        return None
    inner = expand * hidden
    return (kernel - 1) * inner * DTYPE_BYTES.get(dtype, 2) + inner * d_state * _ssm_bytes(config, dtype)
