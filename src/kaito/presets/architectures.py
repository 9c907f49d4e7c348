"""The model architectures vLLM serves, kept with the catalog: a Hugging Face model outside it must name one."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib import resources

LIST_FILE = "vllm_architectures.txt"


@functools.cache
def served_architectures() -> frozenset[str]:
    """The architectures in the packaged list (kaito.presets/data/vllm_architectures.txt)."""
    text = resources.files("kaito.presets").joinpath("data", LIST_FILE).read_text(encoding="utf-8")
    return frozenset(line.split("#", 1)[0].strip() for line in text.splitlines()) - {""}


def unserved(architectures: Iterable[str]) -> str | None:
    """Why a config.json's `architectures` cannot be served by vLLM, or None when one of them can."""
    named = [a for a in architectures if a]
    if not named:
        return "config.json names no architectures, so vLLM cannot tell which model class to load"
    if any(a in served_architectures() for a in named):
        return None
    return (
        f"architecture {', '.join(named)} is not one vLLM serves "
        f"(see {LIST_FILE} in kaito.presets: the architectures of vLLM's supported-models list)"
    )
