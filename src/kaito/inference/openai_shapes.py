"""OpenAI's response objects and stream chunks, built in one place so every route answers in exactly the same shape."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from kaito.inference.engine import Chunk


@dataclass(frozen=True)
class Reply:
    """The identity one response shares with all of its stream chunks: id, creation time, model, and kind."""

    chat: bool
    model: str
    id: str
    created: int

    @classmethod
    def new(cls, *, chat: bool, model: str) -> Reply:
        prefix = "chatcmpl" if chat else "cmpl"
        return cls(chat=chat, model=model, id=f"{prefix}-{uuid.uuid4().hex}", created=int(time.time()))

    def complete(self, text: str, final: Chunk) -> dict[str, Any]:
        """The whole (non-streamed) answer."""
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice |= {"logprobs": None, "finish_reason": final.finish_reason or "stop"}
        object_ = "chat.completion" if self.chat else "text_completion"
        return self._envelope(object_, [choice]) | {"usage": usage(final)}

    def chunk(
        self, text: str | None, *, role: bool = False, finish: str | None = None, include_usage: bool = False
    ) -> dict[str, Any]:
        """One stream event; `text=None` sends an empty delta (the role opener, or the finishing chunk)."""
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        choice |= {"logprobs": None, "finish_reason": finish}
        event = self._envelope(self._chunk_object, [choice])
        return event | {"usage": None} if include_usage else event

    def usage_chunk(self, final: Chunk) -> dict[str, Any]:
        """The extra last event `stream_options.include_usage` asks for: no choices, just the counts."""
        return self._envelope(self._chunk_object, []) | {"usage": usage(final)}

    @property
    def _chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def _envelope(self, object_: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": object_, "created": self.created, "model": self.model, "choices": choices}


def usage(final: Chunk) -> dict[str, int]:
    return {
        "prompt_tokens": final.prompt_tokens,
        "completion_tokens": final.completion_tokens,
        "total_tokens": final.prompt_tokens + final.completion_tokens,
    }


def model_list(names: list[str], *, created: int, max_model_len: int | None) -> dict[str, Any]:
    """`GET /v1/models`: the base model first, then its adapters (whose `parent` is the base)."""
    base = names[0] if names else None
    data = []
    for name in names:
        card: dict[str, Any] = {"id": name, "object": "model", "created": created, "owned_by": "kaito"}
        card |= {"root": base, "parent": None if name == base else base}
        if max_model_len:
            card["max_model_len"] = max_model_len
        data.append(card)
    return {"object": "list", "data": data}
