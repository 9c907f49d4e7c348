"""The manager's two small HTTP servers: Prometheus metrics and health/readiness probes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from kaito.runtime.metrics import RuntimeMetrics

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
"""A probe check: returns None when fine, else a short reason."""


def parse_address(address: str) -> tuple[str, int]:
    """`host:port`, `:port` (all interfaces) or `port`; port 0 picks a free one."""
    host, _, port = address.rpartition(":")
    try:
        return host or "0.0.0.0", int(port)
    except ValueError:
        raise ValueError(f"bind address {address!r}: expected HOST:PORT, :PORT or PORT") from None


@dataclass
class Probes:
    """Named health and readiness checks, evaluated on every probe request."""

    health: dict[str, Check]
    ready: dict[str, Check]


def _probe(checks: dict[str, Check]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        lines, ok = [], True
        for name, check in checks.items():
            reason = check()
            ok = ok and reason is None
            lines.append(f"[+]{name} ok" if reason is None else f"[-]{name} failed: {reason}")
        verbose = "verbose" in request.query or not ok
        body = "\n".join([*lines, "healthz check passed" if ok else "healthz check failed"]) if verbose else "ok"
        return web.Response(text=body + ("\n" if verbose else ""), status=200 if ok else 500)

    return handle


def _metrics(metrics: RuntimeMetrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


class Server:
    """One aiohttp app on one address, embedded with AppRunner + TCPSite."""

    def __init__(self, name: str, app: web.Application, address: str) -> None:
        self.name = name
        self.app = app
        self.host, self.requested_port = parse_address(address)
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.requested_port).start()
        self.port = int(self._runner.addresses[0][1])
        log.info("%s server listening on %s:%d", self.name, self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"


def metrics_server(address: str, metrics: RuntimeMetrics) -> Server:
    app = web.Application()
    app.router.add_get("/metrics", _metrics(metrics))
    return Server("metrics", app, address)


def health_server(address: str, probes: Probes) -> Server:
    app = web.Application()
    app.router.add_get("/healthz", _probe(probes.health))
    app.router.add_get("/readyz", _probe(probes.ready))
    return Server("health", app, address)
