"""What the engine really got at start, or why it refused to start, in a form the operator reads back.

The plan predicts a KV cache and a context length; the engine decides. A refusal the same settings would meet again
(KV cache too small for max_model_len, CUDA out of memory) is raised as `EngineRefused`; `kaito serve` writes it to
the container's termination message (`kaito.api.engine_report`). vLLM's words are matched as vLLM writes them (v0 and
v1 wording).
"""

from __future__ import annotations

import re

from kaito.api.engine_report import KV_TOO_SMALL, OUT_OF_MEMORY, Refusal
from kaito.inference.engine import NotReady

DEFAULT_BLOCK_SIZE = 16  # vLLM's KV cache block size on CUDA unless --block-size says otherwise

_V0_KV = re.compile(
    r"The model's max seq len \((\d+)\) is larger than the maximum number of tokens that can be stored in KV cache "
    r"\((\d+)\)"
)
_V1_KV = re.compile(r"To serve at least one request with the models's max seq len \((\d+)\)")
_V1_FITS = re.compile(r"the estimated maximum model length is (\d+)")
_NO_BLOCKS = "No available memory for the cache blocks"
_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError")
_V1_SIZE = re.compile(r"GPU KV cache size: ([\d,]+) tokens")
_V0_BLOCKS = re.compile(r"# (?:GPU|CUDA|cuda) blocks: (\d+)")


class EngineRefused(NotReady):
    """The engine will not start with these settings; starting it again with the same ones gets the same answer."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def refusal_in(lines: list[str]) -> Refusal | None:
    """vLLM's refusal among its last log lines, with the numbers its message gives."""
    for line in reversed(lines):
        if found := _V0_KV.search(line):
            asked, held = int(found[1]), int(found[2])
            words = _words(line)
            return Refusal(KV_TOO_SMALL, words, max_model_len=asked, kv_cache_tokens=held, fits_max_model_len=held)
        if found := _V1_KV.search(line):
            fits = _V1_FITS.search(line)
            most = int(fits[1]) if fits else None
            return Refusal(KV_TOO_SMALL, _words(line), max_model_len=int(found[1]), fits_max_model_len=most)
        if _NO_BLOCKS in line:
            return Refusal(KV_TOO_SMALL, _words(line), kv_cache_tokens=0)
        if _OOM.search(line):
            return Refusal(OUT_OF_MEMORY, _words(line))
    return None


def kv_tokens_in(line: str, *, block_size: int = DEFAULT_BLOCK_SIZE) -> int | None:
    """The KV cache size in tokens from vLLM's start-up log line (v1 says tokens, v0 says GPU blocks)."""
    if found := _V1_SIZE.search(line):
        return int(found[1].replace(",", ""))
    if found := _V0_BLOCKS.search(line):
        return int(found[1]) * block_size
    return None


def _words(line: str) -> str:
    """The message without vLLM's log prefix (process, level, time, source)."""
    for marker in ("ValueError: ", "RuntimeError: ", "OutOfMemoryError: ", "ERROR "):
        if marker in line:
            return line[line.index(marker) :].strip()
    return line.strip()
