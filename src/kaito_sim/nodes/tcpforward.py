"""Moves one forwarded connection's bytes between a client's stream and a pod process's TCP port, both ways."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Dial = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
Send = Callable[[bytes], Awaitable[None]]
Inbound = asyncio.Queue[bytes | None]  # what the client sends; None: it sends no more (half-close)
CHUNK = 32 * 1024
INBOUND_CHUNKS = 16  # frames the client may send ahead of the pod reading them


class ForwardError(Exception):
    """A port cannot be forwarded; the message is what the client is told on the error stream."""


def inbound_queue() -> Inbound:
    return asyncio.Queue(maxsize=INBOUND_CHUNKS)


async def pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, inbound: Inbound, send: Send, stop: asyncio.Event
) -> None:
    """Copy `inbound` to the pod and the pod's answer to `send` until the pod closes its side or `stop` is set
    (the client reset or went away); the client's half-close becomes a half-close towards the pod."""
    upload = asyncio.create_task(_upload(inbound, writer), name="portforward-upload")
    download = asyncio.create_task(_download(reader, send), name="portforward-download")
    stopped = asyncio.create_task(stop.wait(), name="portforward-stop")
    try:
        await asyncio.wait({download, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (upload, download, stopped):
            task.cancel()
        await asyncio.gather(upload, download, stopped, return_exceptions=True)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _upload(inbound: Inbound, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while (chunk := await inbound.get()) is not None:
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _download(reader: asyncio.StreamReader, send: Send) -> None:
    with contextlib.suppress(OSError):
        while chunk := await reader.read(CHUNK):
            await send(chunk)
