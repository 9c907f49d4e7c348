"""vLLM's command line in the pod: the engine config's one rendering (`kaito.api.engine`), plus what only the pod
knows — where vLLM listens, where it downloads weights, whether the model is a local directory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaito.api.engine import EngineConfig

INTERNAL_PORT = 5001  # vLLM listens here; `kaito serve` owns the public port 5000
INTERNAL_HOST = "127.0.0.1"
WILDCARDS = ("0.0.0.0", "::", "")  # listening on every address; this pod reaches it on loopback
DOWNLOAD_DIR = "/workspace/weights"


def vllm_args(
    config: EngineConfig,
    *,
    host: str = INTERNAL_HOST,
    port: int = INTERNAL_PORT,
    lora_modules: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """The argument list for `python -m vllm.entrypoints.openai.api_server`; `lora_modules` are (name, path)."""
    local = bool(config.model) and Path(config.model or "").exists()
    return config.vllm_flags(
        host=host, port=port, download_dir=DOWNLOAD_DIR, local_model=local, lora_modules=lora_modules
    )


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


def connect_host(host: str) -> str:
    """Where this pod reaches a server listening on `host` (a wildcard address means loopback)."""
    if host in WILDCARDS:
        return INTERNAL_HOST
    return f"[{host}]" if ":" in host else host
