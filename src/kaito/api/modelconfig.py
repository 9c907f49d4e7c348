"""A checkpoint's config.json as the numbers a preset carries: one derivation for model images and the hub.

`kaito push-model` describes a model directory with it and the operator sizes a Hugging Face model the catalog
lacks with it, so both read GQA, MLA, sliding windows, mixtures of experts, hybrid layer stacks and their
recurrent state, multimodal `text_config`s, dtypes and quantization formats the same way, under the catalog's
field names.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any, Literal

from kaito.api.recurrentstate import state_bytes_per_sequence

Dtype = Literal["bfloat16", "float16", "float32"]
# As the catalog names them (kaito.presets.models.Quantization).
Quantization = Literal["fp8", "fp8-block", "mxfp4", "nvfp4", "awq", "gptq", "int4"]

SAFETENSORS_DTYPES: dict[str, Dtype] = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}
# Layer kinds that keep a per-token KV cache; any other kind (linear attention, Mamba, ...) keeps a fixed state.
ATTENTION_LAYER_KINDS = frozenset({"full_attention", "sliding_attention", "attention", "chunked_attention"})


class ModelDescriptionError(ValueError):
    """A model whose sizing facts cannot be read; the message names the file and the key."""


def config_facts(raw: Mapping[str, Any], *, source: str, stored_dtypes: Set[str] = frozenset()) -> dict[str, Any]:
    """config.json's facts by the catalog's field names (all but parameters_b and weight_bytes).

    `stored_dtypes` are the safetensors dtypes of the weights (BF16, F16, ...) where known; `source` names the
    file in messages.
    """
    # Multimodal checkpoints keep the language model's numbers under text_config.
    text: dict[str, Any] = dict(raw)
    if isinstance(raw.get("text_config"), dict):
        text.update(raw["text_config"])
    facts = _architecture(text, source)
    facts.update(_experts(text, source))
    facts.update(
        architectures=tuple(str(a) for a in raw.get("architectures") or ()),
        model_type=str(raw.get("model_type") or ""),
        dtype=_dtype(text, stored_dtypes, source),
        quantization=_quantization(raw, source),
    )
    facts["state_bytes_per_sequence"] = state_bytes_per_sequence(text, layers=facts["layers"], dtype=facts["dtype"])
    return facts


def _first(config: Mapping[str, Any], *keys: str) -> Any:
    return next((config[key] for key in keys if config.get(key) is not None), None)


def _architecture(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(config, "num_attention_heads", "n_head")
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    missing = [name for name, value in (("layers", layers), ("heads", heads), ("hidden_size", hidden)) if not value]
    if missing:
        raise ModelDescriptionError(f"{source}: no {', '.join(missing)} (num_hidden_layers, num_attention_heads, ...)")
    kv_heads = _first(config, "num_key_value_heads", "num_kv_heads")
    if kv_heads is None:
        kv_heads = 1 if config.get("multi_query") else heads
    facts: dict[str, Any] = {
        "layers": layers,
        "attention_heads": heads,
        "kv_heads": kv_heads,
        "head_dim": _first(config, "head_dim") or hidden // heads,
        "hidden_size": hidden,
        "intermediate_size": _first(config, "intermediate_size", "ffn_dim", "n_inner"),
        "vocab_size": _first(config, "vocab_size"),
        "max_position_embeddings": _first(config, "max_position_embeddings", "n_positions", "seq_length"),
    }
    if config.get("kv_lora_rank"):
        facts.update(
            kv_layout="mla", kv_lora_rank=config["kv_lora_rank"], qk_rope_head_dim=config.get("qk_rope_head_dim")
        )
        # MLA's query/key head is the no-rope part plus the rotary part.
        if config.get("qk_nope_head_dim") and config.get("qk_rope_head_dim"):
            facts["head_dim"] = config["qk_nope_head_dim"] + config["qk_rope_head_dim"]
    window = config.get("sliding_window")
    if isinstance(window, int) and window > 0 and config.get("use_sliding_window", True) is not False:
        facts["sliding_window"] = window
        facts["sliding_window_pattern"] = _window_pattern(config)
    facts["full_attention_layers"] = _full_attention_layers(config, layers)
    return facts


def _window_pattern(config: Mapping[str, Any]) -> int | None:
    """Every n-th layer attends globally: Gemma 3's sliding_window_pattern, or read off layer_types."""
    pattern = config.get("sliding_window_pattern")
    if isinstance(pattern, int) and pattern >= 2:
        return pattern
    types = config.get("layer_types")
    if isinstance(types, list) and "full_attention" in types:
        period = types.index("full_attention") + 1
        regular = all((i + 1) % period == 0 for i, kind in enumerate(types) if kind == "full_attention")
        return period if period >= 2 and regular else None
    return None


def _full_attention_layers(config: Mapping[str, Any], layers: int) -> int | None:
    """A hybrid's layers that keep a KV cache: from layer_types, an attention interval or a layer pattern.

    None when every layer attends (sliding-window layers attend too): the model is not a hybrid.
    """
    count: int | None = None
    types = config.get("layer_types")
    pattern = config.get("hybrid_override_pattern")  # Nemotron-H: one character a layer, '*' attends
    interval = _first(config, "full_attention_interval", "attn_layer_period")
    if isinstance(types, list) and types:
        count = sum(1 for kind in types if str(kind) in ATTENTION_LAYER_KINDS)
    elif isinstance(pattern, str) and pattern:
        count = pattern.count("*")
    elif isinstance(interval, int) and interval > 0:
        count = layers // interval
    if count is None or count >= layers:
        return None
    return count or None  # an attention-free model (pure Mamba): the planner charges every layer


def _experts(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    experts = _first(config, "num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts")
    per_token = _first(config, "num_experts_per_tok", "num_experts_per_token", "moe_top_k", "top_k_experts")
    if not isinstance(experts, int) or experts <= 1:
        return {}  # dense (some dense configs carry num_experts: 0 or 1)
    if not isinstance(per_token, int) or not 0 < per_token <= experts:
        raise ModelDescriptionError(f"{source}: {experts} experts but num_experts_per_tok is {per_token!r}")
    return {"experts": experts, "experts_per_token": per_token}


def _dtype(config: Mapping[str, Any], stored: Set[str], source: str) -> Dtype:
    named = _first(config, "torch_dtype", "dtype")
    if named in ("bfloat16", "float16", "float32"):
        return named  # type: ignore[no-any-return]
    floats = sorted({SAFETENSORS_DTYPES[kind] for kind in stored if kind in SAFETENSORS_DTYPES})
    if len(floats) == 1:
        return floats[0]
    if named in (None, "auto"):
        return "bfloat16"
    raise ModelDescriptionError(f"{source}: torch_dtype {named!r} is not one of bfloat16, float16, float32")


def _quantization(config: Mapping[str, Any], source: str) -> Quantization | None:
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return None
    method = str(quant.get("quant_method", "")).lower()
    if method == "fp8":
        return "fp8-block" if quant.get("weight_block_size") else "fp8"
    if method in ("mxfp4", "awq", "gptq"):
        return method  # type: ignore[return-value]
    if method == "modelopt":
        algo = str(quant.get("quant_algo", "")).upper()
        if algo in ("FP8", "NVFP4"):
            return "fp8" if algo == "FP8" else "nvfp4"
    if method == "compressed-tensors":
        kind = str(quant.get("format", "")).lower()
        known: dict[str, Quantization] = {
            "float-quantized": "fp8",
            "pack-quantized": "int4",
            "nvfp4-pack-quantized": "nvfp4",
            "mxfp4-pack-quantized": "mxfp4",
        }
        if kind in known:
            return known[kind]
        method = f"compressed-tensors format {kind!r}"
    raise ModelDescriptionError(
        f"{source}: quantization_config.quant_method {method!r} is not one kaito sizes "
        "(fp8, mxfp4, awq, gptq, modelopt FP8/NVFP4, compressed-tensors)"
    )
