"""Checks a request and turns it into prompt token ids, so bad input fails with OpenAI-shaped errors before any work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from kaito.inference.engine import BadParameter, PromptTooLong, Request, Sampling

MAX_STOP_STRINGS = 4


@dataclass(frozen=True)
class Prompt:
    token_ids: list[int]
    source: str  # "prompt" or "messages": the request field the tokens came from, for error messages


def validate_sampling(sampling: Sampling) -> None:
    if sampling.max_tokens < 1:
        raise BadParameter(f"max_tokens must be at least 1, got {sampling.max_tokens}", param="max_tokens")
    if not 0.0 <= sampling.temperature <= 2.0:
        raise BadParameter(f"temperature must be in [0, 2], got {sampling.temperature}", param="temperature")
    if not 0.0 < sampling.top_p <= 1.0:
        raise BadParameter(f"top_p must be in (0, 1], got {sampling.top_p}", param="top_p")
    if len(sampling.stop) > MAX_STOP_STRINGS:
        raise BadParameter(f"at most {MAX_STOP_STRINGS} stop strings, got {len(sampling.stop)}", param="stop")
    if any(not isinstance(s, str) or not s for s in sampling.stop):
        raise BadParameter("stop strings must be non-empty strings", param="stop")


def validate_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    if not messages:
        raise BadParameter("messages must be a non-empty list", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadParameter(f"messages[{index}] must be an object", param="messages")
        if not isinstance(message.get("role"), str) or not message["role"]:
            raise BadParameter(f"messages[{index}].role must be a non-empty string", param="messages")
        if not isinstance(message.get("content"), str):
            raise BadParameter(f"messages[{index}].content must be a string", param="messages")
    return [dict(m) for m in messages]


def render_chat(tokenizer: Any, messages: Sequence[Any]) -> str:
    checked = validate_messages(messages)
    try:
        text = tokenizer.apply_chat_template(checked, tokenize=False, add_generation_prompt=True)
    except (ValueError, TypeError, KeyError, jinja2.TemplateError) as exc:
        raise BadParameter(f"cannot render messages with the model's chat template: {exc}", param="messages") from exc
    if not isinstance(text, str):
        raise BadParameter("the model's chat template did not render text", param="messages")
    return text


def tokenize_request(tokenizer: Any, request: Request) -> Prompt:
    """Chat text already holds the template's special tokens; a raw prompt gets the tokenizer's own (e.g. BOS)."""
    if request.prompt is not None and request.messages is not None:
        raise BadParameter("give either prompt or messages, not both", param="messages")
    if request.messages is not None:
        ids = tokenizer(render_chat(tokenizer, request.messages), add_special_tokens=False)["input_ids"]
        source = "messages"
    elif request.prompt is not None:
        ids = tokenizer(request.prompt, add_special_tokens=True)["input_ids"]
        source = "prompt"
    else:
        raise BadParameter("either prompt or messages is required", param="prompt")
    if not ids:
        raise BadParameter(f"the {source} is empty after tokenization", param=source)
    return Prompt(token_ids=list(ids), source=source)


def check_length(prompt: Prompt, *, max_tokens: int, max_model_len: int) -> None:
    total = len(prompt.token_ids) + max_tokens
    if total <= max_model_len:
        return
    raise PromptTooLong(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested {total} tokens "
        f"({len(prompt.token_ids)} in the {prompt.source}, {max_tokens} in the completion). "
        f"Please reduce the length of the {prompt.source} or completion.",
        param=prompt.source,
        code="context_length_exceeded",
    )
