"""`ArmSimulator`: a local HTTPS Azure Resource Manager endpoint for one AKS cluster's agent pools."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType

from aiohttp import web

from kaito.presets.catalog import Catalog
from kaito.runtime.clock import REAL_CLOCK, Clock
from kaito_sim.apiserver.tls import make_ca, make_server_cert
from kaito_sim.arm.app import ArmApp, RequestLog
from kaito_sim.arm.faults import Faults
from kaito_sim.arm.nodes import Cluster, NodeHook
from kaito_sim.arm.pools import Operation, PoolRecord
from kaito_sim.arm.provisioning import AgentPools
from kaito_sim.arm.quota import CloudLimits


class ArmSimulator:
    """Serves the agentPools and Compute usages APIs of `cluster` over HTTPS until stopped.

    VMs it boots join through `node_hook`; `limits` holds the vCPU quotas and per-size capacity.

    Point the real SDK at it with `base_url=sim.url` and `connection_verify=sim.ca_path`, and a credential
    that returns `token`.
    """

    def __init__(
        self,
        *,
        subscription_id: str,
        resource_group: str,
        cluster: str,
        token: str,
        location: str = "eastus",
        node_hook: NodeHook | None = None,
        provisioning_delay: float = 0.0,
        node_ready_after: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        catalog: Catalog | None = None,
        clock: Clock = REAL_CLOCK,
        limits: CloudLimits | None = None,
    ) -> None:
        self.cluster = Cluster(subscription_id, resource_group, cluster, location)
        self.token = token
        self.host = host
        self.requested_port = port
        self.provisioning_delay = provisioning_delay
        self.node_ready_after = node_ready_after  # seconds a booted node stays NotReady (NodeSpec.ready_after)
        self.faults = Faults()
        self.limits = limits or CloudLimits()  # vCPU quotas and per-size capacity, settable while serving
        self.requests = RequestLog()
        self._catalog = catalog
        self._catalog_loading: asyncio.Task[Catalog] | None = None
        self._pools = AgentPools(
            cluster=self.cluster,
            catalog=self._loaded_catalog,
            faults=self.faults,
            node_hook=node_hook,
            clock=clock,
            delay=lambda: self.provisioning_delay,
            ready_after=lambda: self.node_ready_after,
            limits=self.limits,
        )
        self._runner: web.AppRunner | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0
        self.ca_pem = b""
        self.ca_path = Path()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def node_hook(self) -> NodeHook | None:
        return self._pools.node_hook

    @node_hook.setter
    def node_hook(self, hook: NodeHook | None) -> None:
        self._pools.node_hook = hook

    @property
    def pools(self) -> Mapping[str, PoolRecord]:
        """The agent pools as they stand (read-only view; the records are live)."""
        return MappingProxyType(self._pools.pools)

    @property
    def operations(self) -> Mapping[str, Operation]:
        return MappingProxyType(self._pools.operations)

    def node_names(self, pool: str) -> list[str]:
        record = self._pools.pools.get(pool)
        return [record.nodes[i] for i in sorted(record.nodes)] if record else []

    async def _loaded_catalog(self) -> Catalog:
        """The catalog given, or the packaged one, read on a worker thread while the endpoint already serves."""
        if self._catalog is None:
            self._catalog = await asyncio.shield(self._load_in_background())
        return self._catalog

    def _load_in_background(self) -> asyncio.Task[Catalog]:
        if self._catalog_loading is None:
            self._catalog_loading = asyncio.create_task(asyncio.to_thread(Catalog.builtin), name="arm-catalog")
        return self._catalog_loading

    async def start(self) -> ArmSimulator:
        ca = make_ca("kaito-arm-sim-ca")
        cert = make_server_cert(ca, [self.host, "localhost", "127.0.0.1"])
        self._tmp = tempfile.TemporaryDirectory(prefix="kaito-arm-")
        directory = Path(self._tmp.name)
        cert_path, key_path = cert.write(directory, "arm")
        self.ca_pem = ca.cert_pem
        self.ca_path = directory / "ca.crt"
        self.ca_path.write_bytes(ca.cert_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        app = ArmApp(pools=self._pools, faults=self.faults, token=self.token, requests=self.requests)
        self._runner = web.AppRunner(app.app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.requested_port, ssl_context=context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self._catalog is None:
            self._load_in_background()
        return self

    async def stop(self) -> None:
        if self._catalog_loading is not None:
            await self._catalog_loading  # a worker thread cannot be cancelled; let it finish
            self._catalog_loading = None
        await self._pools.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> ArmSimulator:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
