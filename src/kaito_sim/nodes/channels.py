"""The remote-command WebSocket protocols `pods/exec` and `pods/attach` speak: one channel byte per binary message.

Channels: 0 stdin (client to server), 1 stdout, 2 stderr, 3 status (one metav1.Status as JSON when the command
ends: Success, or Failure with reason NonZeroExitCode and the code in details.causes), 4 terminal resize.
`v5.channel.k8s.io` (what kubectl 1.30+ offers, as kube-apiserver's stream translator serves it) adds message
`[255, N]`: the client closed its channel N (stdin's end of file). `v4.channel.k8s.io` (the kubelet's, what
kubernetes-asyncio's WsApiClient asks for) has no close signal: stdin ends with the connection. As both
servers do, the server first sends an empty message on the lowest channel it will write to, and ends with the
status, then a normal close. The base64 and unversioned variants are not served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from kaito_sim.apiserver.errors import ApiError, JsonObj

V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)
STDIN, STDOUT, STDERR, STATUS, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: the client has closed the channel named by the next byte
MAX_MESSAGE = 4 * 1024 * 1024
RESIZE_WAIT = 1.0  # seconds a terminal client's first sizes are waited for before closing


@dataclass(frozen=True)
class StreamOptions:
    """The streams a request asks for (`stdin`, `stdout`, `stderr`, `tty` query parameters)."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> StreamOptions:
        def flag(name: str) -> bool:  # PodExecOptions/PodAttachOptions: each false unless given
            return query.get(name, "").lower() in ("true", "1")

        return cls(flag("stdin"), flag("stdout"), flag("stderr"), flag("tty"))


def is_websocket(request: web.Request) -> bool:
    upgrade = request.headers.get("Upgrade", "").lower()
    return upgrade == "websocket" and "upgrade" in request.headers.get("Connection", "").lower()


def negotiate(request: web.Request) -> str | None:
    """The first subprotocol the client offers that is served here (the kubelet's order: the client's)."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    return next((p for p in offered if p in PROTOCOLS), None)


def success() -> JsonObj:
    return {"metadata": {}, "status": "Success"}


def exit_status(code: int) -> JsonObj:
    """The Status a command that exited with `code` ends with."""
    if code == 0:
        return success()
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: command terminated with exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


class Channels:
    """One upgraded connection: write to a channel, read what the client sends, end with a status."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str) -> None:
        self.ws, self.protocol = ws, protocol
        self.resizes = 0  # terminal size messages received
        self._resized = asyncio.Event()

    @classmethod
    async def open(cls, request: web.Request, protocol: str, options: StreamOptions) -> Channels:
        ws = web.WebSocketResponse(protocols=(protocol,), max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        channels = cls(ws, protocol)
        first = STDOUT if options.stdout else STDERR if options.stderr else STATUS
        await channels.send(first, b"")  # tells the client the streams are set up
        return channels

    async def send(self, channel: int, data: bytes) -> None:
        """Send `data` on `channel`; dropped once the client has gone."""
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_bytes(bytes([channel]) + data)

    async def received(self) -> AsyncIterator[tuple[int, bytes]]:
        """(channel, data) per message from the client, `(CLOSE, bytes([N]))` for a v5 close; ends when it goes."""
        async for message in self.ws:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            data: bytes = message.data
            if data[0] == RESIZE:
                self.resizes += 1
                self._resized.set()
            if data[0] == CLOSE and self.protocol != V5:
                continue
            yield data[0], data[1:]

    async def sized(self, count: int, *, within: float = RESIZE_WAIT) -> None:
        """Wait (at most `within` seconds) until `count` terminal sizes have arrived.

        A terminal client sends its size as it starts (kubectl: once for exec, twice for attach); closing
        before those arrived makes kubectl report its write to a closed connection.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self.resizes < count and not self.ws.closed:
                    self._resized.clear()
                    await self._resized.wait()

    async def finish(self, status: JsonObj) -> None:
        """Send the status (apiVersion and kind are left out, as the servers' encoders leave them) and close."""
        body = {k: v for k, v in status.items() if k not in ("kind", "apiVersion")}
        await self.send(STATUS, json.dumps(body, separators=(",", ":")).encode())
        await self.ws.close()

    async def fail(self, error: ApiError) -> None:
        await self.finish(error.status())
