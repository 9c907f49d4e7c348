"""The simulated kube-proxy: each Service's ClusterIP:port listens on this machine and forwards to a ready endpoint.

Linux routes all of 127.0.0.0/8 to the loopback interface, so with the service CIDR inside it (`LOOPBACK_CIDR`,
`SimServer`'s default with process pods) a ClusterIP is an address any local process can connect to, with no
interface or route to set up. For each TCP port of a Service with a ClusterIP, while its Endpoints list a ready
address for that port, a listener on ClusterIP:port takes connections; each one goes to a ready endpoint picked
at random (as kube-proxy's rules pick), at the local port of that pod's process: the API server proxy's
resolution (`kaito_sim.nodes.proxy`). Where the ready endpoints are only simulated pods, the connection is closed
at once; with no ready endpoint nothing listens and a client is refused, as kube-proxy's REJECT rule refuses it.
Listeners follow Services and Endpoints through the store's own watch and all close with the `SimServer`.

It runs only with process pods: without them every endpoint is simulated and there is nothing to forward to.
Ports below net.ipv4.ip_unprivileged_port_start (1024) need root or CAP_NET_BIND_SERVICE. Where a listener
cannot be opened, that is said once per Service port and the rest carries on: `kubectl port-forward` and the API
server's proxy still reach that Service.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.nodes.clusterdns import cluster_ip
from kaito_sim.workloads.common import ENDPOINTS, SERVICES, Key
from kaito_sim.workloads.loop import Loop

log = logging.getLogger(__name__)

LOOPBACK_CIDR = "127.96.0.0/16"
UNPRIVILEGED_PORT_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
_CHUNK = 64 * 1024
Address = tuple[str, int]  # (ClusterIP, port)
Resolve = Callable[[str, str, int], int]  # (namespace, Service, its port) -> a ready endpoint's local port; ApiError
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Listen = Callable[[Handler, str, int], Awaitable[asyncio.AbstractServer]]


async def listen(handler: Handler, host: str, port: int) -> asyncio.AbstractServer:
    return await asyncio.start_server(handler, host, port, reuse_address=True)


def wanted(service: JsonObj | None, endpoints: JsonObj | None) -> set[Address]:
    """The ClusterIP:port pairs of the Service's TCP ports that have a ready endpoint."""
    if service is None or service["metadata"].get("deletionTimestamp") or not cluster_ip(service):
        return set()
    ready = {
        str(p.get("name") or "")
        for subset in (endpoints or {}).get("subsets") or []
        if subset.get("addresses")
        for p in subset.get("ports") or []
    }
    return {
        (cluster_ip(service), int(p["port"]))
        for p in (service.get("spec") or {}).get("ports") or []
        if p.get("protocol", "TCP") == "TCP" and str(p.get("name") or "") in ready
    }


class KubeProxy(Loop):
    """Opens and closes the listeners of every Service's ClusterIP:port and forwards their connections."""

    name = "kube-proxy"
    watches = (SERVICES, ENDPOINTS)

    def __init__(self, cluster: Cluster, *, resolve: Resolve, listen: Listen = listen) -> None:
        """`resolve` finds a ready endpoint's local port; `listen` opens a listener (tests refuse some ports)."""
        super().__init__(cluster)
        self._resolve, self._listen = resolve, listen
        self._servers: dict[Key, dict[Address, asyncio.AbstractServer]] = {}
        self._said: set[tuple[Key, Address]] = set()  # listeners that failed to open: said once, tried again quietly
        self._streams: set[asyncio.StreamWriter] = set()

    def listening(self) -> set[Address]:
        """Where listeners are open now."""
        return {address for servers in self._servers.values() for address in servers}

    async def reconcile(self, key: Key) -> float | None:
        service = self.cluster.store.get(SERVICES, *key)
        want = wanted(service, self.cluster.store.get(ENDPOINTS, *key))
        servers = self._servers.setdefault(key, {})
        for address in [a for a in servers if a not in want]:
            servers.pop(address).close()  # connections already made run on, as conntrack keeps them
        for address in sorted(want - servers.keys()):
            await self._open(key, address, servers)
        if not servers:
            del self._servers[key]
        if service is None:
            self._said = {said for said in self._said if said[0] != key}
        return None

    async def close(self) -> None:
        servers = [server for each in self._servers.values() for server in each.values()]
        self._servers.clear()
        for server in servers:
            server.close()
        for writer in list(self._streams):
            writer.transport.abort()
        for server in servers:
            await server.wait_closed()

    async def _open(self, key: Key, address: Address, servers: dict[Address, asyncio.AbstractServer]) -> None:
        ip, port = address

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._forward(key, port, reader, writer)

        try:
            servers[address] = await self._listen(handle, ip, port)
        except OSError as exc:
            if (key, address) not in self._said:
                self._said.add((key, address))
                ns, name = key
                log.warning(
                    "kube-proxy: Service %s/%s cannot listen on %s:%d (%s); `kubectl port-forward svc/%s` and the "
                    "API server's proxy (/api/v1/namespaces/%s/services/%s:%d/proxy/) still reach it",
                    *(ns, name, ip, port, _why(exc), name, ns, name, port),
                )

    async def _forward(self, key: Key, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._streams.add(writer)
        try:
            local = self._resolve(key[0], key[1], port)
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", local)
        except (ApiError, OSError) as exc:  # only simulated endpoints, or the process stopped listening
            log.debug("kube-proxy: %s/%s:%d: %s", *key, port, exc)
            writer.transport.abort()
            self._streams.discard(writer)
            return
        self._streams.add(upstream)
        try:
            await asyncio.gather(_pipe(reader, upstream), _pipe(upstream_reader, writer))
        finally:
            for each in (writer, upstream):
                self._streams.discard(each)
                each.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close; a reset ends both directions."""
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


def _why(exc: OSError) -> str:
    if exc.errno != errno.EACCES:
        return exc.strerror or str(exc)
    with contextlib.suppress(OSError, ValueError):
        start = int(UNPRIVILEGED_PORT_START.read_text())
        return f"ports below {start} need root or CAP_NET_BIND_SERVICE"
    return "permission denied"
