"""Fetching one adapter of the engine config for `kaito serve`: pulled from its image into adaptersDir, then checked
against what this server can serve (its base model, the plan's maximum LoRA rank)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kaito.api.engine import EngineAdapter
from kaito.oci import dockerconfig
from kaito.oci.adapters import ADAPTER_CONFIG_FILE, ANNOTATION_BASE_MODEL, pull_adapter
from kaito.oci.errors import OciError
from kaito.oci.reference import parse_reference
from kaito.oci.scheme import is_loopback


class AdapterUnusable(Exception):
    """This adapter cannot be served here; the message is the registry's or the check's words."""


@dataclass(frozen=True)
class Fetched:
    path: Path
    digest: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)


Fetch = Callable[[EngineAdapter, Path], Awaitable[Fetched]]


async def pull_image(adapter: EngineAdapter, outdir: Path) -> Fetched:
    """Pull `adapter.image` (at its digest when one is given) into `outdir`, on a thread; AdapterUnusable on failure."""
    assert adapter.image is not None
    reference = f"{adapter.image.split('@')[0]}@{adapter.digest}" if adapter.digest else adapter.image
    try:
        auth = _pull_secrets([Path(config) for config in adapter.docker_configs])
        fall_back = adapter.insecure or is_loopback(parse_reference(reference).registry)
        pulled = await asyncio.to_thread(pull_adapter, reference, outdir, auth=auth, may_fall_back=fall_back)
    except (OciError, dockerconfig.DockerConfigError) as exc:
        raise AdapterUnusable(" ".join(str(exc).split())) from None
    return Fetched(outdir, pulled.digest, pulled.annotations)


def _pull_secrets(paths: list[Path]) -> dockerconfig.DockerConfig | None:
    """The adapter's pull secrets merged, those mounted; None (anonymous) when it names none. When none of those it
    names is mounted, loading them raises the error that says which is missing."""
    if not paths:
        return None
    mounted = [path for path in paths if path.exists()]
    return dockerconfig.load(mounted or paths)


def check_adapter(fetched: Fetched, *, base_names: Sequence[str], max_rank: int | None) -> None:
    """AdapterUnusable when the artifact names another base model or its rank exceeds the plan's maximum."""
    base = fetched.annotations.get(ANNOTATION_BASE_MODEL)
    if base and not any(_same_model(base, name) for name in base_names if name):
        raise AdapterUnusable(
            f"the adapter was trained for base model {base!r}, and this server serves {' / '.join(base_names)}"
        )
    rank = adapter_rank(fetched.path)
    if max_rank is not None and rank is not None and rank > max_rank:
        raise AdapterUnusable(f"the adapter's LoRA rank {rank} is above the plan's maximum {max_rank} (max-lora-rank)")


def adapter_rank(path: Path) -> int | None:
    """The largest LoRA rank in the adapter's config (`r` and any `rank_pattern`); None if it names none."""
    try:
        config = json.loads((path / ADAPTER_CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise AdapterUnusable(f"{ADAPTER_CONFIG_FILE} is not readable JSON: {exc}") from None
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    numbers = [int(rank) for rank in ranks if isinstance(rank, int)]
    return max(numbers) if numbers else None


def _same_model(a: str, b: str) -> bool:
    """Names of one model as people write them: a repo id, a directory, or the preset name (case aside)."""
    return a.rstrip("/").rsplit("/", 1)[-1].lower() == b.rstrip("/").rsplit("/", 1)[-1].lower()


def remove_tree(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
