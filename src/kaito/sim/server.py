"""`SimServer`: the simulated API server as an async context manager, for `kaito sim`, the demo and tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import tempfile
from pathlib import Path
from types import TracebackType

from aiohttp import web

from kaito.sim.cluster import Cluster
from kaito.sim.gc import GarbageCollector
from kaito.sim.http import ApiServer, RequestRecord
from kaito.sim.kubeconfig import kubeconfig_dict, write_kubeconfig
from kaito.sim.store import DEFAULT_HISTORY
from kaito.sim.tls import make_ca, make_server_cert

log = logging.getLogger(__name__)


class SimServer:
    """Serves a fresh simulated cluster over HTTPS with bearer-token auth until stopped."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        kubeconfig: Path | None = None,
        history_size: int = DEFAULT_HISTORY,
        bookmark_interval: float = 5.0,
        token: str | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.token = token or secrets.token_urlsafe(24)
        self.cluster = Cluster(history_size=history_size)
        self.bookmark_interval = bookmark_interval
        self._kubeconfig = kubeconfig
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._gc_task: asyncio.Task[None] | None = None
        self._api: ApiServer | None = None
        self.port = 0
        self.ca_pem = b""
        self.kubeconfig_path = Path()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def set_history_size(self, size: int) -> None:
        """Shrink or grow the retained watch window (tests force 410 Expired with a small one)."""
        self.cluster.store.set_history_size(size)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request served so far (the most recent 200,000), oldest first."""
        return list(self._api.requests) if self._api else []

    @property
    def open_watches(self) -> int:
        """How many watch streams are being served right now."""
        return self.cluster.store.open_subscriptions

    def close_watches(self) -> None:
        """End every open watch stream now; clients must re-watch (and relist if their version expired)."""
        self.cluster.store.close_all_subscriptions()

    async def start(self) -> SimServer:
        ca = make_ca()
        cert = make_server_cert(ca, [self.host, "localhost", "127.0.0.1"])
        self._tmp = tempfile.TemporaryDirectory(prefix="kaito-sim-")
        cert_path, key_path = cert.write(Path(self._tmp.name), "apiserver")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        self.ca_pem = ca.cert_pem
        api = ApiServer(
            self.cluster,
            tokens={self.token},
            server_address=f"{self.host}:{self.requested_port}",
            bookmark_interval=self.bookmark_interval,
        )
        self._api = api
        self._runner = web.AppRunner(api.app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.requested_port, ssl_context=context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        api.server_address = f"{self.host}:{self.port}"
        path = self._kubeconfig or Path(self._tmp.name) / "kubeconfig"
        config = kubeconfig_dict(server=self.url, ca_pem=self.ca_pem, token=self.token)
        self.kubeconfig_path = write_kubeconfig(path, config)
        self._gc_task = asyncio.create_task(GarbageCollector(self.cluster).run(self._stop), name="sim-gc")
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._gc_task is not None:
            self._gc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc_task
        if self._runner is not None:
            await self._runner.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def __aenter__(self) -> SimServer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
