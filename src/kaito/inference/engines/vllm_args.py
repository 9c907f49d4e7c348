"""From the operator's plan to vLLM's command line: one function, `vllm_args`, tested field by field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

INTERNAL_PORT = 5001  # vLLM listens here; `kaito serve` owns the public port 5000


@dataclass(frozen=True)
class VllmSettings:
    """Everything vLLM is started with. None means "vLLM's default"."""

    model: str
    served_model_name: str
    revision: str | None = None
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    data_parallel_size: int | None = None
    dtype: str | None = None
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    kv_cache_dtype: str | None = None
    enable_lora: bool = False
    max_loras: int | None = None
    max_lora_rank: int | None = None
    lora_modules: tuple[tuple[str, str], ...] = ()  # (name, path) per adapter
    distributed_executor_backend: str | None = None
    download_dir: str | None = "/workspace/weights"
    port: int = INTERNAL_PORT
    host: str = "127.0.0.1"
    adapters_dir: str | None = None  # not a vLLM flag: where `kaito serve` looks for adapters to register
    extra: tuple[str, ...] = ()  # anything else, passed through verbatim (the config file's `vllm:` section)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], args: Any = None) -> VllmSettings:
        """The operator's engine config (`engineArgs`, `vllm:`), with `kaito serve` flags taking precedence."""
        flag_names = (
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "data_parallel_size",
            "dtype",
            "gpu_memory_utilization",
            "max_model_len",
            "max_num_seqs",
            "max_lora_rank",
            "max_loras",
        )
        flags = {name: getattr(args, name, None) for name in flag_names} if args is not None else {}
        model = getattr(args, "model", None) or str(config.get("model") or "")
        served = getattr(args, "served_model_name", None) or str(config.get("servedModelName") or model)
        settings = cls.from_engine_args(
            list(config.get("engineArgs") or []),
            model=model,
            served_model_name=served,
            revision=config.get("revision"),
            adapters_dir=getattr(args, "adapters_dir", None) or config.get("adaptersDir"),
            enable_lora=True if getattr(args, "enable_lora", False) else None,
            **flags,
        )
        return settings.with_extra(config.get("vllm") or {})

    @classmethod
    def from_engine_args(
        cls, engine_args: Sequence[str], *, model: str, served_model_name: str, **overrides: Any
    ) -> VllmSettings:
        """Parse the plan's `--flag=value` list (status.plan.engineArgs); flags we do not model go to `extra`."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        extra: list[str] = []
        for arg in engine_args:
            flag, has_value, value = arg.lstrip("-").partition("=")
            name = flag.replace("-", "_")
            if name in known and name not in ("extra", "lora_modules", "adapters_dir"):
                values[name] = _coerce(cls, name, value if has_value else "true")
            else:
                extra.append(arg)
        settings = cls(model=model, served_model_name=served_model_name, extra=tuple(extra), **values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})

    def with_extra(self, section: Mapping[str, Any]) -> VllmSettings:
        """Add a config file's `vllm:` mapping (`flag: value`, `flag: true` for switches) as extra arguments."""
        extra = list(self.extra)
        for key, value in section.items():
            flag = f"--{str(key).replace('_', '-')}"
            if value is True:
                extra.append(flag)
            elif value not in (False, None):
                extra.append(f"{flag}={value}")
        return replace(self, extra=tuple(extra))


def _coerce(cls: type[VllmSettings], name: str, value: str) -> Any:
    kind = {f.name: f.type for f in fields(cls)}[name]
    text = str(kind)
    if "bool" in text:
        return value.lower() not in ("false", "0", "no")
    if "int" in text:
        return int(value)
    if "float" in text:
        return float(value)
    return value


def vllm_args(settings: VllmSettings) -> list[str]:
    """The argument list for `python -m vllm.entrypoints.openai.api_server`."""
    s = settings
    args = ["--model", s.model, "--served-model-name", s.served_model_name, "--host", s.host, "--port", str(s.port)]
    if s.revision and s.revision != "main" and not Path(s.model).exists():
        args += ["--revision", s.revision]
    if s.download_dir and not Path(s.model).exists():
        args += ["--download-dir", s.download_dir]
    numbers = [
        ("--tensor-parallel-size", s.tensor_parallel_size),
        ("--pipeline-parallel-size", s.pipeline_parallel_size),
        ("--data-parallel-size", s.data_parallel_size),
        ("--gpu-memory-utilization", s.gpu_memory_utilization),
        ("--max-model-len", s.max_model_len),
        ("--max-num-seqs", s.max_num_seqs),
        ("--max-num-batched-tokens", s.max_num_batched_tokens),
    ]
    args += [f"{flag}={value}" for flag, value in numbers if value is not None]
    if s.dtype:
        args.append(f"--dtype={s.dtype}")
    if s.kv_cache_dtype and s.kv_cache_dtype != "auto":
        args.append(f"--kv-cache-dtype={s.kv_cache_dtype}")
    if s.enable_lora or s.lora_modules:
        args.append("--enable-lora")
        args.append(f"--max-loras={max(s.max_loras or 1, len(s.lora_modules), 1)}")
        if s.max_lora_rank:
            args.append(f"--max-lora-rank={s.max_lora_rank}")
        if s.lora_modules:
            args += ["--lora-modules", *(f"{name}={path}" for name, path in s.lora_modules)]
    if s.distributed_executor_backend:
        args.append(f"--distributed-executor-backend={s.distributed_executor_backend}")
    return [*args, *s.extra]


@dataclass
class ArgsCheck:
    """vLLM's own parser's verdict on an argument list (only where vLLM is installed)."""

    accepted: bool
    error: str = ""
    namespace: dict[str, Any] = field(default_factory=dict)


def check_with_vllm_parser(args: list[str]) -> ArgsCheck:
    """Parse `args` with vLLM's OpenAI server argument parser; ImportError when vLLM is absent."""
    from vllm.entrypoints.openai.cli_args import make_arg_parser  # type: ignore[import-not-found]
    from vllm.utils import FlexibleArgumentParser  # type: ignore[import-not-found]

    parser = make_arg_parser(FlexibleArgumentParser())
    try:
        namespace = parser.parse_args(args)
    except SystemExit as exc:
        return ArgsCheck(False, f"vLLM's parser exited with {exc.code}")
    return ArgsCheck(True, namespace=vars(namespace))
