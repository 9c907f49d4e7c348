"""`kaito serve` relaying to a vLLM server it did not start: streams pass through whole and in order, refusals keep
their status, a broken stream ends in an error event, and the metrics count what went by."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from kaito.api.engine import EngineConfig
from kaito.inference.engines.vllm_engine import VllmEngine
from kaito.inference.serve import ServeError, build_engine, resolve, serving
from kaito.inference.sse import EventCutter, payloads
from tests.inference.fake_vllm import TRAFFIC, Traffic, fake_app
from tests.inference.test_app import CHAT, COMPLETIONS, Server, _samples, running, serve_args, sse_events, until


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[tuple[str, Traffic]]:
    app = fake_app(["tiny", "style"], max_model_len=512)
    async with serving(app, host="127.0.0.1", port=0) as port:
        yield f"http://127.0.0.1:{port}", app[TRAFFIC]


@pytest.fixture
async def relay() -> AsyncIterator[tuple[Server, str, Traffic]]:
    async with upstream() as (url, traffic):
        engine = VllmEngine(EngineConfig(model="/models/tiny", served_model_name="tiny"), upstream=url)
        async with running(engine) as server:
            yield server, url, traffic


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": text}], **extra}


async def raw(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> bytes:
    async with http.post(url, json=body) as resp:
        assert resp.status == 200
        return await resp.read()


async def test_an_upstream_engine_is_used_as_it_is(relay: tuple[Server, str, Traffic]) -> None:
    server, url, _ = relay
    engine = server.engine
    assert isinstance(engine, VllmEngine)
    assert engine.process is None and engine.models() == ["tiny", "style"] and engine.max_model_len == 512
    status, body = await server.post(CHAT, chat("many 3", model="style"))
    assert status == 200 and body["choices"][0]["message"]["content"] == "w0 w1 w2 "
    status, legacy = await server.post("/chat", {"prompt": "many 2", "return_full_text": False})
    assert status == 200 and legacy == {"Result": "w0 w1 "}
    await engine.close()
    async with server.http.get(f"{url}/health") as resp:
        assert resp.status == 200  # closing the engine leaves a server it did not start alone


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
async def test_streams_pass_through_every_event_in_order(relay: tuple[Server, str, Traffic], path: str) -> None:
    server, url, _ = relay
    said = "many 700"
    body = chat(said) if path == CHAT else {"model": "tiny", "prompt": said}
    body |= {"max_tokens": 500, "stream": True, "stream_options": {"include_usage": True}}
    direct = await raw(server.http, url + path, body)
    relayed = await raw(server.http, server.url + path, body)
    assert relayed == direct and len(sse_events(relayed)) == 700 + 2
    without_usage = sse_events(await raw(server.http, server.url + path, body | {"stream_options": None}))
    assert without_usage == [e for e in sse_events(direct) if "usage" not in e]


async def test_metrics_count_relayed_streams(relay: tuple[Server, str, Traffic]) -> None:
    server, _, _ = relay
    for words in (3, 40):
        status, _, _ = await server.stream(CHAT, chat(f"many {words}", stream=True))
        assert status == 200
    samples = _samples(await server.get("/metrics"))
    assert samples[("kaito_inference_requests_total", (("code", "200"), ("route", CHAT)))] == 2
    assert samples[("kaito_inference_time_to_first_token_seconds_count", ())] == 2
    assert samples[("kaito_inference_generation_tokens_total", ())] == 3 + 40  # the engine's warm-up is not counted
    assert samples[("kaito_inference_prompt_tokens_total", ())] == 5 * 2
    assert samples[("kaito_inference_queue_depth", ())] == 0


@pytest.mark.parametrize(
    ("said", "status", "kind", "param"),
    [
        pytest.param("overload", 429, "rate_limit_error", None, id="overloaded"),
        pytest.param("bad", 400, "invalid_request_error", "top_k", id="bad-parameter"),
    ],
)
async def test_upstream_refusals_keep_their_status(
    relay: tuple[Server, str, Traffic], said: str, status: int, kind: str, param: str | None
) -> None:
    server, _, _ = relay
    async with server.http.post(server.url + CHAT, json=chat(said, stream=True)) as resp:
        assert resp.status == status and resp.content_type == "application/json"
        error = (await resp.json())["error"]
        assert (error["type"], error["param"]) == (kind, param)
        assert ("Retry-After" in resp.headers) == (status == 429)


async def test_a_broken_upstream_stream_ends_with_an_error_event(relay: tuple[Server, str, Traffic]) -> None:
    server, _, _ = relay
    status, _, events = await server.stream(CHAT, chat("break", stream=True))
    assert status == 200
    assert [e["choices"][0]["delta"]["content"] for e in events[:-1]] == ["echo ", "tiny "]
    assert events[-1]["error"]["type"] == "server_error"


async def test_client_disconnect_stops_the_upstream_stream(relay: tuple[Server, str, Traffic]) -> None:
    server, _, traffic = relay
    async with server.http.post(server.url + CHAT, json=chat("slow", stream=True)) as resp:
        await resp.content.readline()
        resp.close()
    await until(lambda: _traffic(traffic), lambda t: t.aborted == 1)
    assert _samples(await server.get("/metrics"))[("kaito_inference_queue_depth", ())] == 0


async def _traffic(traffic: Traffic) -> Traffic:
    return traffic


def test_events_are_cut_whole_however_the_bytes_arrive() -> None:
    stream = b'data: {"a": 1}\n\n: comment\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'
    cutter = EventCutter()
    pieces = [cutter.feed(stream[i : i + 1]) for i in range(len(stream))]
    assert b"".join(pieces) == stream and cutter.rest == b""
    assert all(not p or p.endswith(b"\n\n") for p in pieces)
    assert payloads(b"".join(pieces)) == [b'{"a": 1}', b'{"b": 2}', b"[DONE]"]
    assert cutter.feed(b"data: {") == b"" and cutter.rest == b"data: {"


def test_engine_url_relays_to_a_running_vllm() -> None:
    config = EngineConfig()
    args = serve_args("--model", "m", "--engine-url", "http://10.0.0.5:8000/")
    engine = build_engine(resolve(args, config), config, args)
    assert isinstance(engine, VllmEngine) and engine.base_url == "http://10.0.0.5:8000"
    args = serve_args("--model", "m", "--engine", "transformers", "--engine-url", "http://10.0.0.5:8000")
    with pytest.raises(ServeError, match="--engine-url"):
        build_engine(resolve(args, config), config, args)
