"""The affinity key of a request: the model and the first characters of its prompt, when the prompt is long.

A prompt shorter than the prefix length shares no long prefix worth a cache, so it gets no key and goes to the
least loaded replica.
"""

from __future__ import annotations

import json
from typing import Any

PREFIX_CHARS = 256


def affinity_key(body: bytes, *, prefix_chars: int = PREFIX_CHARS) -> str | None:
    """`model` + the first `prefix_chars` of the flattened messages (chat) or prompt (completions, legacy /chat)."""
    if len(body) < prefix_chars:  # the text alone would be shorter than the prefix
        return None
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict):
        return None
    text = _flatten(request, prefix_chars)
    if len(text) < prefix_chars:
        return None
    return f"{request.get('model') or ''}\0{text[:prefix_chars]}"


def _flatten(request: dict[str, Any], limit: int) -> str:
    messages = request.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        size = 0
        for message in messages:
            if not isinstance(message, dict):
                continue
            piece = f"{message.get('role') or ''}:{_content(message.get('content'))}\n"
            parts.append(piece)
            size += len(piece)
            if size >= limit:
                break
        return "".join(parts)
    prompt = request.get("prompt")
    if isinstance(prompt, list):
        prompt = "\n".join(str(p) for p in prompt)
    return prompt if isinstance(prompt, str) else ""


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # parts: [{"type": "text", "text": ...}, {"type": "image_url", ...}]
        return "".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return ""
