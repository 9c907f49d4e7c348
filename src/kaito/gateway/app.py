"""The gateway's HTTP face: the OpenAI routes and legacy /chat passed to a replica, /healthz and /metrics its own."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kaito.gateway.affinity import affinity_key
from kaito.gateway.forward import Forwarder
from kaito.gateway.gateway import Gateway

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
FORWARDER = web.AppKey("forwarder", Forwarder)
POSTED = ("/v1/chat/completions", "/v1/completions", "/chat")


def create_app(gateway: Gateway) -> web.Application:
    """Routes and, for the app's lifetime, a client session to the replicas and the gateway's background loops."""
    app = web.Application()
    app[GATEWAY] = gateway
    for path in POSTED:
        app.router.add_post(path, _proxy)
    app.router.add_get("/v1/models", _proxy)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.cleanup_ctx.append(_lifetime)
    return app


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    # No limit on connections (engines batch many requests); no total timeout (a generation may be long);
    # bytes pass through as the replica encoded them.
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=gateway.settings.connect_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        app[FORWARDER] = Forwarder(gateway, session)
        async with gateway.running():
            yield


async def _proxy(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    gateway.metrics.arrived.inc()
    body = await request.read()
    key = affinity_key(body, prefix_chars=gateway.settings.prefix_chars) if body else None
    response = await request.app[FORWARDER].forward(request, body, key=key)
    gateway.metrics.answered(response.status)
    return response


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _metrics(request: web.Request) -> web.Response:
    data = generate_latest(request.app[GATEWAY].metrics.registry)
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})
