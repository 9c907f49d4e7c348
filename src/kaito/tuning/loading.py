"""Loading the base model for training: the hardware check, tokenizer, model (4-bit for QLoRA) and LoRA wrapping."""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from typing import Any

from kaito.api.tuningconfig import DEFAULT_TARGET_MODULES_ENV, TrainingConfig

log = logging.getLogger("kaito.tune")


class TuneError(RuntimeError):
    """Training cannot start or cannot go on; the message says why and what to change."""


def check_hardware(config: TrainingConfig, *, cuda_available: bool) -> None:
    """Fail at once where the config cannot run on this machine, rather than after loading the model."""
    if not config.quantization.quantized:
        return
    bits = "4-bit" if config.quantization.load_in_4bit else "8-bit"
    if not cuda_available:
        raise TuneError(
            f"QuantizationConfig asks for a {bits} base model (QLoRA), which bitsandbytes can only load on a CUDA "
            "GPU, and no GPU is visible here; run on a GPU node or use method lora "
            "(QuantizationConfig.load_in_4bit: false)"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TuneError(
            f"QuantizationConfig asks for a {bits} base model but bitsandbytes is not installed (kaito[qlora])"
        )


def load_tokenizer(config: TrainingConfig, model_path: str) -> Any:
    from transformers import AutoTokenizer

    model = config.model
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model_path,
            revision=model.revision,
            trust_remote_code=model.trust_remote_code,
            local_files_only=model.local_files_only,
            cache_dir=model.cache_dir,
        )
    except (OSError, ValueError) as exc:
        raise TuneError(f"cannot load the tokenizer of {model_path}: {exc}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.chat_template:
        tokenizer.chat_template = model.chat_template
    return tokenizer


def load_model(config: TrainingConfig, model_path: str, *, cuda: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    section = config.model
    dtype: Any = section.torch_dtype
    if not cuda and dtype in ("bfloat16", "float16"):
        log.info("no GPU: training in float32 on CPU instead of ModelConfig.torch_dtype %s", dtype)
        dtype = "float32"
    kwargs: dict[str, Any] = {
        "revision": section.revision,
        "trust_remote_code": section.trust_remote_code,
        "local_files_only": section.local_files_only,
        "cache_dir": section.cache_dir,
        "dtype": dtype if dtype == "auto" else getattr(torch, dtype),
    }
    if cuda and section.device_map:
        kwargs["device_map"] = section.device_map
    if config.quantization.quantized:
        kwargs["quantization_config"] = _bnb_config(config)
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # one bar per shard: noise
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise TuneError(f"cannot load the model {model_path}: {exc}") from None
    if config.quantization.quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            model, use_gradient_checkpointing=config.training.gradient_checkpointing
        )
    elif config.training.gradient_checkpointing:
        model.gradient_checkpointing_enable()  # type: ignore[no-untyped-call]
        model.enable_input_require_grads()  # type: ignore[no-untyped-call]
    return model


def _bnb_config(config: TrainingConfig) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    q = config.quantization
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=q.load_in_4bit,
        load_in_8bit=q.load_in_8bit,
        bnb_4bit_quant_type=q.bnb_4bit_quant_type,
        bnb_4bit_compute_dtype=getattr(torch, q.bnb_4bit_compute_dtype),
        bnb_4bit_use_double_quant=q.bnb_4bit_use_double_quant,
        llm_int8_threshold=q.llm_int8_threshold,
    )


def wrap_with_lora(config: TrainingConfig, model: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    settings = config.lora.model_dump(exclude_none=True)
    if "target_modules" not in settings and os.environ.get(DEFAULT_TARGET_MODULES_ENV):
        settings["target_modules"] = os.environ[DEFAULT_TARGET_MODULES_ENV].split(",")
    try:
        lora = LoraConfig(**settings)
        with warnings.catch_warnings():  # peft asks transformers a deprecated question; not the user's concern
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            wrapped = get_peft_model(model, lora)
    except (ValueError, TypeError) as exc:
        raise TuneError(f"LoraConfig does not fit this model: {exc}") from None
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    log.info(
        "LoRA r=%d alpha=%g: %d trainable of %d parameters", config.lora.r, config.lora.lora_alpha, trainable, total
    )
    return wrapped
