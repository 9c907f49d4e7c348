"""The vLLM settings a user may pin in the inference ConfigMap (`inference_config.yaml`, section `vllm:`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import yaml

CONFIG_KEY = "inference_config.yaml"
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")


class OverrideError(ValueError):
    """A setting that cannot be honoured; `path` names it as the user wrote it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Overrides:
    """Explicit user choices; None means "let the planner decide"."""

    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    dtype: str | None = None
    kv_cache_dtype: str | None = None
    max_loras: int | None = None
    max_lora_rank: int | None = None
    enforce_eager: bool | None = None
    kv_cache_memory: int | None = None  # the transformers engine's KV budget in bytes; vLLM sizes its own

    @classmethod
    def from_vllm_section(cls, section: Mapping[str, Any], *, where: str = "vllm") -> Overrides:
        """Read `--flag`-style keys (`max-model-len: 8192`); unknown keys pass through to vLLM untouched."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            wire = field.name.replace("_", "-")
            for key in (wire, field.name):
                if key in section:
                    values[field.name] = _coerce(f"{where}.{wire}", field.name, section[key])
        return cls(**values)

    @classmethod
    def from_config_text(cls, text: str, *, where: str = CONFIG_KEY) -> Overrides:
        try:
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise OverrideError(where, f"not valid YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise OverrideError(where, "must be a YAML mapping with a `vllm:` section")
        section = doc.get("vllm") or {}
        if not isinstance(section, dict):
            raise OverrideError(f"{where}: vllm", "must be a mapping of vLLM flags to values")
        return cls.from_vllm_section(section, where=f"{where}: vllm")


def _coerce(path: str, name: str, value: Any) -> Any:
    if name == "gpu_memory_utilization":
        number = _number(path, value)
        if not 0.05 <= number <= 0.99:
            raise OverrideError(path, f"{number} is outside 0.05..0.99 (a fraction of GPU memory)")
        return number
    if name == "enforce_eager":
        if not isinstance(value, bool):
            raise OverrideError(path, "must be true or false")
        return value
    if name == "dtype":
        return _choice(path, value, DTYPES)
    if name == "kv_cache_dtype":
        return _choice(path, value, KV_CACHE_DTYPES)
    if name == "max_model_len" and value in ("auto", -1):
        raise OverrideError(path, "kaito sizes the context itself; give a number of tokens or leave it out")
    number = _integer(path, value)
    if name == "max_lora_rank" and number not in LORA_RANKS:
        raise OverrideError(path, f"{number} is not a rank vLLM allows; use one of {', '.join(map(str, LORA_RANKS))}")
    return number


def _number(path: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise OverrideError(path, f"{value!r} is not a number")
    try:
        return float(value)
    except ValueError:
        raise OverrideError(path, f"{value!r} is not a number") from None


def _integer(path: str, value: Any) -> int:
    if isinstance(value, bool):
        raise OverrideError(path, f"{value!r} is not a whole number")
    try:
        number = int(str(value))
    except ValueError:
        raise OverrideError(path, f"{value!r} is not a whole number") from None
    if number < 1:
        raise OverrideError(path, f"{number} must be at least 1")
    return number


def _choice(path: str, value: Any, allowed: tuple[str, ...]) -> str:
    if str(value) not in allowed:
        raise OverrideError(path, f"{value!r} is not one of {', '.join(allowed)}")
    return str(value)
