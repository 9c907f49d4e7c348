"""What the server's handlers share: the engine, its load progress, and the metrics (one instance per app)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from kaito.api.engine_report import Refusal
from kaito.inference.config_follower import ConfigFollower
from kaito.inference.engine import Chunk, Engine, NotReady, Request
from kaito.inference.metrics import InferenceMetrics


@dataclass
class ServerState:
    engine: Engine
    max_model_len: int | None = None
    metrics: InferenceMetrics = field(default_factory=InferenceMetrics)
    clock: Callable[[], float] = time.perf_counter
    status: Literal["loading", "ready", "failed"] = "loading"
    error: str | None = None
    started: int = field(default_factory=lambda: int(time.time()))
    on_refusal: Callable[[Refusal], None] | None = None  # the engine refused to start with these settings
    follower: ConfigFollower | None = None  # adapters loaded, replaced and unloaded as the engine config changes

    @property
    def context_limit(self) -> int | None:
        """The configured limit, else the engine's own once it knows it (0 means not yet)."""
        return self.max_model_len or self.engine.max_model_len or None

    def require_ready(self) -> None:
        if self.status == "loading":
            raise NotReady("The model is still loading; retry when /health answers 200")
        if self.status == "failed":
            raise NotReady(f"The model failed to load: {self.error}")

    @contextlib.contextmanager
    def metering(self) -> Iterator[Metering]:
        """One generation's metrics: it counts in the queue depth until the block ends."""
        self.metrics.queue_depth.inc()
        try:
            yield Metering(self.metrics, self.clock, self.clock())
        finally:
            self.metrics.queue_depth.dec()

    async def generate(self, request: Request) -> AsyncGenerator[Chunk, None]:
        """The engine's stream, measured; closing this closes the engine's stream, which stops generation."""
        last = None
        inner = self.engine.generate(request)
        with self.metering() as metering:
            try:
                async for chunk in inner:
                    if chunk.text or chunk.finish_reason:
                        metering.first_output()
                    last = chunk
                    yield chunk
            finally:
                # An early exit (client gone, error) must reach the engine now, not when the GC gets to it.
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()
                if last is not None:
                    metering.tokens(last.prompt_tokens, last.completion_tokens)


@dataclass
class Metering:
    """Time to first output and token counts of one generation, observed once each."""

    metrics: InferenceMetrics
    clock: Callable[[], float]
    began: float
    waiting: bool = True  # for the first output

    def first_output(self) -> None:
        if self.waiting:
            self.waiting = False
            self.metrics.time_to_first_token.observe(self.clock() - self.began)

    def tokens(self, prompt: int, completion: int) -> None:
        self.metrics.prompt_tokens.inc(prompt)
        self.metrics.generation_tokens.inc(completion)


STATE = web.AppKey("kaito_state", ServerState)
