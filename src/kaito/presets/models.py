"""The architecture facts of one model preset: what the planner needs to size weights and KV cache."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Dtype = Literal["bfloat16", "float16", "float32"]
# As the checkpoints' quantization_config names them: fp8 (per-tensor or per-channel), fp8-block (E4M3 with
# per-block scales, DeepSeek style), mxfp4 (OCP microscaling), nvfp4 (NVIDIA FP4, 16-element blocks),
# awq / gptq (4-bit integer groups), int4 (compressed-tensors pack-quantized INT4 weights).
Quantization = Literal["fp8", "fp8-block", "mxfp4", "nvfp4", "awq", "gptq", "int4"]
Kernel = Literal["deepgemm", "flashinfer-nvcc"]

FP8_KINDS = frozenset({"fp8", "fp8-block"})
FP4_KINDS = frozenset({"mxfp4", "nvfp4"})
# vLLM runs quantized checkpoints below native precision through Marlin kernels, which need Ampere (8.0).
QUANTIZED_MIN_CC = 8.0
# DeepGEMM has kernels for Hopper (sm90) and Blackwell (sm100) only.
DEEPGEMM_MIN_CC = 9.0


class Requirements(BaseModel):
    """What the GPU and runtime must offer: a minimum compute capability, low-precision formats, extra kernels.

    `fp8` / `fp4` record the formats the weights use (native FP8 math needs 8.9, native FP4 10.0; below that
    vLLM falls back to weight-only Marlin kernels). `compute_capability` is the hard floor the planner enforces.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    compute_capability: float | None = Field(default=None, ge=3.0)
    fp8: bool = False
    fp4: bool = False
    kernels: tuple[Kernel, ...] = ()
    kv_cache_dtype: Literal["fp8"] | None = None  # the architecture refuses any other KV cache format

    @model_validator(mode="after")
    def _consistent(self) -> Requirements:
        if "deepgemm" in self.kernels and (self.compute_capability or 0.0) < DEEPGEMM_MIN_CC:
            raise ValueError(
                f"DeepGEMM runs on compute capability {DEEPGEMM_MIN_CC}+; requires.compute_capability is lower"
            )
        return self

    def features(self) -> list[str]:
        """The formats and kernels required, in words (the compute capability is reported on its own)."""
        parts = [f for f, on in (("FP8", self.fp8), ("FP4", self.fp4)) if on]
        parts += list(self.kernels)
        if self.kv_cache_dtype:
            parts.append(f"{self.kv_cache_dtype} KV cache")
        return parts


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
    # Hybrid models (linear attention, Mamba): only these layers keep a per-token KV cache.
    full_attention_layers: int | None = Field(default=None, gt=0)
    # Hybrid models: the fixed state one sequence keeps in the Mamba / linear-attention layers (convolution window
    # plus recurrent state), bytes across all those layers before tensor parallelism, in vLLM's default state dtypes.
    state_bytes_per_sequence: int | None = Field(default=None, gt=0)
    # Mixture of experts: routed experts per layer and how many each token uses (informational;
    # weight_bytes already counts every expert).
    experts: int | None = Field(default=None, gt=0)
    experts_per_token: int | None = Field(default=None, gt=0)
    requires: Requirements = Field(default_factory=Requirements)
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
    # Where the entry comes from: the catalog, or sized from a model the catalog lacks (read from a Hugging Face
    # hub, or from a model image's config); set by the operator, never by catalog YAML.
    source: Literal["catalog", "hub", "image"] = "catalog"

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
            quant = data.get("quantization")
            if quant in FP8_KINDS or quant in FP4_KINDS:
                # The weights' format is a requirement whether or not the entry spells it out.
                req = data.get("requires")
                req = dict(req) if isinstance(req, dict) else req.model_dump() if isinstance(req, Requirements) else {}
                req["fp8" if quant in FP8_KINDS else "fp4"] = True
                data["requires"] = req
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
        if self.full_attention_layers is not None and self.full_attention_layers > self.layers:
            raise ValueError(f"full_attention_layers ({self.full_attention_layers}) exceeds layers ({self.layers})")
        if (self.experts is None) != (self.experts_per_token is None):
            raise ValueError("experts and experts_per_token go together")
        if self.experts is not None and self.experts_per_token is not None and self.experts_per_token > self.experts:
            raise ValueError(f"experts_per_token ({self.experts_per_token}) exceeds experts ({self.experts})")
        self._check_requirements()
        return self

    def _check_requirements(self) -> None:
        """An entry may demand more than its weights imply, never less."""
        req, quant = self.requires, self.quantization
        if quant and req.compute_capability is not None and req.compute_capability < QUANTIZED_MIN_CC:
            raise ValueError(f"{quant} weights need compute capability {QUANTIZED_MIN_CC}+ (vLLM's Marlin kernels)")

    @property
    def min_compute_capability(self) -> float | None:
        """The lowest NVIDIA compute capability that runs this model, or None when any CUDA GPU does."""
        floor = QUANTIZED_MIN_CC if self.quantization else None
        wanted = self.requires.compute_capability
        if wanted is None:
            return floor
        return wanted if floor is None else max(wanted, floor)

    @property
    def kv_layers(self) -> int:
        """Layers that keep a per-token KV cache: all of them unless the model is a hybrid."""
        return self.full_attention_layers or self.layers

    @property
    def is_deprecated(self) -> bool:
        return self.deprecated is not None

    def kv_bytes_per_token(self, *, dtype_bytes: int = 2) -> int:
        """KV-cache bytes one token costs across all layers, before tensor parallelism.

        Standard attention keeps K and V per KV head; MLA keeps one compressed latent plus the
        rotary key per layer. Only attention layers count: hybrids' linear-attention and Mamba layers keep a
        fixed per-sequence state instead, `state_bytes_per_sequence`, which the planner charges once for every
        sequence slot (max-num-seqs). Sliding-window layers are counted in full, so this errs high.
        """
        if self.kv_layout == "mla":
            assert self.kv_lora_rank is not None and self.qk_rope_head_dim is not None
            return self.kv_layers * (self.kv_lora_rank + self.qk_rope_head_dim) * dtype_bytes
        return 2 * self.kv_layers * self.kv_heads * self.head_dim * dtype_bytes

    def lookup_keys(self) -> tuple[str, ...]:
        """Every lowercase string that names this model: the preset name, aliases and the HF id."""
        keys = [self.name, *self.aliases, self.hf_repo.lower()]
        return tuple(dict.fromkeys(keys))
