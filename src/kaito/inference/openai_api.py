"""OpenAI's request bodies turned into engine Requests, with 400s that name the offending parameter.

Null fields count as absent (OpenAI does the same). Features the engines cannot honour (n > 1, logprobs,
echo, tools, batched prompts) are refused rather than silently ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kaito.inference.engine import BadParameter, Request, Sampling

ROLES = ("system", "developer", "user", "assistant", "tool")
COMPLETION_MAX_TOKENS = 16  # OpenAI's documented default for /v1/completions
CHAT_MAX_TOKENS = Sampling().max_tokens
# Parameters we cannot honour, with the values that mean "not asked for".
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "logprobs": (None, False, 0),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "best_of": (None, 1),
    "suffix": (None, ""),
    "tools": (None, []),
}


@dataclass(frozen=True)
class ApiCall:
    """One validated OpenAI request: what to generate and how to deliver it."""

    request: Request
    stream: bool = False
    include_usage: bool = False


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both
        raise BadParameter(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadParameter("The request body must be a JSON object", code="invalid_json")
    return body


def parse_chat(body: dict[str, Any], *, default_model: str, limit: int | None) -> ApiCall:
    _refuse_unsupported(body)
    sampling = parse_sampling(body, default_max_tokens=CHAT_MAX_TOKENS, limit=limit)
    request = Request(model=_model(body, default_model), sampling=sampling, messages=parse_messages(body))
    return _call(body, request)


def parse_completion(body: dict[str, Any], *, default_model: str, limit: int | None) -> ApiCall:
    _refuse_unsupported(body)
    sampling = parse_sampling(body, default_max_tokens=COMPLETION_MAX_TOKENS, limit=limit)
    return _call(body, Request(model=_model(body, default_model), sampling=sampling, prompt=_prompt(body)))


def parse_sampling(body: dict[str, Any], *, default_max_tokens: int, limit: int | None, where: str = "") -> Sampling:
    max_tokens = integer(body, "max_completion_tokens", low=1, where=where)
    if max_tokens is None:
        max_tokens = integer(body, "max_tokens", low=1, where=where)
    if max_tokens is None:
        max_tokens = implicit_max_tokens(default_max_tokens, limit)
    check_max_tokens(max_tokens, limit, param=f"{where}max_tokens")
    return Sampling(
        max_tokens=max_tokens,
        temperature=_in_range(body, "temperature", 1.0, low=0.0, high=2.0, where=where),
        top_p=_in_range(body, "top_p", 1.0, low=0.0, high=1.0, where=where, low_open=True),
        stop=_stop(body, where),
        seed=integer(body, "seed", where=where),
    )


def implicit_max_tokens(default: int, limit: int | None) -> int:
    """The budget when the client set none. The app cannot count prompt tokens, so it leaves half the context
    to the prompt rather than make every longer prompt fail with "prompt too long"."""
    return min(default, max(1, limit // 2)) if limit else default


def check_max_tokens(max_tokens: int, limit: int | None, *, param: str) -> None:
    if limit and max_tokens > limit:
        message = f"{param} ({max_tokens}) is larger than the model's context length ({limit} tokens)"
        raise BadParameter(message, param=param)


def parse_messages(body: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    raw = body.get("messages")
    if raw is None:
        raise BadParameter(
            "Missing required parameter: 'messages'", param="messages", code="missing_required_parameter"
        )
    if not isinstance(raw, list) or not raw:
        raise BadParameter("'messages' must be a non-empty array of messages", param="messages")
    return tuple(_message(message, f"messages[{i}]") for i, message in enumerate(raw))


def number(body: dict[str, Any], name: str, *, where: str = "") -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadParameter(f"'{where}{name}' must be a number, not {_kind(value)}", param=f"{where}{name}")
    return float(value)


def integer(body: dict[str, Any], name: str, *, low: int | None = None, where: str = "") -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadParameter(f"'{where}{name}' must be an integer, not {_kind(value)}", param=f"{where}{name}")
    if low is not None and value < low:
        raise BadParameter(f"'{where}{name}' must be at least {low}, got {value}", param=f"{where}{name}")
    return value


def boolean(body: dict[str, Any], name: str, *, where: str = "") -> bool | None:
    value = body.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise BadParameter(f"'{where}{name}' must be a boolean, not {_kind(value)}", param=f"{where}{name}")


def _call(body: dict[str, Any], request: Request) -> ApiCall:
    stream = bool(boolean(body, "stream"))
    options = body.get("stream_options")
    if options is None:
        return ApiCall(request, stream=stream)
    if not isinstance(options, dict):
        raise BadParameter("'stream_options' must be an object", param="stream_options")
    if not stream:
        raise BadParameter("'stream_options' is only allowed when 'stream' is true", param="stream_options")
    return ApiCall(request, stream=True, include_usage=bool(boolean(options, "include_usage", where="stream_options.")))


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = integer(body, "n", low=1)
    if n is not None and n != 1:
        raise BadParameter(f"Only n=1 is supported, got n={n}", param="n")
    for name, neutral in UNSUPPORTED.items():
        if body.get(name) not in neutral:
            raise BadParameter(f"'{name}' is not supported by this server", param=name)


def _model(body: dict[str, Any], default: str) -> str:
    value = body.get("model")
    if value is None:
        return default
    if not isinstance(value, str) or not value:
        raise BadParameter("'model' must be a non-empty string", param="model")
    return value


def _prompt(body: dict[str, Any]) -> str:
    value = body.get("prompt")
    if value is None:
        raise BadParameter("Missing required parameter: 'prompt'", param="prompt", code="missing_required_parameter")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
        raise BadParameter(
            f"Batched prompts are not supported: send 1 prompt per request, not {len(value)}", param="prompt"
        )
    raise BadParameter(f"'prompt' must be a string, not {_kind(value)}", param="prompt")


def _message(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadParameter(f"'{where}' must be an object, not {_kind(value)}", param=where)
    role = value.get("role")
    if role not in ROLES:
        raise BadParameter(f"'{where}.role' must be one of {', '.join(ROLES)}; got {role!r}", param=f"{where}.role")
    message = {"role": role, "content": _content(value.get("content"), role, where)}
    if isinstance(value.get("name"), str):
        message["name"] = value["name"]
    return message


def _content(value: Any, role: str, where: str) -> str:
    if isinstance(value, str):
        return value
    if value is None and role == "assistant":  # an assistant turn that only called tools
        return ""
    if not isinstance(value, list):
        raise BadParameter(f"'{where}.content' must be a string or an array of text parts", param=f"{where}.content")
    texts = []
    for i, part in enumerate(value):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise BadParameter(f"'{where}.content[{i}]': only text parts are supported", param=f"{where}.content[{i}]")
        texts.append(part["text"])
    return "\n".join(texts)


def _in_range(
    body: dict[str, Any], name: str, default: float, *, low: float, high: float, where: str, low_open: bool = False
) -> float:
    value = number(body, name, where=where)
    if value is None:
        return default
    if value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise BadParameter(
            f"'{where}{name}' must be in {bracket}{low:g}, {high:g}], got {value:g}", param=f"{where}{name}"
        )
    return value


def _stop(body: dict[str, Any], where: str) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(s for s in value if s)
    raise BadParameter(f"'{where}stop' must be a string or an array of strings", param=f"{where}stop")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
