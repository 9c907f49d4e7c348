"""What the server's handlers share: the engine, its load progress, and the metrics (one instance per app)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

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

    @property
    def context_limit(self) -> int | None:
        """The configured limit, else the engine's own once it knows it (0 means not yet)."""
        return self.max_model_len or self.engine.max_model_len or None

    def require_ready(self) -> None:
        if self.status == "loading":
            raise NotReady("The model is still loading; retry when /health answers 200")
        if self.status == "failed":
            raise NotReady(f"The model failed to load: {self.error}")

    async def generate(self, request: Request) -> AsyncGenerator[Chunk, None]:
        """The engine's stream, measured; closing this closes the engine's stream, which stops generation."""
        m = self.metrics
        began = self.clock()
        first, last = True, None
        inner = self.engine.generate(request)
        m.queue_depth.inc()
        try:
            async for chunk in inner:
                if first and (chunk.text or chunk.finish_reason):
                    m.time_to_first_token.observe(self.clock() - began)
                    first = False
                last = chunk
                yield chunk
        finally:
            m.queue_depth.dec()
            # An early exit (client gone, error) must reach the engine now, not when the GC gets to it.
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()
            if last is not None:
                m.prompt_tokens.inc(last.prompt_tokens)
                m.generation_tokens.inc(last.completion_tokens)


STATE = web.AppKey("kaito_state", ServerState)
