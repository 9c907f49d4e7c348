"""A stand-in for vLLM's OpenAI server process: same CLI flags and endpoints, echoing text, for engine tests.

Run as a script it is the child `VllmEngine` starts; `fake_app` is the same server for tests that run it in their
own event loop. Prompts (or last messages) steer it: "many N" answers N words, "overload" is refused with 429,
"bad" with 400, "break" cuts the stream off mid-answer, "slow" answers 100 words 20 ms apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass
class Traffic:
    """What the fake saw: streams started, and streams whose client went away before the end."""

    started: int = 0
    aborted: int = 0


TRAFFIC = web.AppKey("traffic", Traffic)


def _frame(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


def fake_app(names: list[str], *, max_model_len: int = 2048) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        return web.Response(text="")

    async def models(_: web.Request) -> web.Response:
        data = [{"id": n, "object": "model", "max_model_len": max_model_len} for n in names]
        return web.json_response({"object": "list", "data": data})

    async def complete(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["model"] not in names:
            return web.json_response({"error": {"message": "no such model", "param": "model"}}, status=404)
        chat = "messages" in body
        said = str(body["messages"][-1]["content"] if chat else body["prompt"])
        if said == "overload":
            return web.json_response({"error": {"message": "queue full"}}, status=429)
        if said == "bad":
            return web.json_response({"error": {"message": "bad top_k", "param": "top_k"}}, status=400)
        words = ["echo", body["model"], str(body.get("max_tokens"))]
        if said.startswith("many "):
            words = [f"w{i}" for i in range(int(said.split()[1]))]
        if said == "slow":
            words = [f"w{i}" for i in range(100)]
        traffic = request.app[TRAFFIC]
        traffic.started += 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i, word in enumerate(words):
                choice = {"index": 0, "delta": {"content": word + " "}} if chat else {"index": 0, "text": word + " "}
                await resp.write(_frame({"id": "cmpl-1", "choices": [choice]}))
                if said == "break" and i == 1:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if said == "slow":
                    await asyncio.sleep(0.02)
        except (asyncio.CancelledError, ConnectionResetError):
            traffic.aborted += 1
            raise
        last: dict[str, object] = {"index": 0, "finish_reason": "length"}
        if chat:
            last["delta"] = {}
        else:
            last["text"] = ""
        await resp.write(_frame({"id": "cmpl-1", "choices": [last]}))
        usage = {"prompt_tokens": 5, "completion_tokens": len(words), "total_tokens": 5 + len(words)}
        await resp.write(_frame({"id": "cmpl-1", "choices": [], "usage": usage}))
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app[TRAFFIC] = Traffic()
    app.add_routes([web.get("/health", health), web.get("/v1/models", models)])
    app.add_routes([web.post("/v1/completions", complete), web.post("/v1/chat/completions", complete)])
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--served-model-name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--lora-modules", nargs="*", default=[])
    parser.add_argument("--max-model-len", type=int, default=2048)
    known, _ = parser.parse_known_args()
    record = Path(known.model) / "argv.json"
    record.write_text(json.dumps(sys.argv[1:]))
    if "--crash" in sys.argv:
        print("fake vllm: CUDA out of memory while loading", flush=True)
        raise SystemExit(3)
    if "--kv-too-small" in sys.argv:  # vLLM v1's words, as its engine core logs them
        print(
            "(EngineCore_DP0 pid=1) ERROR 10-08 20:33:48 [core.py:708] ValueError: To serve at least one request with "
            f"the models's max seq len ({known.max_model_len}), (5.62 GiB KV cache is needed, which is larger than the "
            "available KV cache memory (4.50 GiB). Based on the available memory, the estimated maximum model length "
            "is 1024. Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the "
            "engine.",
            flush=True,
        )
        raise SystemExit(1)
    print("INFO 10-08 20:33:40 [kv_cache_utils.py:1087] GPU KV cache size: 12,345 tokens", flush=True)
    names = [known.served_model_name, *(m.split("=", 1)[0] for m in known.lora_modules)]
    app = fake_app(names, max_model_len=known.max_model_len)
    web.run_app(app, host=known.host, port=known.port, print=None)


if __name__ == "__main__":
    main()
