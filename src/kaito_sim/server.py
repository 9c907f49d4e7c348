"""`SimServer`: the simulated API server as an async context manager, for `kaito sim`, the demo and tests."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import ssl
import tempfile
from pathlib import Path
from types import TracebackType

from aiohttp import web

from kaito_sim.apiserver.builtin_defaults import DEFAULT_SERVICE_CIDR
from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.http import ApiServer, RequestRecord
from kaito_sim.apiserver.kubeconfig import kubeconfig_dict, write_kubeconfig
from kaito_sim.apiserver.store import DEFAULT_HISTORY
from kaito_sim.apiserver.tls import make_ca, make_server_cert
from kaito_sim.apiserver.tokens import API_AUDIENCE
from kaito_sim.nodes.clusterdns import ClusterDns
from kaito_sim.nodes.kubelet import KubeletConfig, Nodes, system_node
from kaito_sim.nodes.kubeproxy import LOOPBACK_CIDR, KubeProxy
from kaito_sim.nodes.launch import TOKEN_SECONDS
from kaito_sim.nodes.nodespec import NodeSpec
from kaito_sim.nodes.podfaults import PodFaults
from kaito_sim.nodes.portforward import PortForward
from kaito_sim.nodes.processes import Processes, ProcessPods
from kaito_sim.nodes.proxy import Proxy
from kaito_sim.nodes.streams import Streams
from kaito_sim.workloads.controlplane import ControlPlane
from kaito_sim.workloads.gc import GarbageCollector
from kaito_sim.workloads.loop import Loop

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
        system_nodes: int = 1,
        workloads: bool = True,
        process_pods: ProcessPods | None = None,
        service_cidr: str | None = None,
    ) -> None:
        """`process_pods` runs the containers of pods with the given images as real local processes (see
        `kaito_sim.nodes.processes`); by default every container is simulated. With them a kube-proxy makes
        ClusterIPs reachable from this machine (`kaito_sim.nodes.kubeproxy`) and Service names resolve for the
        processes (`kaito_sim.nodes.clusterdns`).

        `service_cidr` is where ClusterIPs come from: by default a loopback range with process pods (what the
        kube-proxy listens on), else kube-apiserver's default 10.96.0.0/12."""
        self.host = host
        self.requested_port = port
        self.token = token or secrets.token_urlsafe(24)
        cidr = service_cidr or (LOOPBACK_CIDR if process_pods is not None else DEFAULT_SERVICE_CIDR)
        self.cluster = Cluster(history_size=history_size, service_cidr=cidr)
        self.bookmark_interval = bookmark_interval
        self._kubeconfig = kubeconfig
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._gc_task: asyncio.Task[None] | None = None
        self._api: ApiServer | None = None
        self.system_nodes = system_nodes
        self.pod_faults = PodFaults()
        self.dns = ClusterDns(self.cluster) if process_pods is not None else None
        names = self.dns.environment if self.dns is not None else None
        self.processes = Processes(process_pods, self.cluster, names=names) if process_pods is not None else None
        self.kube_proxy: KubeProxy | None = None  # with process pods, from start() on
        self._network_task: asyncio.Task[None] | None = None
        self._kubelet_config = KubeletConfig(processes=self.processes)
        self._nodes = Nodes(self.cluster)
        self._control = (
            ControlPlane(self.cluster, config=self._kubelet_config, faults=self.pod_faults) if workloads else None
        )
        self._control_task: asyncio.Task[None] | None = None
        self.port = 0
        self.ca_pem = b""
        self.kubeconfig_path = Path()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def pod_ready_delay(self) -> float:
        """Seconds from a container starting to its pod turning Ready (readiness probes pass then)."""
        return self._kubelet_config.pod_ready_delay

    @pod_ready_delay.setter
    def pod_ready_delay(self, seconds: float) -> None:
        self._kubelet_config.pod_ready_delay = seconds

    @property
    def job_duration(self) -> float:
        """Seconds a Job's pod runs before its containers exit 0."""
        return self._kubelet_config.job_duration

    @job_duration.setter
    def job_duration(self, seconds: float) -> None:
        self._kubelet_config.job_duration = seconds

    async def add_node(self, spec: NodeSpec) -> None:
        """Register a Node as a joining VM's kubelet would; it turns Ready after `spec.ready_after` seconds."""
        await self._nodes.add(spec)

    async def remove_node(self, name: str) -> None:
        """Delete a Node and the pods bound to it (a no-op when it is gone already)."""
        await self._nodes.remove(name)

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
        internal = self._control.subscriptions if self._control else 0
        internal += sum(loop.subscribed for loop in self._network_loops())
        return self.cluster.store.open_subscriptions - internal

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
        proxy = Proxy(self.cluster, self.processes)
        self.cluster.webhook_services = proxy.service_port  # webhooks by clientConfig.service reach process pods
        api = ApiServer(
            self.cluster,
            tokens={self.token},
            server_address=f"{self.host}:{self.requested_port}",
            bookmark_interval=self.bookmark_interval,
            proxy=proxy,
            streams=Streams(self.cluster, self.processes),
            portforward=PortForward(self.cluster, self.processes),
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
        if self.processes is not None:
            authenticator = api.access.authenticator

            def issue(namespace: str, account: str) -> str:
                audiences = [API_AUDIENCE]
                return authenticator.issue(namespace, account, audiences=audiences, expiration=TOKEN_SECONDS)[0]

            self.processes.connect(self.url, self.ca_pem, issue)
            self.kube_proxy = KubeProxy(self.cluster, resolve=proxy.service_port)
            self._network_task = asyncio.create_task(self._network(), name="sim-network")
            self._network_task.add_done_callback(functools.partial(_log_crash, what="network (DNS, kube-proxy)"))
        self._gc_task = asyncio.create_task(GarbageCollector(self.cluster).run(self._stop), name="sim-gc")
        if self._control is not None:
            self._control_task = asyncio.create_task(self._control.run(), name="sim-control-plane")
            self._control_task.add_done_callback(_log_crash)
        for index in range(self.system_nodes):
            await self._nodes.add(system_node(index))
        return self

    async def stop(self) -> None:
        self._stop.set()
        await self._nodes.close()
        if self._control_task is not None:
            self._control_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._control_task
        if self._network_task is not None:
            self._network_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._network_task
        if self.kube_proxy is not None:
            await self.kube_proxy.close()
        if self.processes is not None:
            await self.processes.close()
        if self.dns is not None:
            self.dns.close()
        if self._gc_task is not None:
            self._gc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc_task
        if self._runner is not None:
            await self._runner.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _network_loops(self) -> list[Loop]:
        return [loop for loop in (self.dns, self.kube_proxy) if loop is not None]

    async def _network(self) -> None:
        """The cluster DNS and the kube-proxy, as one task."""
        async with asyncio.TaskGroup() as group:
            for loop in self._network_loops():
                group.create_task(loop.run(), name=f"sim-{loop.name}")

    async def __aenter__(self) -> SimServer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def _log_crash(task: asyncio.Task[None], what: str = "control plane") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the simulated %s stopped", what, exc_info=task.exception())
