"""The training configuration: upstream's `training_config.yaml` sections, typed, with lora/qlora defaults.

A user's ConfigMap holds `training_config.yaml` with a `training_config:` mapping of sections (ModelConfig,
QuantizationConfig, LoraConfig, TrainingArguments, DataCollator, DatasetConfig). Missing sections and keys
take the method's defaults. Settings we act on are typed and checked; TrainingArguments and DataCollator
keys we do not act on are kept and reported, so a config written for upstream still loads. It sits with the
API because both sides read it: the Workspace rules check a user's config at admission, and the tuning pod
trains with it. It imports neither torch nor peft.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_KEY = "training_config.yaml"  # the key of the ConfigMap that `tuning.config` names
METHODS = ("lora", "qlora")
DTYPES = ("auto", "bfloat16", "float16", "float32")
DEFAULT_TARGET_MODULES_ENV = "DEFAULT_TARGET_MODULES"  # set on the tuning pod for models whose LoRA targets differ


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the section and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelSection(_Section):
    pretrained_model_name_or_path: str | None = None
    revision: str | None = None
    torch_dtype: str = "bfloat16"
    trust_remote_code: bool = False
    local_files_only: bool = False
    device_map: str | None = "auto"
    chat_template: str | None = None
    cache_dir: str | None = None

    @field_validator("torch_dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"{value!r} is not one of {', '.join(DTYPES)}")
        return value


class QuantizationSection(_Section):
    quant_method: Literal["bitsandbytes"] = "bitsandbytes"
    load_in_4bit: bool = False
    load_in_8bit: bool = False
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_compute_dtype: str = "bfloat16"
    bnb_4bit_use_double_quant: bool = False
    llm_int8_threshold: float = 6.0

    @model_validator(mode="after")
    def _one_width(self) -> QuantizationSection:
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("load_in_4bit and load_in_8bit are both true; choose one (qlora uses load_in_4bit)")
        return self

    @property
    def quantized(self) -> bool:
        return self.load_in_4bit or self.load_in_8bit


class LoraSection(_Section):
    r: int = Field(default=8, ge=1, le=1024)
    lora_alpha: float = Field(default=8, gt=0)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] | str | None = None
    bias: Literal["none", "all", "lora_only"] = "none"
    layers_to_transform: list[int] | int | None = None
    layers_pattern: str | None = None
    modules_to_save: list[str] | None = None
    init_lora_weights: bool | str = True
    use_rslora: bool = False
    use_dora: bool = False
    fan_in_fan_out: bool = False
    task_type: Literal["CAUSAL_LM"] = "CAUSAL_LM"


SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_hf", "paged_adamw_32bit", "paged_adamw_8bit", "adamw_8bit")


class TrainingSection(_Section):
    """The TrainingArguments we act on. Other TrainingArguments keys are kept in `ignored` and reported."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    output_dir: str = "/mnt/results"
    num_train_epochs: float = Field(default=3, gt=0)
    max_steps: int = Field(default=-1, ge=-1)
    per_device_train_batch_size: int = Field(default=1, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=2e-5, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    adam_beta1: float = Field(default=0.9, ge=0, lt=1)
    adam_beta2: float = Field(default=0.999, ge=0, lt=1)
    adam_epsilon: float = Field(default=1e-8, gt=0)
    max_grad_norm: float = Field(default=1.0, ge=0)
    lr_scheduler_type: str = "linear"
    warmup_steps: int = Field(default=0, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0, le=1)
    logging_steps: float = Field(default=10, gt=0)
    seed: int = 42
    max_length: int | None = Field(default=1024, ge=8, validation_alias="max_seq_length")
    gradient_checkpointing: bool = False
    optim: str = "adamw_torch"
    save_strategy: str = "no"

    @field_validator("lr_scheduler_type")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if value not in SCHEDULERS:
            raise ValueError(f"{value!r} is not one of {', '.join(SCHEDULERS)}")
        return value

    @field_validator("optim")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        if value not in OPTIMIZERS:
            raise ValueError(f"{value!r} is not one of {', '.join(OPTIMIZERS)}")
        return value

    @property
    def ignored(self) -> list[str]:
        return sorted(self.model_extra or {})


class CollatorSection(_Section):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    mlm: bool = True

    @property
    def ignored(self) -> list[str]:
        return sorted(self.model_extra or {})


class DatasetSection(_Section):
    dataset_path: str | None = Field(default=None, description="file or directory, relative to the data directory")
    dataset_extension: Literal["parquet", "json", "jsonl", "csv"] | None = None
    shuffle_dataset: bool = True
    shuffle_seed: int = 42
    context_column: str | None = None
    response_column: str = "text"
    messages_column: str | None = None
    train_test_split: float = Field(default=1.0, gt=0, le=1)


SECTIONS: dict[str, str] = {
    "ModelConfig": "model",
    "QuantizationConfig": "quantization",
    "LoraConfig": "lora",
    "TrainingArguments": "training",
    "DataCollator": "collator",
    "DatasetConfig": "dataset",
}


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelSection = Field(default_factory=ModelSection)
    quantization: QuantizationSection = Field(default_factory=QuantizationSection)
    lora: LoraSection = Field(default_factory=LoraSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    collator: CollatorSection = Field(default_factory=CollatorSection)
    dataset: DatasetSection = Field(default_factory=DatasetSection)

    def ignored_settings(self) -> list[str]:
        """Keys accepted for compatibility that change nothing here, as `Section.key`."""
        return [f"TrainingArguments.{k}" for k in self.training.ignored] + [
            f"DataCollator.{k}" for k in self.collator.ignored
        ]


def method_defaults(method: str) -> dict[str, dict[str, Any]]:
    """The defaults upstream ships for each method, as `training_config` sections."""
    if method not in METHODS:
        raise ConfigError(f"tuning method {method!r} is not one of {', '.join(METHODS)}")
    sections: dict[str, dict[str, Any]] = {
        "ModelConfig": {"torch_dtype": "bfloat16", "local_files_only": False, "device_map": "auto"},
        "QuantizationConfig": {"load_in_4bit": False},
        "LoraConfig": {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0},
        "TrainingArguments": {"output_dir": "/mnt/results", "save_strategy": "no", "per_device_train_batch_size": 1},
        "DataCollator": {"mlm": True},
        "DatasetConfig": {"shuffle_dataset": True, "train_test_split": 1},
    }
    if method == "qlora":
        sections["QuantizationConfig"] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": "bfloat16",
            "bnb_4bit_use_double_quant": True,
        }
    return sections


def parse_training_config(text: str | None, method: str, *, source: str = CONFIG_KEY) -> TrainingConfig:
    """The method's defaults overlaid with the user's `training_config.yaml` (if any), checked."""
    sections = method_defaults(method)
    for name, values in _user_sections(text, source).items():
        if name == "QuantizationConfig" and ("load_in_4bit" in values or "load_in_8bit" in values):
            sections[name] = {k: v for k, v in sections[name].items() if k not in ("load_in_4bit", "load_in_8bit")}
        sections[name] = {**sections[name], **values}
    try:
        return TrainingConfig.model_validate({SECTIONS[name]: values for name, values in sections.items()})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def _user_sections(text: str | None, source: str) -> dict[str, dict[str, Any]]:
    if not text or not text.strip():
        return {}
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping with a `training_config:` key")
    body = document.get("training_config", document)
    if not isinstance(body, dict):
        raise ConfigError(f"{source}: `training_config` must be a mapping of sections")
    sections: dict[str, dict[str, Any]] = {}
    for name, values in body.items():
        if name not in SECTIONS:
            raise ConfigError(f"{source}: unknown section {name!r}; expected {', '.join(SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {name} must be a mapping, got {type(values).__name__}")
        sections[name] = dict(values)
    return sections


_FIELD_SECTIONS = {attr: name for name, attr in SECTIONS.items()}


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        if location and location[0] in _FIELD_SECTIONS:
            location[0] = _FIELD_SECTIONS[location[0]]
        where = ".".join(location)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "not a setting of this section"
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
