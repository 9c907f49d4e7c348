"""The routes that generate: OpenAI chat and text completions (whole or streamed) and the legacy `/chat`.

An engine with an OpenAI server of its own (an EventSource) streams its events to the client as they come
(`relay.py`); every other answer is built here from the engine's Chunks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from aiohttp import web

from kaito.inference.engine import Chunk, EngineError, EventSource, Request, UnknownModel
from kaito.inference.legacy import parse_legacy
from kaito.inference.openai_api import ApiCall, parse_body, parse_chat, parse_completion
from kaito.inference.openai_shapes import Reply
from kaito.inference.relay import relay_events
from kaito.inference.sse import EventStream
from kaito.inference.state import STATE, ServerState


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.require_ready()
    body = parse_body(await request.read())
    call = parse_chat(body, default_model=state.engine.served_model_name, limit=state.context_limit)
    return await _answer(request, state, call, chat=True)


async def completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.require_ready()
    body = parse_body(await request.read())
    call = parse_completion(body, default_model=state.engine.served_model_name, limit=state.context_limit)
    return await _answer(request, state, call, chat=False)


async def legacy_chat(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.require_ready()
    body = parse_body(await request.read())
    call = parse_legacy(body, model=state.engine.served_model_name, limit=state.context_limit)
    text, _ = await _collect(state, call.request)
    if call.echo_prompt and call.request.prompt is not None:
        text = call.request.prompt + text
    return web.json_response({"Result": text})


async def _answer(request: web.Request, state: ServerState, call: ApiCall, *, chat: bool) -> web.StreamResponse:
    _check_model(state, call.request.model)
    if call.stream and isinstance(state.engine, EventSource):
        return await relay_events(request, state, state.engine, call)
    reply = Reply.new(chat=chat, model=call.request.model)
    if call.stream:
        return await _stream(request, state, call, reply)
    text, final = await _collect(state, call.request)
    return web.json_response(reply.complete(text, final))


def _check_model(state: ServerState, model: str) -> None:
    served = state.engine.models()
    if model not in served:
        message = f"The model `{model}` does not exist. This server serves: {', '.join(served)}"
        raise UnknownModel(message, param="model", code="model_not_found")


async def _collect(state: ServerState, request: Request) -> tuple[str, Chunk]:
    parts: list[str] = []
    last: Chunk | None = None
    async with contextlib.aclosing(state.generate(request)) as chunks:
        async for chunk in chunks:
            parts.append(chunk.text)
            last = chunk
    if last is None:
        raise EngineError("The engine finished without producing a result")
    return "".join(parts), last


async def _stream(request: web.Request, state: ServerState, call: ApiCall, reply: Reply) -> web.StreamResponse:
    async with contextlib.aclosing(state.generate(call.request)) as chunks:
        # The engine refuses bad requests (404, 400, 429) before its first chunk: wait for it, so that
        # those still get a proper status code instead of an error inside a 200 stream.
        first = await anext(chunks, None)
        if first is None:
            raise EngineError("The engine finished without producing a result")
        events = await EventStream.open(request)
        await events.guard(_relay(events, reply, first, chunks, include_usage=call.include_usage))
    return events.response


async def _relay(
    events: EventStream, reply: Reply, first: Chunk, rest: AsyncGenerator[Chunk, None], *, include_usage: bool
) -> None:
    if reply.chat:
        await events.send(reply.chunk(None, role=True, include_usage=include_usage))
    final = first
    if first.text:
        await events.send(reply.chunk(first.text, include_usage=include_usage))
    async for chunk in rest:
        if chunk.text:
            await events.send(reply.chunk(chunk.text, include_usage=include_usage))
        final = chunk
    await events.send(reply.chunk(None, finish=final.finish_reason or "stop", include_usage=include_usage))
    if include_usage:
        await events.send(reply.usage_chunk(final))
    await events.done()
