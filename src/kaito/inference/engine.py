"""The engine contract the HTTP app serves from: load once, then stream generations; errors in OpenAI's terms.

EngineError(status, message, type, param, code)   what the app turns into {"error": {...}} with `status`
+-- UnknownModel      404  the request names a model (or adapter) this server does not serve
+-- PromptTooLong     400  prompt tokens + max_tokens exceed max_model_len (numbers in the message)
+-- BadParameter      400  a sampling value out of range; `param` names it
+-- Overloaded        429  the queue is full; `retry_after` seconds
+-- NotReady          503  still loading
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable


class EngineError(Exception):
    status = 500
    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class UnknownModel(EngineError):
    status = 404
    type = "invalid_request_error"


class PromptTooLong(EngineError):
    status = 400
    type = "invalid_request_error"


class BadParameter(EngineError):
    status = 400
    type = "invalid_request_error"


class Overloaded(EngineError):
    status = 429
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, code="overloaded")
        self.retry_after = retry_after


class NotReady(EngineError):
    status = 503
    type = "server_error"


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Request:
    """One generation: a raw `prompt`, or chat `messages` the engine renders with the model's chat template."""

    model: str
    sampling: Sampling = field(default_factory=Sampling)
    prompt: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True)
class Chunk:
    """A piece of streamed text; the last chunk carries `finish_reason` and the final token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"] | None = None


class Engine(Protocol):
    name: str  # "transformers" or "vllm"
    served_model_name: str
    max_model_len: int

    def models(self) -> list[str]:
        """The base model's served name first, then every adapter's name."""
        ...

    async def load(self) -> None:
        """Load weights and adapters and run one warm-up generation; /health turns 200 only after this."""
        ...

    def generate(self, request: Request) -> AsyncIterator[Chunk]:
        """Stream the completion; raises EngineError subclasses for bad requests before yielding."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class EventSource(Protocol):
    """An engine that runs an OpenAI server of its own: its SSE stream can reach the client as it comes."""

    def open_events(self, request: Request) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """The upstream's raw SSE bytes for a streamed `request`: OpenAI chunk events, then one usage-only event,
        then `data: [DONE]`. Entering raises EngineError subclasses for refused requests, before any byte."""
        ...


@runtime_checkable
class ReportsKvCache(Protocol):
    """An engine that knows, once loaded, how many tokens its KV cache holds (0 while it does not know)."""

    kv_cache_tokens: int


class AdapterRefused(Exception):
    """An adapter the engine will not serve (shape mismatch, refused by vLLM); the message is the engine's words."""


@runtime_checkable
class LiveAdapters(Protocol):
    """An engine that loads, replaces and unloads adapters while it serves.

    `load_adapter` reads `path` before it returns (the caller may delete it then). Loading a name that is served
    replaces it: requests already running on the old weights finish on them, later ones get the new."""

    async def load_adapter(self, name: str, path: Path, *, strength: float) -> None: ...

    async def unload_adapter(self, name: str) -> None: ...
