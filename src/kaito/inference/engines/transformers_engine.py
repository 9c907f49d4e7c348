"""The engine `kaito serve` runs without vLLM: a transformers model on CPU (or any torch device), token by token.

All torch work (load, every forward step, unload) runs on one dedicated worker thread, so the event loop keeps serving,
the shared default executor is never clogged, and model state needs no lock. A semaphore of `max_concurrency` admits
requests; their steps queue FIFO on the worker and interleave token by token, each selecting its own adapter first, so
concurrent requests never see each other's adapter. Every request owns its KV cache and RNG, so its text depends only
on its own seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch

from kaito.api.engine_report import KV_TOO_SMALL, Refusal
from kaito.inference.engine import AdapterRefused, Chunk, NotReady, Overloaded, Request, Sampling, UnknownModel
from kaito.inference.engine_report import EngineRefused
from kaito.inference.engines.adapter_names import AdapterNames
from kaito.inference.engines.tf_adapters import AdapterSelector, add_adapter, remove_adapter
from kaito.inference.engines.tf_decode import CompletionText
from kaito.inference.engines.tf_model import LoadedModel, load_model, torch_dtype
from kaito.inference.engines.tf_request import Prompt, check_length, tokenize_request, validate_sampling
from kaito.inference.engines.tf_sampling import pick_token, request_generator

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]
_WARM_UP_TOKENS = 4
_T = TypeVar("_T")


class TransformersEngine:
    name = "transformers"

    def __init__(
        self,
        model_path: str | Path,
        *,
        served_model_name: str,
        max_model_len: int | None = None,
        adapters_dir: Path | None = None,
        adapter_strengths: Mapping[str, float] | None = None,
        max_concurrency: int = 1,
        max_queue: int = 32,
        dtype: str = "auto",
        device: str = "cpu",
        environ: Mapping[str, str] | None = None,
        kv_cache_memory: int | None = None,
        context_cap: int | None = None,
    ) -> None:
        """`environ` (default os.environ) supplies `<adapter>=<strength>` for adapters `adapter_strengths` omits.

        `kv_cache_memory` is the bytes this engine allows itself for KV caches (default: half of what the device has
        free once the weights are in); what they hold in tokens is `kv_cache_tokens`, and a budget that cannot hold
        one `max_model_len` sequence refuses the start, as vLLM does. `context_cap` (the plan's max-model-len) bounds
        the context the model's config gives when `max_model_len` is not set.
        """
        if max_concurrency < 1 or max_queue < 0 or (max_model_len is not None and max_model_len < 1):
            raise ValueError(f"bad limits: {max_concurrency=} (>= 1), {max_queue=} (>= 0), {max_model_len=} (>= 1)")
        torch_dtype(dtype)  # fail on a bad dtype now, not minutes into loading
        self.served_model_name = served_model_name
        self.max_model_len = max_model_len or 0  # resolved from the model's config by load()
        self.kv_cache_tokens = 0  # computed by load()
        self._kv_cache_memory = kv_cache_memory
        self._model_path = Path(model_path)
        self._requested_len = max_model_len
        self._context_cap = context_cap
        self._adapters_dir = adapters_dir
        self._strengths = dict(adapter_strengths or {})
        self._environ = os.environ if environ is None else environ
        self._dtype = dtype
        self._device = device
        self._max_queue = max_queue
        self._slots = asyncio.Semaphore(max_concurrency)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kaito-transformers")
        self._loaded: LoadedModel | None = None
        self._waiting = 0
        self._running = 0
        self._names = AdapterNames(drop=self._drop_later)
        self._added = 0  # live adapters loaded so far, for their internal names
        self._drops: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Requests queued for a generation slot."""
        return self._waiting

    @property
    def running(self) -> int:
        """Requests holding a generation slot."""
        return self._running

    def models(self) -> list[str]:
        return [self.served_model_name, *self._names.public()]

    async def load(self) -> None:
        if self._loaded is not None:
            return
        started = time.monotonic()
        loaded = await self._on_worker(self._load_blocking)
        self._loaded = loaded
        for name in loaded.adapters:
            self._names.publish(name, name)
        log.info(
            "loaded %s as %s (max_model_len %d, adapters %s) in %.1fs",
            self._model_path,
            self.served_model_name,
            self.max_model_len,
            loaded.adapters or "none",
            time.monotonic() - started,
        )

    async def generate(self, request: Request) -> AsyncIterator[Chunk]:
        loaded = self._require_loaded()
        adapter = self._adapter_for(request.model)
        validate_sampling(request.sampling)
        prompt = tokenize_request(loaded.tokenizer, request)
        check_length(prompt, max_tokens=request.sampling.max_tokens, max_model_len=self.max_model_len)
        with contextlib.ExitStack() as using:
            if adapter is not None:
                using.enter_context(self._names.using(adapter))
            async with self._slot():
                async for chunk in self._stream(loaded, adapter, prompt, request.sampling):
                    yield chunk

    async def load_adapter(self, name: str, path: Path, *, strength: float) -> None:
        """Load under a fresh internal name on the worker, then switch `name` to it (see AdapterNames)."""
        self._require_loaded()
        if name == self.served_model_name:
            raise AdapterRefused(f"adapter {name!r} clashes with the served model name")
        self._added += 1
        internal = f"kaito-live-{self._added}"
        await self._on_worker(self._add_blocking, internal, path, strength)
        self._names.publish(name, internal)
        log.info("adapter %s now served from %s (strength %s)", name, path, strength)

    async def unload_adapter(self, name: str) -> None:
        if self._names.remove(name):
            log.info("adapter %s is no longer served", name)

    async def close(self) -> None:
        for task in list(self._drops):
            await task
        await self._on_worker(self._unload)

    def _load_blocking(self) -> LoadedModel:
        loaded = load_model(
            self._model_path,
            dtype=self._dtype,
            device=self._device,
            adapters_dir=self._adapters_dir,
            strengths=self._strengths,
            environ=self._environ,
        )
        if self.served_model_name in loaded.adapters:
            raise ValueError(f"adapter directory {self.served_model_name!r} clashes with the served model name")
        self.max_model_len = _resolve_max_model_len(self._requested_len, loaded.context_limit)
        if self._requested_len is None and self._context_cap:
            self.max_model_len = min(self.max_model_len, self._context_cap)
        budget = self._kv_cache_memory if self._kv_cache_memory is not None else free_memory(self._device) // 2
        self.kv_cache_tokens = budget // kv_bytes_per_token(loaded)
        check_kv_fits(self.kv_cache_tokens, max_model_len=self.max_model_len, budget=budget)
        self._warm_up(loaded)
        return loaded

    def _warm_up(self, loaded: LoadedModel) -> None:
        feed: list[int] = loaded.tokenizer("Hello", add_special_tokens=True)["input_ids"] or [min(loaded.eos_ids)]
        cache = loaded.new_cache()
        for _ in range(_WARM_UP_TOKENS):
            logits = loaded.next_logits(None, feed, cache)
            feed = [int(torch.argmax(logits).item())]

    def _add_blocking(self, internal: str, path: Path, strength: float) -> None:
        loaded = self._require_loaded()
        loaded.model = add_adapter(loaded.model, internal, path, strength)
        if loaded.selector is None:
            loaded.selector = AdapterSelector(loaded.model)
        loaded.selector.reset(loaded.model)

    def _drop_later(self, internal: str) -> None:
        """An internal adapter nobody uses any more leaves the model on the worker, after the steps queued before."""

        async def drop() -> None:
            try:
                await self._on_worker(self._drop_blocking, internal)
            except Exception:
                log.exception("dropping adapter weights %s failed", internal)

        task = asyncio.create_task(drop(), name=f"kaito-adapter-drop-{internal}")
        self._drops.add(task)
        task.add_done_callback(self._drops.discard)

    def _drop_blocking(self, internal: str) -> None:
        loaded = self._loaded
        if loaded is None or loaded.selector is None:
            return
        loaded.model = remove_adapter(loaded.model, internal)
        if loaded.model is loaded.selector.model:
            loaded.selector.reset(loaded.model)
        else:
            loaded.selector = None

    def _unload(self) -> None:
        # Runs after any step already queued; later steps find no model and end their streams with NotReady.
        self._loaded = None  # nothing in the model graph is cyclic, so dropping the reference frees it
        if self._device.startswith("cuda"):
            torch.cuda.empty_cache()

    async def _on_worker(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _require_loaded(self) -> LoadedModel:
        if self._loaded is None:
            raise NotReady("the model is not loaded")
        return self._loaded

    def _adapter_for(self, model: str) -> str | None:
        """The internal adapter name a request for `model` runs on (None: the base model)."""
        if model == self.served_model_name:
            return None
        if (internal := self._names.internal(model)) is not None:
            return internal
        available = ", ".join(self.models())
        raise UnknownModel(
            f"The model `{model}` does not exist. Available models: {available}.", param="model", code="model_not_found"
        )

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self._waiting >= self._max_queue:
            raise Overloaded(f"{self._waiting} requests are already queued; retry shortly", retry_after=1)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._slots.release()

    async def _stream(
        self, loaded: LoadedModel, adapter: str | None, prompt: Prompt, sampling: Sampling
    ) -> AsyncIterator[Chunk]:
        cache = loaded.new_cache()
        generator = request_generator(sampling, loaded.device)
        text = CompletionText(loaded.decode, sampling.stop)
        prompt_tokens = len(prompt.token_ids)
        feed = prompt.token_ids
        for produced in range(1, sampling.max_tokens + 1):
            token = await self._on_worker(self._step, adapter, feed, cache, sampling, generator)
            feed = [token]
            last = produced == sampling.max_tokens
            piece, finish = _advance(text, token, loaded.eos_ids, last=last)
            if finish is not None:
                yield Chunk(piece, prompt_tokens, produced, finish)
                return
            if piece:
                yield Chunk(piece, prompt_tokens, produced)

    def _step(
        self, adapter: str | None, feed: list[int], cache: Any, sampling: Sampling, generator: torch.Generator
    ) -> int:
        if self._loaded is None:
            raise NotReady("the engine was closed during generation")
        logits = self._loaded.next_logits(adapter, feed, cache)
        with torch.inference_mode():
            return pick_token(logits, sampling, generator)


def _advance(
    text: CompletionText, token: int, eos_ids: frozenset[int], *, last: bool
) -> tuple[str, FinishReason | None]:
    """The text one new token releases, and why generation ends here, if it does."""
    if token in eos_ids:
        return text.finish(), "stop"
    piece = text.add(token)
    if text.stopped:
        return piece, "stop"
    if last:
        piece += text.finish()
        return piece, "stop" if text.stopped else "length"
    return piece, None


def _resolve_max_model_len(requested: int | None, model_limit: int | None) -> int:
    if model_limit is None:
        if requested is None:
            raise ValueError("the model config has no max_position_embeddings; pass max_model_len")
        return requested
    if requested is None:
        return model_limit
    if requested > model_limit:
        raise ValueError(f"max_model_len {requested} exceeds the model's max_position_embeddings {model_limit}")
    return requested


def kv_bytes_per_token(loaded: LoadedModel) -> int:
    """A key and a value per layer per KV head, in the weights' dtype (what a DynamicCache stores per token)."""
    config = loaded.config.get_text_config()
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    element = int(next(loaded.model.parameters()).element_size())
    return max(1, 2 * int(config.num_hidden_layers) * kv_heads * head_dim * element)


def free_memory(device: str) -> int:
    """Bytes the device has free now: the GPU's free memory, or the host's available physical pages."""
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_kv_fits(kv_tokens: int, *, max_model_len: int, budget: int) -> None:
    """Refuse, in vLLM's terms, a KV budget that cannot hold one sequence of `max_model_len` tokens."""
    if kv_tokens >= max_model_len:
        return
    message = (
        f"The model's max seq len ({max_model_len}) is larger than the maximum number of tokens that can be stored "
        f"in KV cache ({kv_tokens}) with {budget} bytes allowed for it. Decrease `max_model_len` or allow more memory."
    )
    refusal = Refusal(
        KV_TOO_SMALL, message, max_model_len=max_model_len, kv_cache_tokens=kv_tokens, fits_max_model_len=kv_tokens
    )
    raise EngineRefused(refusal)
