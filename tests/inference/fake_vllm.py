"""A stand-in for vLLM's OpenAI server process: same CLI flags and endpoints, echoing text, for engine tests."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from aiohttp import web


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
    names = [known.served_model_name, *(m.split("=", 1)[0] for m in known.lora_modules)]

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="")

    async def models(_: web.Request) -> web.Response:
        data = [{"id": n, "object": "model", "max_model_len": known.max_model_len} for n in names]
        return web.json_response({"object": "list", "data": data})

    async def complete(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["model"] not in names:
            return web.json_response({"error": {"message": "no such model", "param": "model"}}, status=404)
        chat = "messages" in body
        words = ["echo", body["model"], str(body.get("max_tokens"))]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for word in words:
            choice = {"index": 0, "delta": {"content": word + " "}} if chat else {"index": 0, "text": word + " "}
            await resp.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
        last: dict[str, object] = {"index": 0, "finish_reason": "length"}
        if chat:
            last["delta"] = {}
        else:
            last["text"] = ""
        await resp.write(f"data: {json.dumps({'choices': [last]})}\n\n".encode())
        usage = {"prompt_tokens": 5, "completion_tokens": len(words), "total_tokens": 5 + len(words)}
        await resp.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.add_routes([web.get("/health", health), web.get("/v1/models", models)])
    app.add_routes([web.post("/v1/completions", complete), web.post("/v1/chat/completions", complete)])
    web.run_app(app, host=known.host, port=known.port, print=None)


if __name__ == "__main__":
    main()
