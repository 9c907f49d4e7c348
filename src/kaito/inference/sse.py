"""Server-sent events as OpenAI streams them: `data: <json>` frames, then `data: [DONE]`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies (nginx, ingress) must pass each event on as it comes
}
DONE = b"data: [DONE]\n\n"


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
