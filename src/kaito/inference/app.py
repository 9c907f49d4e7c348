"""The inference pod's HTTP app on port 5000: OpenAI routes, legacy /chat, /health and /metrics over one Engine.

The app owns the engine's lifecycle: a cleanup context starts `engine.load()` in the background (so /health can
answer 503 "loading" meanwhile) and closes the engine when the app shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from kaito.api.adapter_report import ADAPTERS_PATH, AdapterReports
from kaito.api.engine_report import Refusal
from kaito.inference import generation
from kaito.inference.config_follower import ConfigFollower
from kaito.inference.engine import Engine, EngineError, Overloaded, ReportsKvCache
from kaito.inference.engine_report import EngineRefused
from kaito.inference.metrics import CONTENT_TYPE
from kaito.inference.openai_shapes import model_list
from kaito.inference.state import STATE, ServerState

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024 * 1024  # long-context prompts are far beyond aiohttp's 1 MiB default
CLIENT_GONE = 499  # the status nginx records when the client closes the connection before the answer


def create_app(
    engine: Engine,
    *,
    max_model_len: int | None = None,
    on_refusal: Callable[[Refusal], None] | None = None,
    follower: ConfigFollower | None = None,
) -> web.Application:
    """`on_refusal` hears the engine refusing to start (KV cache too small, out of memory); /health says so too.
    `follower` brings the adapters to what the engine config lists, once the engine is loaded."""
    app = web.Application(middlewares=[_errors_and_metrics], client_max_size=MAX_BODY)
    app[STATE] = ServerState(engine, max_model_len=max_model_len, on_refusal=on_refusal, follower=follower)
    app.cleanup_ctx.append(_engine_lifecycle)
    app.router.add_post("/v1/chat/completions", generation.chat_completions)
    app.router.add_post("/v1/completions", generation.completions)
    app.router.add_post("/chat", generation.legacy_chat)
    app.router.add_get("/v1/models", _models)
    app.router.add_get(ADAPTERS_PATH, _adapters)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    return app


async def _engine_lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    task = asyncio.create_task(_load_and_follow(state), name="kaito-engine-load")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if state.follower is not None:
        await state.follower.manager.close()
    try:
        await state.engine.close()
    except Exception:
        log.exception("closing the %s engine failed", state.engine.name)


async def _load_and_follow(state: ServerState) -> None:
    await _load(state)
    if state.status == "ready" and state.follower is not None:
        try:
            await state.follower.run()
        except Exception:
            log.exception("following the engine config stopped; adapters stay as they are")


async def _load(state: ServerState) -> None:
    began = state.clock()
    log.info("loading the %s engine for %s", state.engine.name, state.engine.served_model_name)
    try:
        await state.engine.load()
    except EngineRefused as exc:
        state.status, state.error = "failed", f"{exc.refusal.reason}: {exc.refusal.message}"
        log.error("the %s engine refused to start: %s", state.engine.name, state.error)
        if state.on_refusal is not None:
            state.on_refusal(exc.refusal)
        return
    except Exception as exc:
        state.status, state.error = "failed", f"{type(exc).__name__}: {exc}"
        log.exception("the %s engine failed to load", state.engine.name)
        return
    seconds = state.clock() - began
    state.metrics.model_load.set(seconds)
    state.metrics.max_model_len.set(state.engine.max_model_len)
    if isinstance(state.engine, ReportsKvCache):
        state.metrics.kv_cache_tokens.set(state.engine.kv_cache_tokens)
    log.info(
        "the %s engine got max_model_len %d, KV cache %s tokens",
        state.engine.name,
        state.engine.max_model_len,
        state.engine.kv_cache_tokens if isinstance(state.engine, ReportsKvCache) else "unknown",
    )
    state.status = "ready"
    log.info("the %s engine is ready after %.1fs", state.engine.name, seconds)


async def _health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.status == "ready":
        return web.json_response({"status": "Healthy"})
    body = {"status": state.status} | ({"error": state.error} if state.error else {})
    return web.json_response(body, status=503)


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        model_list(state.engine.models(), created=state.started, max_model_len=state.context_limit)
    )


async def _adapters(request: web.Request) -> web.Response:
    follower = request.app[STATE].follower
    reports = AdapterReports(adapters=follower.manager.reports() if follower is not None else [])
    return web.json_response(reports.model_dump(mode="json"))


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request is counted by route and status, whatever happened to it."""
    state = request.app[STATE]
    began = state.clock()
    try:
        response = await _guarded(request, handler)
    except asyncio.CancelledError:
        _record(request, began, str(CLIENT_GONE))
        raise
    _record(request, began, str(response.status))
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as an OpenAI error object; nothing a client sends can crash the server."""
    try:
        return await handler(request)
    except EngineError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        return _http_error(request, exc)
    except ConnectionResetError:
        log.info("client went away during %s %s", request.method, request.path)
        return web.Response(status=CLIENT_GONE)  # never delivered; counted as such
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return error_response(EngineError("The server had an error while processing your request"))


def _record(request: web.Request, began: float, code: str) -> None:
    state = request.app[STATE]
    route = _route(request)
    state.metrics.duration.labels(route).observe(state.clock() - began)
    state.metrics.requests.labels(route, code).inc()


def error_response(exc: EngineError) -> web.Response:
    headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))} if isinstance(exc, Overloaded) else None
    return web.json_response(exc.body(), status=exc.status, headers=headers)


def _http_error(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        return exc
    kind = "invalid_request_error" if exc.status < 500 else "server_error"
    error: dict[str, Any] = {"message": f"{exc.reason}: {request.method} {request.path}", "type": kind}
    body = {"error": error | {"param": None, "code": None}}
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return web.json_response(body, status=exc.status, headers=headers)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "other"
