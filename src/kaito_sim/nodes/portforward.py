"""The `pods/NAME/portforward` subresource: a client's streams reach the local ports of a process pod.

Three ways in, as kube-apiserver 1.32 and the kubelet offer them:
- a WebSocket whose subprotocol is `SPDY/3.1+portforward.k8s.io`: SPDY/3.1 tunnelled in binary messages, what
  kubectl 1.32 tries first (KUBECTL_PORT_FORWARD_WEBSOCKETS, on by default);
- an HTTP upgrade to `SPDY/3.1` with `X-Stream-Protocol-Version: portforward.k8s.io`, kubectl's fallback;
- a WebSocket with `v4.channel.k8s.io` (or `v4.base64.channel.k8s.io`, or none), the ports in `?ports=`: per
  port a data and an error channel (2i, 2i+1), each first carrying the port as 2 little-endian bytes; the
  WebSocket closes when every port's connection has. kubernetes-asyncio and the Python client speak this.
RBAC sees the upgrade as `get` (WebSocket GET) or `create` (POST) on `pods/portforward`, as 1.32 does. A pod
whose containers only are simulated is refused before the upgrade; a port nothing listens on is reported on
that connection's error stream, worded as the kubelet words it, and the other connections go on.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import struct
from collections.abc import AsyncIterator
from typing import Any, Protocol, cast

from aiohttp import WSMsgType, web

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.nodes.portforward_spdy import SpdySession
from kaito_sim.nodes.tcpforward import ForwardError, inbound_queue, pump

ROUTE = "/api/v1/namespaces/{namespace}/pods/{name}/portforward"
TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
STREAM_PROTOCOL = "portforward.k8s.io"
CHANNEL_PROTOCOL, BASE64_PROTOCOL = "v4.channel.k8s.io", "v4.base64.channel.k8s.io"
MAX_MESSAGE = 16 * 1024 * 1024


class PodProcesses(Protocol):
    def local_port(self, namespace: str, pod: str, uid: str, port: int) -> int | None:
        """Where on this machine the pod's `port` listens; None when nothing of the pod does."""

    def runs(self, namespace: str, pod: str, uid: str) -> bool:
        """Whether the pod's containers run as local processes."""


def _simulated(pod: str) -> str:
    return (
        f'pod "{pod}" is simulated, with no process behind its ports: only process pods '
        "(SimServer(process_pods=...)) can be reached through port-forward"
    )


class _Feed:
    """Takes the bytes of an upgraded HTTP connection in place of aiohttp's HTTP parser."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk


async def _binary_messages(ws: web.WebSocketResponse) -> AsyncIterator[bytes]:
    async for message in ws:
        if message.type != WSMsgType.BINARY:
            return  # the tunnel carries only binary messages; anything else ends it
        yield message.data


class PortForward:
    """Serves the portforward subresource of one simulated cluster's pods."""

    def __init__(self, cluster: Cluster, backends: PodProcesses | None) -> None:
        self.cluster = cluster
        self.backends = backends

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            raise errors.method_not_allowed()
        ns, name = request.match_info["namespace"], request.match_info["name"]
        pod = self.cluster.store.get(("", "pods"), ns, name)
        if pod is None:
            raise errors.not_found("pods", "", name)
        if not (pod.get("spec") or {}).get("nodeName"):
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        meta = pod["metadata"]
        if self.backends is None or not self.backends.runs(ns, name, str(meta.get("uid", ""))):
            raise errors.ApiError(503, "ServiceUnavailable", _simulated(name))
        upgrade = request.headers.get("Upgrade", "").lower()
        if upgrade == "websocket":
            requested = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
            if TUNNEL_PROTOCOL in requested:
                return await self._tunnel(request, pod)
            return await self._channels(request, pod)
        if upgrade.startswith("spdy/3.1"):
            return await self._spdy(request, pod)
        raise errors.bad_request("Upgrade request required")

    async def _dial(self, pod: JsonObj, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the pod's `port`, or ForwardError worded as the kubelet's."""
        meta = pod["metadata"]
        ns, name, uid = meta.get("namespace", ""), meta["name"], str(meta.get("uid", ""))
        prefix = f"error forwarding port {port} to pod {name}, uid {uid}: "
        if self.backends is None or not self.backends.runs(ns, name, uid):
            raise ForwardError(prefix + _simulated(name))
        refused = f"failed to connect to localhost:{port} inside the pod: dial tcp4 127.0.0.1:{port}: connect: "
        local = self.backends.local_port(ns, name, uid, port)
        if local is None:  # a port none of the pod's processes was given: nothing can listen there
            raise ForwardError(prefix + refused + "connection refused")
        try:
            return await asyncio.open_connection("127.0.0.1", local)
        except OSError as exc:
            why = "connection refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or str(exc))
            raise ForwardError(prefix + refused + why.lower()) from exc

    async def _tunnel(self, request: web.Request, pod: JsonObj) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=(TUNNEL_PROTOCOL,), max_msg_size=MAX_MESSAGE, autoclose=True)
        await ws.prepare(request)

        async def send(data: bytes) -> None:
            if ws.closed:
                raise ConnectionResetError("the WebSocket is closed")
            await ws.send_bytes(data)

        try:
            await SpdySession(send, dial=lambda port: self._dial(pod, port)).run(_binary_messages(ws))
        finally:
            await ws.close()
        return ws

    async def _spdy(self, request: web.Request, pod: JsonObj) -> web.StreamResponse:
        # aiohttp hands over only WebSocket upgrades; taking the connection's bytes before the 101 goes out
        # means nothing the client sends after it can reach the HTTP parser.
        feed = _Feed()
        cast(Any, request.protocol).set_parser(feed)
        request.protocol.keep_alive(False)
        response = web.StreamResponse(status=101, reason="Switching Protocols")
        response.headers.update(
            {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": STREAM_PROTOCOL}
        )
        await response.prepare(request)
        await SpdySession(response.write, dial=lambda port: self._dial(pod, port)).run(feed.chunks())
        return response

    async def _channels(self, request: web.Request, pod: JsonObj) -> web.StreamResponse:
        ports = _ports(request.query.getall("ports", []))
        ws = web.WebSocketResponse(protocols=(CHANNEL_PROTOCOL, BASE64_PROTOCOL), max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        channels = _Channels(ws, len(ports))
        try:
            for index, port in enumerate(ports):
                for channel in (2 * index, 2 * index + 1):
                    await channels.send(channel, struct.pack("<H", port))
            reader = asyncio.create_task(channels.read(), name="portforward-channels")
            try:
                await asyncio.gather(*(self._forward_channel(pod, port, i, channels) for i, port in enumerate(ports)))
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            await ws.close()
        return ws

    async def _forward_channel(self, pod: JsonObj, port: int, index: int, channels: _Channels) -> None:
        try:
            try:
                reader, writer = await self._dial(pod, port)
            except ForwardError as exc:
                await channels.send(2 * index + 1, str(exc).encode())
                return
            send = functools.partial(channels.send, 2 * index)
            await pump(reader, writer, inbound=channels.inbound[index], send=send, stop=channels.gone)
        finally:
            channels.ended.add(index)


class _Channels:
    """One channel WebSocket: per port a data channel (2i) and an error channel (2i+1)."""

    def __init__(self, ws: web.WebSocketResponse, ports: int) -> None:
        self.ws = ws
        self.encoded = ws.ws_protocol == BASE64_PROTOCOL
        self.inbound = [inbound_queue() for _ in range(ports)]
        self.ended: set[int] = set()  # ports whose forwarding is over: the client's bytes for them are dropped
        self.gone = asyncio.Event()  # the client closed the WebSocket

    async def send(self, channel: int, data: bytes) -> None:
        if self.ws.closed:
            raise ConnectionResetError("the WebSocket is closed")
        if self.encoded:
            await self.ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
        else:
            await self.ws.send_bytes(bytes([channel]) + data)

    async def read(self) -> None:
        """Route the client's messages to their ports' connections (data channels only) until it goes away."""
        try:
            async for message in self.ws:
                if message.type == WSMsgType.BINARY and not self.encoded and message.data:
                    channel, data = message.data[0], message.data[1:]
                elif message.type == WSMsgType.TEXT and self.encoded and message.data:
                    channel, data = ord(message.data[0]) - ord("0"), base64.b64decode(message.data[1:])
                else:
                    continue
                index = channel // 2
                if channel % 2 == 0 and index < len(self.inbound) and index not in self.ended and data:
                    await self.inbound[index].put(data)
        finally:
            self.gone.set()


def _ports(values: list[str]) -> list[int]:
    """`?ports=` as the kubelet reads it: repeated and/or comma-separated, each 1..65535."""
    if not values:
        raise errors.bad_request('query parameter "port" is required')
    ports: list[int] = []
    for value in values:
        for part in value.split(","):
            if not part.isdigit() or not 0 < int(part) < 65536:
                raise errors.bad_request(f'unable to parse "{value}" as a port')
            ports.append(int(part))
    return ports
