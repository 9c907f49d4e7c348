"""Server-sent events as OpenAI streams them: `data: <json>` frames, then `data: [DONE]`."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from kaito.inference.engine import EngineError

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies (nginx, ingress) must pass each event on as it comes
}
DONE = b"data: [DONE]\n\n"
log = logging.getLogger(__name__)


def frame(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


class EventStream:
    """A started SSE response. Writes raise ConnectionResetError once the client has gone."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response

    @classmethod
    async def open(cls, request: web.Request) -> EventStream:
        response = web.StreamResponse(status=200, headers=HEADERS)
        await response.prepare(request)
        return cls(response)

    async def send(self, event: dict[str, Any]) -> None:
        await self.response.write(frame(event))

    async def done(self) -> None:
        await self.response.write(DONE)
        await self.response.write_eof()

    async def guard(self, body: Awaitable[None]) -> None:
        """Run what writes the stream: a client that leaves stops it quietly, any other failure ends it as `fail`."""
        try:
            await body
        except ConnectionResetError:
            log.info("client went away mid-stream; generation stopped")
        except Exception as exc:
            await self.fail(exc)

    async def fail(self, exc: Exception) -> None:
        """The status line is long gone: report the failure as a last event, as OpenAI does, then end the stream."""
        if isinstance(exc, EngineError):
            error = exc
        else:
            log.exception("generation failed mid-stream")
            error = EngineError("The server had an error while generating the response")
        with contextlib.suppress(ConnectionResetError):
            await self.send(error.body())
            await self.done()


class EventCutter:
    """Cuts a byte stream into whole SSE events (which end in a blank line, `\n\n`), however the network split it."""

    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> bytes:
        """The whole events completed by `data` (b"" if none), each still ending in its blank line."""
        data = self._partial + data if self._partial else data
        end = data.rfind(b"\n\n")
        if end < 0:
            self._partial = data
            return b""
        self._partial = data[end + 2 :]
        return data[: end + 2]

    @property
    def rest(self) -> bytes:
        """What came after the last whole event: nothing, unless the stream was cut off mid-event."""
        return self._partial


def payloads(events: bytes) -> list[bytes]:
    """The `data:` payloads of whole events, in order (comments and other fields skipped)."""
    found = []
    for event in events.split(b"\n\n"):
        for line in event.splitlines():
            if line.startswith(b"data:"):
                found.append(line[5:].strip())
    return found
