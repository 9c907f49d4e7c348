"""The architecture facts of one model preset: what the planner needs to size weights and KV cache."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Dtype = Literal["bfloat16", "float16", "float32"]
Quantization = Literal["fp8", "mxfp4", "awq", "gptq"]


class ModelSpec(BaseModel):
    """One preset. Numbers come from the checkpoint's config.json; sizes from its safetensors files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    hf_repo: str = Field(min_length=1)
    revision: str = "main"
    aliases: tuple[str, ...] = ()
    parameters_b: float = Field(gt=0)
    weight_bytes: int = Field(gt=0)
    layers: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int | None = Field(default=None, gt=0)
    vocab_size: int | None = Field(default=None, gt=0)
    max_position_embeddings: int = Field(gt=0)
    dtype: Dtype = "bfloat16"
    quantization: Quantization | None = None
    kv_layout: Literal["standard", "mla"] = "standard"
    kv_lora_rank: int | None = Field(default=None, gt=0)
    qk_rope_head_dim: int | None = Field(default=None, gt=0)
    sliding_window: int | None = Field(default=None, gt=0)
    # Every `sliding_window_pattern`-th layer attends globally, the rest keep only the window
    # (Gemma 3: 5 local + 1 global -> 6; gpt-oss alternates -> 2).
    sliding_window_pattern: int | None = Field(default=None, ge=2)
    download_auth_required: bool = False
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    chat_template: str | None = None
    supports_lora: bool = True
    supports_tensor_parallel: bool = True
    supports_tuning: bool = False
    architectures: tuple[str, ...] = ()
    license: str = ""
    deprecated: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        # An override may name a model only by its HF id ("org/model"); that id is then also its repo.
        if isinstance(data, dict):
            data = dict(data)
            name = data.get("name")
            if isinstance(name, str):
                if "/" in name:
                    data.setdefault("hf_repo", name.strip())
                data["name"] = name.strip().lower()
            aliases = data.get("aliases")
            if isinstance(aliases, list | tuple):
                data["aliases"] = tuple(a.strip().lower() if isinstance(a, str) else a for a in aliases)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.kv_layout == "mla" and (self.kv_lora_rank is None or self.qk_rope_head_dim is None):
            raise ValueError("kv_layout 'mla' needs kv_lora_rank and qk_rope_head_dim")
        if self.attention_heads % self.kv_heads:
            raise ValueError(
                f"attention_heads ({self.attention_heads}) must be a multiple of kv_heads ({self.kv_heads})"
            )
        if self.sliding_window_pattern is not None and self.sliding_window is None:
            raise ValueError("sliding_window_pattern needs sliding_window")
        return self

    @property
    def is_deprecated(self) -> bool:
        return self.deprecated is not None

    def kv_bytes_per_token(self, *, dtype_bytes: int = 2) -> int:
        """KV-cache bytes one token costs across all layers, before tensor parallelism.

        Standard attention keeps K and V per KV head; MLA keeps one compressed latent plus the
        rotary key per layer. Sliding-window layers are counted in full, so this errs high.
        """
        if self.kv_layout == "mla":
            assert self.kv_lora_rank is not None and self.qk_rope_head_dim is not None
            return self.layers * (self.kv_lora_rank + self.qk_rope_head_dim) * dtype_bytes
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes

    def lookup_keys(self) -> tuple[str, ...]:
        """Every lowercase string that names this model: the preset name, aliases and the HF id."""
        keys = [self.name, *self.aliases, self.hf_repo.lower()]
        return tuple(dict.fromkeys(keys))
