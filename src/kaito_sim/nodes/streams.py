"""`pods/NAME/exec` and `pods/NAME/attach`: a command beside a process pod's process, or that process's own streams.

The request is checked as kube-apiserver checks it (the pod, its container, the command, at least one stream)
and the container must run as a local process (`kaito_sim.nodes.processes`); otherwise the answer is an error
Status before any upgrade, for the WebSocket GET and for the SPDY POST kubectl falls back to alike. Streams
travel over WebSockets only (`kaito_sim.nodes.channels`); a SPDY upgrade is refused with a Status saying so.

exec starts the command in the container's working directory and environment (its KUBECONFIG, its mount
paths rewritten, in the command's arguments too), pipes stdin when asked, streams stdout and stderr as they
come and ends with the exit code on the status channel; it is killed if the client goes away first. attach
replays what the container's current run printed so far, then follows it to its end, writing the client's
stdin to the container's (a container with `stdin: true`); an attach after the run ended replays it and ends.

No terminal is allocated: `tty=true` only merges stderr into stdout, turns output `\\n` into `\\r\\n` and input
`\\r` into `\\n` (as a terminal's line discipline would); resize messages are read and ignored, and there is no
echo, line editing or signal keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Protocol

from aiohttp import web

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import ApiError
from kaito_sim.apiserver.routing import Target
from kaito_sim.nodes import children
from kaito_sim.nodes.channels import (
    CLOSE,
    PROTOCOLS,
    STDERR,
    STDIN,
    STDOUT,
    Channels,
    StreamOptions,
    exit_status,
    is_websocket,
    negotiate,
    success,
)
from kaito_sim.nodes.podlogs import container_name
from kaito_sim.nodes.processes import Attached, not_local

READ_SIZE = 64 * 1024


class Runner(Protocol):
    def check_stream(self, namespace: str, pod: str, uid: str, container: str, *, attach: bool) -> None:
        """Raise the ApiError an exec or attach would meet now."""

    async def exec_in(
        self, namespace: str, pod: str, uid: str, container: str, command: list[str], *, stdin: bool, tty: bool
    ) -> asyncio.subprocess.Process:
        """Start `command` beside the container's process."""

    def attach(self, namespace: str, pod: str, uid: str, container: str) -> Attached:
        """The container's process's streams."""


class Streams:
    """Serves the exec and attach subresources of one simulated cluster's pods."""

    def __init__(self, cluster: Cluster, runner: Runner | None) -> None:
        self.cluster, self.runner = cluster, runner

    async def handle(self, request: web.Request, target: Target) -> web.StreamResponse:
        if request.method not in ("GET", "POST") or target.name is None:
            raise errors.method_not_allowed()
        ns, name = target.namespace or "", target.name
        pod = self.cluster.get(target.rt, ns, name)
        container = container_name(pod, request.query.get("container"))
        options = StreamOptions.parse(request.query)
        command = request.query.getall("command", [])
        if target.subresource == "exec" and not command:
            raise errors.bad_request("you must specify at least one command for the container")
        if not (options.stdin or options.stdout or options.stderr):
            raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
        if self.runner is None:
            raise not_local(container, name)
        uid = str(pod["metadata"].get("uid", ""))
        attach = target.subresource == "attach"
        self.runner.check_stream(ns, name, uid, container, attach=attach)
        protocol = negotiate(request)
        if not is_websocket(request):
            upgrade = request.headers.get("Upgrade", "")
            if upgrade.lower().startswith("spdy"):
                raise errors.bad_request(
                    f"the simulated API server streams {target.subresource} over WebSockets only "
                    f"({', '.join(PROTOCOLS)}), not {upgrade}"
                )
            raise errors.bad_request("Upgrade request required")
        if protocol is None:
            offered = request.headers.get("Sec-WebSocket-Protocol", "")
            raise errors.bad_request(f"requested protocol(s) are not supported: [{offered}]; supports {PROTOCOLS}")
        channels = await Channels.open(request, protocol, options)
        if attach:
            try:
                attached = self.runner.attach(ns, name, uid, container)
            except ApiError as exc:  # the pod went away while the connection was upgraded
                await channels.fail(exc)
                return channels.ws
            await self._attach(channels, options, attached)
        else:
            await self._exec(channels, options, ns, name, uid, container, command)
        return channels.ws

    async def _exec(
        self,
        channels: Channels,
        options: StreamOptions,
        ns: str,
        name: str,
        uid: str,
        container: str,
        command: list[str],
    ) -> None:
        assert self.runner is not None
        try:
            proc = await self.runner.exec_in(ns, name, uid, container, command, stdin=options.stdin, tty=options.tty)
        except ApiError as exc:
            await channels.fail(exc)
            return
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f'failed to exec in container: exec: "{command[0]}": {why}'
            await channels.fail(errors.internal_error(f"error executing command in container: {message}"))
            return
        outputs = [(proc.stdout, STDOUT, options.stdout)]
        if not options.tty:
            outputs.append((proc.stderr, STDERR, options.stderr))
        pumps = [asyncio.create_task(_copy(s, channels, ch, tty=options.tty, wanted=w)) for s, ch, w in outputs]
        feeder = asyncio.create_task(_feed(channels, proc.stdin, tty=options.tty, close_on_eof=True))
        try:
            ended = asyncio.ensure_future(proc.wait())
            done, _pending = await asyncio.wait([feeder, ended], return_when=asyncio.FIRST_COMPLETED)
            if feeder in done and proc.returncode is None and channels.ws.closed:
                return  # the client went away first: the command goes with it (see finally)
            code = children.exit_code(await proc.wait())
            await asyncio.gather(*pumps)
            if options.tty:
                await channels.sized(1)
            await channels.finish(exit_status(code))
        finally:
            for task in [*pumps, feeder]:
                task.cancel()
            if proc.returncode is None:
                children.send(proc, signal.SIGKILL)

    async def _attach(self, channels: Channels, options: StreamOptions, attached: Attached) -> None:
        stdin = attached.stdin if options.stdin else None
        once = attached.stdin_once
        feeder = asyncio.create_task(_feed(channels, stdin, tty=options.tty, close_on_eof=once))
        try:
            follower = asyncio.ensure_future(_replay(attached, channels, options))
            await asyncio.wait([feeder, follower], return_when=asyncio.FIRST_COMPLETED)
            if follower.done():
                if options.tty:
                    await channels.sized(2)
                await channels.finish(success())  # as the kubelet: an attach ends well whatever the exit code
            else:
                follower.cancel()
        finally:
            feeder.cancel()
            if stdin is not None and once and not stdin.is_closing():
                stdin.close()


async def _replay(attached: Attached, channels: Channels, options: StreamOptions) -> None:
    async for stream, line in attached.output.follow():
        channel = STDOUT if options.tty else stream
        if options.stdout if channel == STDOUT else options.stderr:
            await channels.send(channel, _out(line.encode(), tty=options.tty))


def _out(data: bytes, *, tty: bool) -> bytes:
    return data.replace(b"\n", b"\r\n") if tty else data


async def _copy(
    stream: asyncio.StreamReader | None, channels: Channels, channel: int, *, tty: bool, wanted: bool
) -> None:
    """Send what `stream` yields on `channel` (read and dropped when the client did not ask for it)."""
    if stream is None:
        return
    while data := await stream.read(READ_SIZE):
        if wanted:
            await channels.send(channel, _out(data, tty=tty))


async def _feed(channels: Channels, pipe: asyncio.StreamWriter | None, *, tty: bool, close_on_eof: bool) -> None:
    """Write what arrives on the stdin channel to `pipe` until the client goes away; the client closing its
    stdin (v5) closes `pipe` when `close_on_eof`. Data on other channels (resize) is read and dropped."""
    try:
        async for channel, data in channels.received():
            if pipe is None or pipe.is_closing():
                continue
            if channel == CLOSE and data[:1] == bytes([STDIN]) and close_on_eof:
                pipe.close()
            elif channel == STDIN:
                pipe.write(data.replace(b"\r", b"\n") if tty else data)
                with contextlib.suppress(ConnectionError):
                    await pipe.drain()
    except ConnectionError:
        pass
