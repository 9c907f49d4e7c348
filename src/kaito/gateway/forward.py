"""One request passed to a replica and its answer passed back as it comes, retried elsewhere only before any byte.

A replica that refuses the connection is dropped for this request at once. One that drops the connection before
answering gets a second try, since a pooled keep-alive connection the replica had already closed fails the same
way; a second such failure drops it too. Once the replica's status line has arrived the request is never sent
again: a stream that breaks afterwards breaks for the client as well.
"""

from __future__ import annotations

import json
import logging

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from kaito.gateway.gateway import Gateway
from kaito.gateway.holding import HoldTimeout, QueueFull
from kaito.gateway.router import Replica

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 §7.6.1) and those the gateway's own server or client writes itself.
SKIP_REQUEST = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "upgrade"})
SKIP_RESPONSE = frozenset({"content-length", "connection", "keep-alive", "transfer-encoding", "date", "server"})


class Forwarder:
    """Sends requests over one client session to the replica the gateway picks for each attempt."""

    def __init__(self, gateway: Gateway, session: aiohttp.ClientSession) -> None:
        self.gateway = gateway
        self.session = session

    async def forward(self, request: web.Request, body: bytes, *, key: str | None) -> web.StreamResponse:
        gateway = self.gateway
        deadline = gateway.clock.now() + gateway.settings.hold_timeout
        headers = _copy(request.headers, SKIP_REQUEST)
        failures: dict[str, int] = {}
        dropped: frozenset[str] = frozenset()
        while True:
            try:
                replica = await gateway.replica_for(key, tried=dropped, deadline=deadline)
            except QueueFull:
                return _error(
                    503,
                    "queue_full",
                    "every place in the gateway's queue is taken; retry later",
                    headers={"Retry-After": str(gateway.settings.retry_after)},
                )
            except HoldTimeout:
                message = f"no replica became ready within {gateway.settings.hold_timeout:g} s"
                return _error(504, "hold_timeout", message)
            if replica is None:
                return _error(502, "replica_unreachable", "no ready replica accepted the request")
            gateway.started(replica)
            sent = gateway.clock.now()
            try:
                upstream = await self.session.request(
                    request.method, replica.url + request.path_qs, data=body or None, headers=headers
                )
            except aiohttp.ClientConnectorError as exc:
                log.info("replica %s refused a request, trying another: %s", replica.name, exc)
                dropped = _fail(failures, replica.name, weight=2)
                gateway.finished(replica)
                continue
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                log.info("replica %s dropped a request before answering: %r", replica.name, exc)
                dropped = _fail(failures, replica.name, weight=1)
                gateway.finished(replica)
                continue
            try:
                return await _pass_back(request, upstream, replica)
            finally:
                upstream.release()
                gateway.finished(replica)
                gateway.metrics.duration.observe(gateway.clock.now() - sent)


async def _pass_back(request: web.Request, upstream: aiohttp.ClientResponse, replica: Replica) -> web.StreamResponse:
    """A sized answer whole; anything else (SSE, chunked) one write per network read, never buffered."""
    headers = _copy(upstream.headers, SKIP_RESPONSE)
    if upstream.content_length is not None:
        try:
            data = await upstream.read()
        except aiohttp.ClientError as exc:
            log.warning("replica %s broke off its answer: %r", replica.name, exc)
            return _error(502, "replica_failed", f"replica {replica.name} broke off its answer")
        return web.Response(status=upstream.status, reason=upstream.reason, body=data, headers=headers)
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except aiohttp.ClientError as exc:
        # The status line has gone out: the client must see a broken stream, not a clean end.
        log.warning("replica %s broke off a stream: %r", replica.name, exc)
        raise
    await response.write_eof()
    return response


def _fail(failures: dict[str, int], name: str, *, weight: int) -> frozenset[str]:
    """Counts a failed attempt at replica `name`; returns the replicas with two failures, not to be tried again."""
    failures[name] = failures.get(name, 0) + weight
    return frozenset(name for name, count in failures.items() if count >= 2)


def _copy(headers: CIMultiDictProxy[str], skip: frozenset[str]) -> CIMultiDict[str]:
    copied = headers.copy()  # in C, then a few deletions: cheaper than filtering every header in Python
    for name in skip:
        if name in copied:
            del copied[name]
    return copied


def _error(status: int, kind: str, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """An OpenAI-shaped error body, so OpenAI clients show the gateway's words."""
    body = {"error": {"message": message, "type": kind, "code": status}}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)
