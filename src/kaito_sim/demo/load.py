"""Real HTTP load for an InferenceSet's endpoint: concurrent chat completions until told to stop, and one timed request.

`make demo-scale`, its end-to-end test and `benchmarks/scale_bench.py` drive the set's Service with these, so the
autoscaler sees the load a user's clients would make: each client sends one chat completion after another, each
with a prompt of its own (distinct prefixes, so the gateway's prefix affinity does not pin them all to one replica).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

MODEL = "phi-3-mini-4k-instruct"
FAILURE_PAUSE_S = 0.5  # after a refused or failed request, before the client tries again


class Stop(Protocol):
    """Set when the load should end: an `asyncio.Event`, or a `threading.Event` set from another thread."""

    def is_set(self) -> bool: ...


@dataclass
class LoadReport:
    """What the clients have seen so far; read while the load runs for a progress line."""

    answered: int = 0
    in_flight: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        text = f"{self.answered} answered, {self.in_flight} in flight"
        if self.failures:
            text += ", failed: " + ", ".join(f"{n} x {why}" for why, n in sorted(self.failures.items()))
        return text


def chat_body(prompt: str, *, max_tokens: int, stream: bool = False) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


async def _client(
    session: aiohttp.ClientSession, url: str, number: int, *, stop: Stop, max_tokens: int, report: LoadReport
) -> None:
    sent = 0
    while not stop.is_set():
        sent += 1
        prompt = f"client {number}, request {sent}: tell me about Kubernetes"
        report.in_flight += 1
        try:
            async with session.post(url, json=chat_body(prompt, max_tokens=max_tokens)) as response:
                await response.read()
                ok = response.status == 200
                why = f"HTTP {response.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            ok, why = False, type(exc).__name__
        finally:
            report.in_flight -= 1
        if ok:
            report.answered += 1
        else:
            report.failures[why] += 1
            await asyncio.sleep(FAILURE_PAUSE_S)


async def run_load(
    base_url: str,
    *,
    clients: int,
    stop: Stop,
    max_tokens: int = 16,
    report: LoadReport | None = None,
    request_timeout: float = 120.0,
) -> LoadReport:
    """`clients` concurrent chat completions at `base_url` (`http://HOST:PORT`) until `stop` is set; each client
    finishes the request it has under way."""
    report = report if report is not None else LoadReport()
    url = f"{base_url}/v1/chat/completions"
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(
            *(_client(session, url, n, stop=stop, max_tokens=max_tokens, report=report) for n in range(clients))
        )
    return report


@dataclass(frozen=True)
class Timed:
    """One streamed request: wall-clock send time (to compare with API times), then seconds after it."""

    sent_at: float  # time.time() when the request was sent
    first_token_s: float | None  # the first chunk with text
    done_s: float
    status: int
    text: str


async def timed_chat(base_url: str, prompt: str, *, max_tokens: int = 8, request_timeout: float = 600.0) -> Timed:
    """One streamed chat completion at `base_url`, timed from the send to its first token and to its end."""
    sent_at, started = time.time(), time.monotonic()
    first: float | None = None
    pieces: list[str] = []
    body = chat_body(prompt, max_tokens=max_tokens, stream=True)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout)) as session,
        session.post(f"{base_url}/v1/chat/completions", json=body) as response,
    ):
        status = response.status
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            text = _delta(line.removeprefix("data:").strip())
            if text and first is None:
                first = time.monotonic() - started
            pieces.append(text)
    return Timed(sent_at, first, time.monotonic() - started, status, "".join(pieces))


def _delta(data: str) -> str:
    try:
        event = json.loads(data)
        return str(event["choices"][0]["delta"].get("content") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""
