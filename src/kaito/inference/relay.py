"""Streamed answers from an engine with an OpenAI server of its own (vLLM), passed on as they come.

Re-shaping every event (parse, rebuild, re-serialise, one write each) cost the server more CPU per token than
the client spent reading it, so the engine's events go to the client unchanged, one write per network read.
Only what the metrics need is parsed: events up to the first generated text (time to first token) and the
usage-only last event (token counts), which is dropped again unless the client asked for it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from kaito.inference.engine import EngineError, EventSource
from kaito.inference.openai_api import ApiCall
from kaito.inference.sse import EventCutter, EventStream, payloads
from kaito.inference.state import Metering, ServerState

USAGE_KEY = b'"usage"'  # a key: inside a JSON string the quotes would be escaped
LAST_EVENT = b"\n\ndata: [DONE]\n\n"


async def relay_events(
    request: web.Request, state: ServerState, source: EventSource, call: ApiCall
) -> web.StreamResponse:
    with state.metering() as metering:
        # Refusals (404, 400, 429) come before the first byte, so they keep their status code.
        async with source.open_events(call.request) as upstream:
            events = await EventStream.open(request)
            await events.guard(_pass_on(events, upstream, metering, include_usage=call.include_usage))
    return events.response


async def _pass_on(
    events: EventStream, upstream: AsyncIterator[bytes], metering: Metering, *, include_usage: bool
) -> None:
    cutter, tail = EventCutter(), b""
    async for data in upstream:
        whole = cutter.feed(data)
        if not whole:
            continue
        if metering.waiting:
            _look_for_output(whole, metering)
        if USAGE_KEY in whole:
            whole = _count_usage(whole, metering, keep=include_usage)
        if whole:
            await events.response.write(whole)
            tail = whole
    if not (b"\n\n" + tail).endswith(LAST_EVENT):
        raise EngineError("The engine's stream ended before it was complete")
    await events.response.write_eof()


def _look_for_output(whole: bytes, metering: Metering) -> None:
    for payload in payloads(whole):
        event = _json(payload)
        for choice in event.get("choices") or ():
            if choice.get("text") or (choice.get("delta") or {}).get("content") or choice.get("finish_reason"):
                metering.first_output()
                return


def _count_usage(whole: bytes, metering: Metering, *, keep: bool) -> bytes:
    """Counts the tokens of the usage-only event; returns the events without it unless the client asked for it."""
    kept = []
    for event in whole.split(b"\n\n")[:-1]:
        usage = next((_json(p).get("usage") for p in payloads(event)), None) if USAGE_KEY in event else None
        if isinstance(usage, dict):
            metering.first_output()  # a stream with no text at all still ends its wait here
            metering.tokens(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
            if not keep:
                continue
        kept.append(event + b"\n\n")
    return b"".join(kept)


def _json(payload: bytes) -> dict[str, Any]:
    if payload.startswith(b"{"):
        try:
            event = json.loads(payload)
        except ValueError:
            return {}
        return event if isinstance(event, dict) else {}
    return {}
