"""KAITO's legacy `POST /chat` (the transformers runtime before v0.7), kept so existing clients and READMEs work.

Body: `prompt` (text generation) or `messages` (conversation), optional `generate_kwargs` in Hugging Face terms,
optional `return_full_text` (default true, as in the Hugging Face pipeline: the prompt is echoed before the
generated text). Answer: `{"Result": "<text>"}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kaito.inference.engine import BadParameter, Request, Sampling
from kaito.inference.openai_api import (
    boolean,
    check_max_tokens,
    implicit_max_tokens,
    integer,
    number,
    parse_messages,
)

DEFAULT_MAX_LENGTH = 200  # the legacy server's generate_kwargs.max_length default


@dataclass(frozen=True)
class LegacyCall:
    request: Request
    echo_prompt: bool


def parse_legacy(body: dict[str, Any], *, model: str, limit: int | None) -> LegacyCall:
    kwargs = body.get("generate_kwargs")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise BadParameter("'generate_kwargs' must be an object", param="generate_kwargs")
    sampling = _sampling(kwargs, limit)
    if body.get("messages") is not None:
        if body.get("prompt") is not None:
            raise BadParameter("Send either 'prompt' or 'messages', not both", param="prompt")
        return LegacyCall(Request(model=model, sampling=sampling, messages=parse_messages(body)), echo_prompt=False)
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        message = (
            "Missing required parameter: 'prompt' (or 'messages')" if prompt is None else "'prompt' must be a string"
        )
        raise BadParameter(message, param="prompt")
    echo = boolean(body, "return_full_text")
    return LegacyCall(Request(model=model, sampling=sampling, prompt=prompt), echo_prompt=echo is not False)


def _sampling(kwargs: dict[str, Any], limit: int | None) -> Sampling:
    where = "generate_kwargs."
    name = "max_new_tokens" if kwargs.get("max_new_tokens") is not None else "max_length"
    max_tokens = integer(kwargs, name, low=1, where=where)
    if max_tokens is None:
        max_tokens = implicit_max_tokens(DEFAULT_MAX_LENGTH, limit)
    check_max_tokens(max_tokens, limit, param=where + name)
    temperature = number(kwargs, "temperature", where=where)
    top_p = number(kwargs, "top_p", where=where)
    if temperature is not None and temperature < 0:
        raise BadParameter(f"'{where}temperature' must be >= 0", param=f"{where}temperature")
    if top_p is not None and not 0 < top_p <= 1:
        raise BadParameter(f"'{where}top_p' must be in (0, 1]", param=f"{where}top_p")
    if boolean(kwargs, "do_sample", where=where) is False:
        temperature = 0.0  # greedy, as Hugging Face's generate() does without sampling
    return Sampling(
        max_tokens=max_tokens,
        temperature=1.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
    )
