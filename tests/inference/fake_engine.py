"""A scripted Engine for the HTTP app's tests: deterministic answers, adjustable delays, failures on demand.

The answer to a prompt is "you said: <the prompt's words>" (for chat, the last message's words), one chunk per
word; a token is a whitespace-separated word, so counts are easy to predict.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from kaito.inference.engine import Chunk, NotReady, Overloaded, PromptTooLong, Request, UnknownModel


def answer_words(request: Request) -> list[str]:
    text = request.prompt if request.prompt is not None else str((request.messages or ({},))[-1].get("content", ""))
    return ["you", "said:", *text.split()]


def prompt_tokens(request: Request) -> int:
    if request.prompt is not None:
        return len(request.prompt.split())
    return sum(len(str(m.get("content", "")).split()) for m in request.messages or ())


@dataclass
class FakeEngine:
    served_model_name: str = "fake-model"
    max_model_len: int = 64
    adapters: tuple[str, ...] = ()
    load_gate: asyncio.Event | None = None  # load() waits for it when set
    load_error: Exception | None = None
    token_delay: float = 0.0
    max_in_flight: int | None = None  # beyond this many concurrent generations: Overloaded
    retry_after: float = 2.0
    fail_with: Exception | None = None  # raised before the first chunk
    fail_after: int | None = None  # a RuntimeError after this many chunks
    name: str = "fake"
    loaded: bool = False
    closed: bool = False
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    finished: int = 0  # generations that ran to their end
    aborted: int = 0  # generations closed early (client gone)
    produced: int = 0  # words emitted, all generations together

    def models(self) -> list[str]:
        return [self.served_model_name, *self.adapters]

    async def load(self) -> None:
        if self.load_gate is not None:
            await self.load_gate.wait()
        if self.load_error is not None:
            raise self.load_error
        self.loaded = True

    async def close(self) -> None:
        self.closed = True

    async def generate(self, request: Request) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        self._admit(request)
        self.in_flight += 1
        done = False
        try:
            async for chunk in self._words(request):
                yield chunk
            done = True
        finally:
            self.in_flight -= 1
            self.finished += done
            self.aborted += not done

    def _admit(self, request: Request) -> None:
        if not self.loaded:
            raise NotReady("fake engine not loaded")
        if request.model not in self.models():
            raise UnknownModel(f"no model {request.model}", param="model")
        if self.fail_with is not None:
            raise self.fail_with
        used, wanted = prompt_tokens(request), request.sampling.max_tokens
        if used + wanted > self.max_model_len:
            raise PromptTooLong(
                f"This model's maximum context length is {self.max_model_len} tokens; you asked for "
                f"{used + wanted} ({used} in the prompt, {wanted} to generate)",
                param="messages" if request.messages is not None else "prompt",
            )
        if self.max_in_flight is not None and self.in_flight >= self.max_in_flight:
            raise Overloaded("fake engine is busy", retry_after=self.retry_after)

    async def _words(self, request: Request) -> AsyncIterator[Chunk]:
        words = answer_words(request)
        used, limit = prompt_tokens(request), request.sampling.max_tokens
        text, sent = "", 0
        for word in words[:limit]:
            piece = word if not text else f" {word}"
            stop = next((s for s in request.sampling.stop if s in text + piece), None)
            if stop is not None:
                cut = (text + piece).index(stop)
                if cut > len(text):
                    yield Chunk((text + piece)[len(text) : cut], used, sent)
                yield Chunk("", used, sent, finish_reason="stop")
                return
            if self.fail_after is not None and sent >= self.fail_after:
                raise RuntimeError("fake engine broke mid-stream")
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            text, sent = text + piece, sent + 1
            self.produced += 1
            yield Chunk(piece, used, sent)
        yield Chunk("", used, sent, finish_reason="length" if len(words) > limit else "stop")
