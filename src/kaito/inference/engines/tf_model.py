"""Loads a local causal LM (plus adapters) and runs one forward step on it, hiding transformers' version quirks."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from kaito.inference.engines.tf_adapters import AdapterSelector, adapter_strength, attach_adapters, discover_adapters

# vLLM's --dtype spellings, so one serve flag means the same for both engines.
_DTYPES: dict[str, Any] = {
    "auto": "auto",
    "float32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
}


def torch_dtype(name: str) -> Any:
    """The `dtype` argument for from_pretrained: "auto" keeps the checkpoint's own dtype."""
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {name!r}")
    return _DTYPES[name]


@dataclass
class LoadedModel:
    """Everything one load produced; the engine drops it whole on close."""

    tokenizer: Any
    model: Any  # a PeftModel when adapters were found, else the causal LM itself
    config: Any
    device: torch.device
    adapters: dict[str, float]  # name -> strength, in the order models() lists them
    eos_ids: frozenset[int]
    selector: AdapterSelector | None = None
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    cache_kwarg: str = "cache"

    @property
    def context_limit(self) -> int | None:
        limit = getattr(self.config.get_text_config(), "max_position_embeddings", None)
        return int(limit) if isinstance(limit, int) else None

    def new_cache(self) -> Any:
        return DynamicCache(config=self.config)

    def decode(self, token_ids: list[int]) -> str:
        # No space clean-up: it rewrites earlier text, which would break emitting only the new suffix.
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return str(text)

    def next_logits(self, adapter: str | None, token_ids: list[int], cache: Any) -> torch.Tensor:
        """Feed `token_ids` after what `cache` holds; the last position's logits. Caller serialises calls."""
        if self.selector is not None:
            self.selector.select(adapter)
        with torch.inference_mode():
            input_ids = torch.tensor([token_ids], dtype=torch.long, device=self.device)
            kwargs = {self.cache_kwarg: cache, **self.forward_kwargs}
            output = self.model(input_ids=input_ids, use_cache=True, **kwargs)
        logits: torch.Tensor = output.logits[0, -1]
        return logits


def load_model(
    path: Path,
    *,
    dtype: str,
    device: str,
    adapters_dir: Path | None,
    strengths: Mapping[str, float],
    environ: Mapping[str, str],
) -> LoadedModel:
    tokenizer: Any = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model: Any = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch_dtype(dtype))
    model.to(device)
    model.eval()
    loaded = LoadedModel(
        tokenizer=tokenizer,
        model=model,
        config=model.config,
        device=torch.device(device),
        adapters={},
        eos_ids=_eos_ids(model, tokenizer),
        **_forward_style(model),
    )
    found = discover_adapters(adapters_dir)
    if found:
        loaded.adapters = {name: adapter_strength(name, strengths, environ) for name in found}
        loaded.model = attach_adapters(model, found, loaded.adapters)
        loaded.selector = AdapterSelector(loaded.model)
    return loaded


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return frozenset(i for i in ids if isinstance(i, int))


def _forward_style(model: Any) -> dict[str, Any]:
    # transformers renamed past_key_values to cache; logits_to_keep=1 avoids a (prompt x vocab) logits tensor.
    params = inspect.signature(model.forward).parameters
    return {
        "cache_kwarg": "cache" if "cache" in params else "past_key_values",
        "forward_kwargs": {"logits_to_keep": 1} if "logits_to_keep" in params else {},
    }
