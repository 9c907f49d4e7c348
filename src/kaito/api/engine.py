"""The engine config: the one typed contract between the controller and the inference pod.

The controller builds it from `status.plan` and writes it to the engine ConfigMap; `kaito serve` reads it back.
vLLM's command line is rendered from it here and nowhere else; `status.plan.engineArgs` is the same rendering,
kept in the status for people to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator

from kaito.api.wire import WireModel
from kaito.api.workspace import EngineNumbers, PlanStatus

CONFIG_KEY = "engine.yaml"
EngineName = Literal["auto", "vllm", "transformers"]
ENGINES: tuple[str, ...] = get_args(EngineName)
FlagValue = str | int | float | bool | None


class EngineConfigError(ValueError):
    """An engine config that cannot be used; the message names the source and the field."""


class EngineAdapter(WireModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The adapter's directory under adaptersDir; clients select it as the model name")
    strength: float = Field(default=1.0, description="Weight in [0, 1], baked into the adapter's B matrices")
    image: str | None = Field(
        default=None, description="The OCI reference `kaito serve` pulls; none: the directory is already there"
    )
    digest: str | None = Field(default=None, description="sha256:...; the pod pulls image@digest when set")
    docker_configs: list[str] = Field(
        default_factory=list,
        description="Docker config directories mounted in the pod, one per pull secret of this adapter, merged in "
        "order (the first wins for a registry two name); one that is not there (an optional Secret not created) is "
        "skipped while another is",
    )
    insecure: bool = Field(
        default=False, description="The registry may answer in plain HTTP (loopback registries may anyway)"
    )


class EngineConfig(EngineNumbers):
    """What `kaito serve` runs. A number left out means vLLM's default; `model` may come from the command line."""

    model_config = ConfigDict(extra="forbid")

    engine: EngineName = "auto"
    model: str | None = Field(default=None, description="Hugging Face repo id or local model directory")
    revision: str | None = None
    served_model_name: str | None = None
    port: int | None = Field(default=None, description="The port `kaito serve` listens on")
    adapters_dir: str | None = None
    adapters: list[EngineAdapter] = Field(default_factory=list)
    nodes: int = 1
    enable_lora: bool = False
    distributed_executor_backend: str | None = None
    vllm: dict[str, FlagValue] = Field(
        default_factory=dict, description="More vLLM flags, passed as written: `flag: value`, `flag: true`"
    )

    @field_validator("vllm", mode="before")
    @classmethod
    def _flag_values(cls, value: object) -> object:
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(item, str | int | float | bool | None):
                    raise ValueError(f"{key}: a flag's value is a string, a number, true, false or null")
        return value

    @classmethod
    def from_plan(
        cls,
        plan: PlanStatus,
        *,
        model: str | None = None,
        revision: str = "main",
        port: int | None = None,
        adapters_dir: str | None = None,
        adapters: Sequence[EngineAdapter] = (),
    ) -> EngineConfig:
        """The plan's numbers for vLLM; `model` is the weights to load (default: the plan's model name)."""
        return cls(
            engine="vllm",
            model=model or plan.model,
            revision=revision,
            served_model_name=plan.model,
            port=port,
            adapters_dir=adapters_dir,
            adapters=list(adapters),
            nodes=plan.nodes or 1,
            enable_lora=bool(plan.max_loras),
            **plan.engine_numbers(),
            distributed_executor_backend="ray" if (plan.pipeline_parallel_size or 1) > 1 else None,
        )

    @classmethod
    def from_yaml(cls, text: str, *, source: str = CONFIG_KEY) -> EngineConfig:
        """Read the config as the ConfigMap carries it; EngineConfigError names the field that is wrong."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise EngineConfigError(f"{source}: not valid YAML: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise EngineConfigError(f"{source}: expected a mapping at the top level")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise EngineConfigError(f"{source}: {_problems(exc)}") from None

    @classmethod
    def from_configmap_data(cls, data: Mapping[str, str]) -> EngineConfig:
        if CONFIG_KEY not in data:
            raise EngineConfigError(f"the engine ConfigMap has no key {CONFIG_KEY}")
        return cls.from_yaml(data[CONFIG_KEY])

    def to_configmap_data(self) -> dict[str, str]:
        return {CONFIG_KEY: yaml.safe_dump(self.to_wire(), sort_keys=False)}

    @property
    def adapter_strengths(self) -> dict[str, float]:
        return {adapter.name: adapter.strength for adapter in self.adapters}

    @property
    def extra(self) -> tuple[str, ...]:
        """The `vllm:` mapping as flags: `flag: value` -> `--flag=value`, `flag: true` -> `--flag`, false and null
        drop; underscores in names become dashes."""
        flags = []
        for key, value in self.vllm.items():
            flag = f"--{key.replace('_', '-')}"
            if value is True:
                flags.append(flag)
            elif value is not False and value is not None:
                flags.append(f"{flag}={value}")
        return tuple(flags)

    def plan_flags(self, *, lora_modules: Sequence[tuple[str, str]] = ()) -> list[str]:
        """The plan's numbers as vLLM flags; with `lora_modules` (name, path), the adapters registered too."""
        numbers = [
            ("--tensor-parallel-size", self.tensor_parallel_size),
            ("--pipeline-parallel-size", self.pipeline_parallel_size),
            ("--data-parallel-size", self.data_parallel_size),
            ("--dtype", self.dtype or None),
            ("--gpu-memory-utilization", self.gpu_memory_utilization),
            ("--max-model-len", self.max_model_len),
            ("--max-num-seqs", self.max_num_seqs),
            ("--max-num-batched-tokens", self.max_num_batched_tokens),
        ]
        flags = [f"{flag}={value}" for flag, value in numbers if value is not None]
        if self.kv_cache_dtype and self.kv_cache_dtype != "auto":
            flags.append(f"--kv-cache-dtype={self.kv_cache_dtype}")
        if self.enable_lora or lora_modules:
            flags += ["--enable-lora", f"--max-loras={max(self.max_loras or 1, len(lora_modules))}"]
            if self.max_lora_rank:
                flags.append(f"--max-lora-rank={self.max_lora_rank}")
            if lora_modules:
                flags += ["--lora-modules", *(f"{name}={path}" for name, path in lora_modules)]
        if self.distributed_executor_backend:
            flags.append(f"--distributed-executor-backend={self.distributed_executor_backend}")
        return flags

    def vllm_flags(
        self,
        *,
        host: str,
        port: int,
        download_dir: str | None,
        local_model: bool,
        lora_modules: Sequence[tuple[str, str]] = (),
    ) -> list[str]:
        """The argument list for vLLM's OpenAI server. A `local_model` directory is loaded as is: no revision and no
        download directory."""
        if not self.model:
            raise EngineConfigError("no model: the engine config names none and none was given")
        served = self.served_model_name or self.model
        flags = ["--model", self.model, "--served-model-name", served, "--host", host, "--port", str(port)]
        if self.revision and self.revision != "main" and not local_model:
            flags += ["--revision", self.revision]
        if download_dir and not local_model:
            flags += ["--download-dir", download_dir]
        return [*flags, *self.plan_flags(lora_modules=lora_modules), *self.extra]


def with_engine_args(plan: PlanStatus) -> PlanStatus:
    """`plan` with `engineArgs`: the flags the engine configuration renders from its numbers, shown in status."""
    return plan.model_copy(update={"engine_args": EngineConfig.from_plan(plan).plan_flags()})


def _problems(exc: ValidationError) -> str:
    """One `field: message` per field, the field as the wire spells it."""
    seen: dict[str, str] = {}
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        seen.setdefault(where, error["msg"])
    return "; ".join(f"{where}: {message}" for where, message in seen.items())
