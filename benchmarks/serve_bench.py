"""What the HTTP layer of `kaito serve` costs: the tiny model through the server versus `engine.generate` directly.

Run with `python benchmarks/serve_bench.py [--requests 200] [--concurrency 1 8]`. Both paths drive the same
loaded TransformersEngine with the same greedy prompts (non-streaming completions, max_tokens 16); the server
path includes the aiohttp client, which runs in the same process and event loop as the server. A first pass
over an engine that answers instantly gives the server's own ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from kaito.inference.app import create_app
from kaito.inference.engine import Chunk, Engine, Request, Sampling
from kaito.inference.engines.transformers_engine import TransformersEngine
from kaito.inference.serve import serving

ROOT = Path(__file__).resolve().parents[1]
MODEL = "tiny"
MAX_TOKENS = 16
PROMPTS = [
    f"The {a} {b} {c}" for a in ("small", "big", "red", "green") for b in ("cat", "dog") for c in ("sees", "runs")
]

Call = Callable[[str], Awaitable[int]]


@dataclass
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float

    def __str__(self) -> str:
        return f"{self.rps:7.1f} req/s  p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms"


class InstantEngine:
    """Answers MAX_TOKENS one-word chunks at once: the server's own ceiling, with no model in the way."""

    name = "instant"
    served_model_name = MODEL
    max_model_len = 256

    def models(self) -> list[str]:
        return [MODEL]

    async def load(self) -> None:
        return None

    async def generate(self, request: Request) -> AsyncIterator[Chunk]:
        for i in range(1, MAX_TOKENS + 1):
            yield Chunk(" word", 4, i, "length" if i == MAX_TOKENS else None)

    async def close(self) -> None:
        return None


def tiny_model(directory: Path) -> Path:
    sys.path.insert(0, str(ROOT))  # the tiny model builder lives with the tests
    from kaito.inference.tinymodel import make_tiny_model

    return make_tiny_model(directory)


async def measure(call: Call, *, requests: int, concurrency: int) -> Figures:
    latencies: list[float] = []
    queue = iter(range(requests))

    async def worker() -> None:
        for i in queue:
            began = time.perf_counter()
            tokens = await call(PROMPTS[i % len(PROMPTS)])
            latencies.append(time.perf_counter() - began)
            assert 0 < tokens <= MAX_TOKENS

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Figures(len(latencies) / elapsed, statistics.median(ordered) * 1000, p99 * 1000)


def direct_call(engine: TransformersEngine) -> Call:
    async def call(prompt: str) -> int:
        request = Request(MODEL, Sampling(max_tokens=MAX_TOKENS, temperature=0.0), prompt=prompt)
        last = None
        async for chunk in engine.generate(request):
            last = chunk
        assert last is not None
        return last.completion_tokens

    return call


def http_call(http: aiohttp.ClientSession, url: str) -> Call:
    async def call(prompt: str) -> int:
        body = {"model": MODEL, "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0}
        async with http.post(f"{url}/v1/completions", json=body) as resp:
            assert resp.status == 200, await resp.text()
            tokens: int = (await resp.json())["usage"]["completion_tokens"]
            return tokens

    return call


@contextlib.asynccontextmanager
async def served(engine: Engine) -> AsyncIterator[Call]:
    """The engine behind the real app on a free port, and a client calling it; returns once /health is 200."""
    async with serving(create_app(engine), host="127.0.0.1", port=0) as port, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}"
        while True:
            async with http.get(f"{url}/health") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.05)
        yield http_call(http, url)


async def bench(model_dir: Path, *, requests: int, levels: list[int]) -> None:
    async with served(InstantEngine()) as ceiling:
        await measure(ceiling, requests=len(PROMPTS), concurrency=1)
        for level in levels:
            figures = await measure(ceiling, requests=requests, concurrency=level)
            print(f"concurrency {level}: server, instant engine  {figures}")
    engine = TransformersEngine(model_dir, served_model_name=MODEL, max_concurrency=max(levels), max_queue=4 * requests)
    async with served(engine) as through_server:
        direct = direct_call(engine)
        await measure(direct, requests=len(PROMPTS), concurrency=1)  # warm-up: allocator, thread pool, sockets
        await measure(through_server, requests=len(PROMPTS), concurrency=1)
        for level in levels:
            base = await measure(direct, requests=requests, concurrency=level)
            through = await measure(through_server, requests=requests, concurrency=level)
            print(f"concurrency {level}: tiny model, direct          {base}")
            print(f"concurrency {level}: tiny model, through server  {through}")
            ratio, added = through.rps / base.rps, through.p50_ms - base.p50_ms
            print(f"concurrency {level}: server/direct throughput {ratio:.2f}x, added p50 {added:+.2f} ms", flush=True)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="requests per path and concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--model", type=Path, help="a model directory (default: build the tiny test model)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kaito-serve-bench-") as scratch:
        model_dir = args.model or tiny_model(Path(scratch) / "tiny")
        await bench(model_dir, requests=args.requests, levels=args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
