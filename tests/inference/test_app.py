"""The inference server's HTTP contract: OpenAI routes, legacy /chat, health, metrics and errors, over a fake engine
and end to end over the tiny transformers model with the real `openai` client and the `kaito serve` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from transformers import AutoTokenizer

from kaito.api.engine import EngineConfig
from kaito.inference.app import create_app
from kaito.inference.config_follower import ConfigFollower
from kaito.inference.engine import Engine, NotReady, Overloaded, Sampling, UnknownModel
from kaito.inference.engines.transformers_engine import TransformersEngine
from kaito.inference.serve import (
    ServeError,
    add_serve_arguments,
    build_engine,
    choose_engine,
    load_config,
    resolve,
    run_serve,
    serving,
)
from tests.inference.fake_engine import FakeEngine

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


@dataclass
class Server:
    engine: Engine
    url: str
    http: aiohttp.ClientSession

    async def post(self, path: str, body: Any = None, *, data: bytes | None = None) -> tuple[int, Any]:
        async with self.http.post(self.url + path, json=body if data is None else None, data=data) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path) as resp:
            return resp.status, (await resp.json() if resp.content_type == "application/json" else await resp.text())

    async def stream(self, path: str, body: dict[str, Any]) -> tuple[int, str, list[Any]]:
        async with self.http.post(self.url + path, json=body) as resp:
            return resp.status, resp.headers["Content-Type"], sse_events(await resp.read())

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="x", max_retries=0)


@contextlib.asynccontextmanager
async def running(
    engine: Engine, *, max_model_len: int | None = None, ready: bool = True, follower: ConfigFollower | None = None
) -> AsyncIterator[Server]:
    app = create_app(engine, max_model_len=max_model_len, follower=follower)
    async with serving(app, host="127.0.0.1", port=0) as port, aiohttp.ClientSession() as http:
        server = Server(engine, f"http://127.0.0.1:{port}", http)
        if ready:
            await until_healthy(server)
        yield server


async def until(read: Callable[[], Awaitable[Any]], check: Callable[[Any], bool], *, within: float = 5.0) -> Any:
    """Poll `read` until `check` holds on its value; returns the value, or fails with the last one seen."""
    deadline = asyncio.get_running_loop().time() + within
    while not check(value := await read()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {within}s; last value: {value!r}")
        await asyncio.sleep(0.01)
    return value


async def until_healthy(server: Server, *, within: float = 60.0) -> None:
    await until(lambda: server.get("/health"), lambda health: health[0] == 200, within=within)


async def _engine(engine: FakeEngine) -> FakeEngine:
    return engine


def sse_events(raw: bytes) -> list[Any]:
    """Every frame must be `data: <payload>` followed by a blank line; the last must be `[DONE]`."""
    frames = raw.decode().split("\n\n")
    assert frames[-1] == "", f"stream does not end with a blank line: {raw[-40:]!r}"
    events: list[Any] = []
    for frame in frames[:-1]:
        assert frame.startswith("data: "), frame
        payload = frame.removeprefix("data: ")
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    assert events and events[-1] == "[DONE]"
    return events[:-1]


def fake_of(server: Server) -> FakeEngine:
    assert isinstance(server.engine, FakeEngine)
    return server.engine


@pytest.fixture
async def fake() -> AsyncIterator[Server]:
    async with running(FakeEngine(adapters=("fake-lora",))) as server:
        yield server


def chat_body(text: str = "hello world", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}


# --- the OpenAI routes over the fake engine ---


async def test_chat_completion_has_openai_shape(fake: Server) -> None:
    status, body = await fake.post(CHAT, chat_body())
    assert status == 200
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "fake-model"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "you said: hello world"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


async def test_completion_has_openai_shape(fake: Server) -> None:
    status, body = await fake.post(COMPLETIONS, {"model": "fake-model", "prompt": "one two three"})
    assert status == 200
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    assert body["choices"] == [
        {"index": 0, "text": "you said: one two three", "logprobs": None, "finish_reason": "stop"}
    ]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


async def test_sampling_fields_reach_the_engine(fake: Server) -> None:
    body = chat_body(max_tokens=9, temperature=0.5, top_p=0.9, stop=["xyz"], seed=7, user="ignored")
    assert (await fake.post(CHAT, body))[0] == 200
    await fake.post(COMPLETIONS, {"prompt": ["single"], "stop": "halt", "max_completion_tokens": 3, "max_tokens": 99})
    chat, completion = fake_of(fake).requests[-2:]
    assert chat.sampling == Sampling(max_tokens=9, temperature=0.5, top_p=0.9, stop=("xyz",), seed=7)
    assert completion.model == "fake-model", "model defaults to the served model"
    assert completion.prompt == "single" and completion.sampling.stop == ("halt",)
    assert completion.sampling.max_tokens == 3, "max_completion_tokens wins over max_tokens"


async def test_default_max_tokens_follow_openai(fake: Server) -> None:
    await fake.post(COMPLETIONS, {"prompt": "x"})
    await fake.post(CHAT, chat_body())
    completion, chat = fake_of(fake).requests[-2:]
    assert completion.sampling.max_tokens == 16
    assert chat.sampling.max_tokens == 32  # half the fake's context, so that any prompt up to 32 fits


async def test_max_tokens_and_stop_end_the_answer(fake: Server) -> None:
    _, body = await fake.post(CHAT, chat_body("a b c d", max_tokens=3))
    assert body["choices"][0]["message"]["content"] == "you said: a"
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 3
    _, body = await fake.post(COMPLETIONS, {"prompt": "a b STOP c", "stop": ["STOP", "zzz"]})
    assert body["choices"][0]["text"] == "you said: a b "
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_models_lists_base_and_adapters(fake: Server) -> None:
    status, body = await fake.get("/v1/models")
    assert status == 200 and body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["fake-model", "fake-lora"]
    assert all(m["object"] == "model" and m["owned_by"] == "kaito" for m in body["data"])
    assert body["data"][1]["parent"] == "fake-model" and body["data"][0]["max_model_len"] == 64
    status, body = await fake.post(CHAT, chat_body(model="fake-lora"))
    assert status == 200 and body["model"] == "fake-lora"


async def test_legacy_chat_with_prompt_and_messages(fake: Server) -> None:
    status, body = await fake.post("/chat", {"prompt": "YOUR QUESTION HERE"})
    assert status == 200
    assert body == {"Result": "YOUR QUESTION HEREyou said: YOUR QUESTION HERE"}, "return_full_text defaults to true"
    _, body = await fake.post("/chat", {"prompt": "q", "return_full_text": False})
    assert body == {"Result": "you said: q"}
    _, body = await fake.post("/chat", {"messages": [{"role": "user", "content": "hi there"}]})
    assert body == {"Result": "you said: hi there"}
    kwargs = {"max_length": 2, "do_sample": False, "top_p": 0.5, "top_k": 10}
    _, body = await fake.post("/chat", {"prompt": "q", "return_full_text": False, "generate_kwargs": kwargs})
    assert body == {"Result": "you said:"}
    sampling = fake_of(fake).requests[-1].sampling
    assert (sampling.max_tokens, sampling.temperature, sampling.top_p) == (2, 0.0, 0.5)
    _, body = await fake.post("/chat", {"prompt": "q", "generate_kwargs": {"max_new_tokens": 3, "max_length": 50}})
    assert fake_of(fake).requests[-1].sampling.max_tokens == 3


# --- errors, always in OpenAI's shape ---


def _assert_error(status: int, body: Any, expected: int, param: str | None) -> dict[str, Any]:
    assert status == expected, body
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param
    error: dict[str, Any] = body["error"]
    return error


BAD_REQUESTS = [
    pytest.param(CHAT, {"model": "fake-model"}, "messages", id="missing-messages"),
    pytest.param(CHAT, chat_body(temperature="hot"), "temperature", id="temperature-type"),
    pytest.param(CHAT, chat_body(temperature=True), "temperature", id="temperature-bool"),
    pytest.param(CHAT, chat_body(temperature=2.5), "temperature", id="temperature-range"),
    pytest.param(CHAT, chat_body(top_p=0), "top_p", id="top-p-zero"),
    pytest.param(CHAT, chat_body(n=2), "n", id="n-2"),
    pytest.param(CHAT, chat_body(max_tokens=0), "max_tokens", id="max-tokens-0"),
    pytest.param(CHAT, chat_body(max_tokens="5"), "max_tokens", id="max-tokens-type"),
    pytest.param(CHAT, chat_body(max_tokens=65), "max_tokens", id="max-tokens-over-context"),
    pytest.param(CHAT, chat_body(stop=[1]), "stop", id="stop-type"),
    pytest.param(CHAT, chat_body(stream="yes"), "stream", id="stream-type"),
    pytest.param(CHAT, chat_body(stream_options={"include_usage": True}), "stream_options", id="options-no-stream"),
    pytest.param(CHAT, chat_body(logprobs=True), "logprobs", id="logprobs"),
    pytest.param(CHAT, chat_body(model=3), "model", id="model-type"),
    pytest.param(CHAT, {"messages": []}, "messages", id="messages-empty"),
    pytest.param(CHAT, {"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", id="role"),
    pytest.param(
        CHAT,
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        "messages[0].content[0]",
        id="image-part",
    ),
    pytest.param(COMPLETIONS, {"model": "fake-model"}, "prompt", id="missing-prompt"),
    pytest.param(COMPLETIONS, {"prompt": ["a", "b"]}, "prompt", id="batched-prompts"),
    pytest.param(COMPLETIONS, {"prompt": [1, 2, 3]}, "prompt", id="token-ids"),
    pytest.param(COMPLETIONS, {"prompt": "x", "echo": True}, "echo", id="echo"),
    pytest.param("/chat", {}, "prompt", id="legacy-missing-prompt"),
    pytest.param("/chat", {"prompt": "x", "generate_kwargs": {"temperature": "x"}}, "generate_kwargs.temperature"),
    pytest.param("/chat", {"prompt": "x", "generate_kwargs": []}, "generate_kwargs", id="legacy-kwargs-type"),
]


@pytest.mark.parametrize(("path", "body", "param"), BAD_REQUESTS)
async def test_bad_requests_are_400_naming_the_param(fake: Server, path: str, body: Any, param: str) -> None:
    error = _assert_error(*await fake.post(path, body), 400, param)
    assert error["type"] == "invalid_request_error" and error["message"]
    assert fake_of(fake).requests == []


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS, "/chat"])
@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b'["a list"]', b""])
async def test_malformed_json_is_400(fake: Server, path: str, raw: bytes) -> None:
    error = _assert_error(*await fake.post(path, data=raw), 400, None)
    assert "JSON" in error["message"]


async def test_unknown_model_is_404(fake: Server) -> None:
    error = _assert_error(*await fake.post(CHAT, chat_body(model="gpt-9")), 404, "model")
    assert "gpt-9" in error["message"] and "fake-model" in error["message"]
    assert error["code"] == "model_not_found"


async def test_prompt_too_long_is_400_with_numbers(fake: Server) -> None:
    error = _assert_error(*await fake.post(COMPLETIONS, {"prompt": "w " * 60, "max_tokens": 10}), 400, "prompt")
    assert "64" in error["message"] and "70" in error["message"] and "60" in error["message"]


async def test_overloaded_is_429_with_retry_after() -> None:
    engine = FakeEngine(fail_with=Overloaded("queue full", retry_after=2.5))
    async with running(engine) as server:
        async with server.http.post(server.url + CHAT, json=chat_body()) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "3"
            error = _assert_error(resp.status, await resp.json(), 429, None)
        assert error["type"] == "rate_limit_error" and error["code"] == "overloaded"
        with pytest.raises(openai.RateLimitError):
            await server.client().chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "x"}]
            )


@pytest.mark.parametrize("error", [UnknownModel("gone", param="model"), NotReady("warming up")])
async def test_engine_errors_keep_their_status(error: Exception) -> None:
    async with running(FakeEngine(fail_with=error)) as server:
        status, body = await server.post(COMPLETIONS, {"prompt": "x"})
        assert status == getattr(error, "status", None) and body["error"]["message"] == str(error)


async def test_unexpected_engine_failure_is_500_and_server_survives(caplog: pytest.LogCaptureFixture) -> None:
    engine = FakeEngine(fail_with=RuntimeError("kaboom"))
    async with running(engine) as server:
        error = _assert_error(*await server.post(CHAT, chat_body()), 500, None)
        assert error["type"] == "server_error" and "kaboom" not in error["message"]
        engine.fail_with = None
        assert (await server.post(CHAT, chat_body()))[0] == 200
    assert "kaboom" in caplog.text


async def test_unknown_routes_answer_in_openai_shape(fake: Server) -> None:
    _assert_error(*await fake.post("/v1/embeddings", {"input": "x"}), 404, None)
    async with fake.http.get(fake.url + CHAT) as resp:
        _assert_error(resp.status, await resp.json(), 405, None)
        assert resp.headers["Allow"] == "POST"


async def test_health_is_503_until_loaded_and_routes_refuse_meanwhile() -> None:
    gate = asyncio.Event()
    async with running(FakeEngine(load_gate=gate), ready=False) as server:
        assert await server.get("/health") == (503, {"status": "loading"})
        error = _assert_error(*await server.post(CHAT, chat_body()), 503, None)
        assert "loading" in error["message"]
        gate.set()
        await until_healthy(server, within=2)
        assert await server.get("/health") == (200, {"status": "Healthy"})
        assert (await server.post(CHAT, chat_body()))[0] == 200


async def test_load_failure_shows_on_health() -> None:
    engine = FakeEngine(load_error=OSError("weights not found"))
    async with running(engine, ready=False) as server:
        health = await until(lambda: server.get("/health"), lambda health: health[1]["status"] != "loading")
        assert health[0] == 503 and health[1]["status"] == "failed"
        assert "weights not found" in health[1]["error"]
        error = _assert_error(*await server.post(CHAT, chat_body()), 503, None)
        assert "weights not found" in error["message"]


async def test_engine_closed_when_app_stops() -> None:
    engine = FakeEngine()
    async with running(engine):
        assert not engine.closed
    assert engine.closed


# --- streaming ---


async def test_chat_stream_framing(fake: Server) -> None:
    status, content_type, events = await fake.stream(CHAT, chat_body("hi there", stream=True))
    assert status == 200 and content_type.startswith("text/event-stream")
    assert {e["id"] for e in events} == {events[0]["id"]} and events[0]["id"].startswith("chatcmpl-")
    assert all(e["object"] == "chat.completion.chunk" and "usage" not in e for e in events)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [e["choices"][0]["delta"].get("content", "") for e in events[1:-1]]
    assert "".join(deltas) == "you said: hi there" and all(deltas)
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-1])
    assert events[-1]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]


async def test_completion_stream_with_usage(fake: Server) -> None:
    body = {"prompt": "a b c", "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}
    _, _, events = await fake.stream(COMPLETIONS, body)
    *chunks, finish, usage = events
    assert all(e["object"] == "text_completion" and e["usage"] is None for e in [*chunks, finish])
    assert "".join(e["choices"][0]["text"] for e in chunks) == "you said: a b"
    assert finish["choices"][0]["finish_reason"] == "length"
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


async def test_stream_refusals_keep_their_status(fake: Server) -> None:
    async with fake.http.post(fake.url + CHAT, json=chat_body(model="nope", stream=True)) as resp:
        assert resp.status == 404 and resp.content_type == "application/json"


async def test_failure_mid_stream_ends_with_an_error_event() -> None:
    async with running(FakeEngine(fail_after=2)) as server:
        status, _, events = await server.stream(CHAT, chat_body("a b c d", stream=True))
        assert status == 200
        assert events[-1]["error"]["type"] == "server_error"
        assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "you said:"


async def test_client_disconnect_stops_the_stream() -> None:
    engine = FakeEngine(max_model_len=1000, token_delay=0.02)
    async with running(engine) as server:
        body = chat_body("w " * 200, stream=True, max_tokens=200)
        async with server.http.post(server.url + CHAT, json=body) as resp:
            await resp.content.readline()  # the role chunk
            await resp.content.readline()
            resp.close()
        await until(lambda: _engine(engine), lambda e: e.aborted == 1)
        assert engine.produced < 50 and engine.in_flight == 0
        assert _samples(await server.get("/metrics"))[("kaito_inference_queue_depth", ())] == 0


async def test_client_disconnect_stops_a_whole_answer() -> None:
    engine = FakeEngine(max_model_len=1000, token_delay=0.02)
    async with running(engine) as server:
        with pytest.raises(TimeoutError):
            body = {"prompt": "w " * 200, "max_tokens": 200}
            await server.http.post(server.url + COMPLETIONS, json=body, timeout=aiohttp.ClientTimeout(total=0.2))
        await until(lambda: _engine(engine), lambda e: e.aborted == 1)
        assert engine.produced < 50
        key = ("kaito_inference_requests_total", (("code", "499"), ("route", COMPLETIONS)))
        assert _samples(await server.get("/metrics"))[key] == 1


# --- metrics ---


def _samples(scrape: tuple[int, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = scrape
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_the_traffic(fake: Server) -> None:
    for _ in range(3):
        await fake.post(CHAT, chat_body("one two"))  # 2 prompt tokens, 4 generated
    await fake.stream(COMPLETIONS, {"prompt": "a b c", "stream": True})  # 3 prompt, 5 generated
    await fake.post(CHAT, chat_body(n=2))
    await fake.post(CHAT, chat_body(model="nope"))
    await fake.post("/chat", {"prompt": "q", "generate_kwargs": {"max_length": 1}})  # 1 prompt, 1 generated
    samples = _samples(await fake.get("/metrics"))

    def requests(route: str, code: str) -> float:
        return samples.get(("kaito_inference_requests_total", (("code", code), ("route", route))), 0)

    assert (requests(CHAT, "200"), requests(CHAT, "400"), requests(CHAT, "404")) == (3, 1, 1)
    assert (requests(COMPLETIONS, "200"), requests("/chat", "200")) == (1, 1)
    assert requests("/health", "200") >= 1  # the fixture waited for it
    duration = "kaito_inference_request_duration_seconds_count"
    assert samples[(duration, (("route", CHAT),))] == 5
    assert samples[("kaito_inference_time_to_first_token_seconds_count", ())] == 5
    assert samples[("kaito_inference_prompt_tokens_total", ())] == 3 * 2 + 3 + 1
    assert samples[("kaito_inference_generation_tokens_total", ())] == 3 * 4 + 5 + 1
    assert samples[("kaito_inference_queue_depth", ())] == 0
    assert samples[("kaito_inference_model_load_seconds", ())] > 0


async def test_each_app_has_its_own_registry() -> None:
    async with running(FakeEngine()) as one, running(FakeEngine()) as two:
        await one.post(CHAT, chat_body())
        key = ("kaito_inference_requests_total", (("code", "200"), ("route", CHAT)))
        assert _samples(await one.get("/metrics"))[key] == 1
        assert key not in _samples(await two.get("/metrics"))


# --- the openai client against the fake: response objects and error classes ---


async def test_openai_client_parses_responses_and_errors(fake: Server) -> None:
    client = fake.client()
    chat = await client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "yo"}])
    assert chat.choices[0].message.content == "you said: yo" and chat.usage and chat.usage.total_tokens == 4
    stream = await client.completions.create(model="fake-model", prompt="a", stream=True)
    assert "".join([c.choices[0].text async for c in stream if c.choices]) == "you said: a"
    with pytest.raises(openai.NotFoundError) as not_found:
        await client.completions.create(model="gpt-9", prompt="a")
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}], n=2)
    assert bad.value.param == "n"
    models = await client.models.list()
    assert [m.id async for m in models] == ["fake-model", "fake-lora"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- end to end: the tiny transformers model behind the app, the real openai client, the `kaito serve` command ---

TINY = "tiny"
GREEDY_PROMPT = "hello"  # the tiny model runs past 32 tokens on it without emitting EOS


def tiny_engine_for(model_dir: Path, **overrides: Any) -> TransformersEngine:
    return TransformersEngine(model_dir, served_model_name=TINY, **overrides)


class GatedEngine(TransformersEngine):
    """Loads only once the test opens the gate, so the 'loading' window lasts as long as the test needs."""

    gate: asyncio.Event

    async def load(self) -> None:
        await self.gate.wait()
        await super().load()


@pytest.fixture
async def tiny(tiny_model_dir: Path) -> AsyncIterator[Server]:
    async with running(tiny_engine_for(tiny_model_dir)) as server:
        yield server


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)


async def test_e2e_chat_whole_and_streamed_agree(tiny: Server, tokenizer: Any) -> None:
    client = tiny.client()
    messages: list[Any] = [{"role": "user", "content": "The small cat sees"}]
    whole = await client.chat.completions.create(model=TINY, messages=messages, max_tokens=12, temperature=0)
    assert whole.object == "chat.completion" and whole.model == TINY and whole.id.startswith("chatcmpl-")
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert whole.usage is not None
    assert whole.usage.prompt_tokens == len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert 1 <= whole.usage.completion_tokens <= 12
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    stream = await client.chat.completions.create(
        model=TINY, messages=messages, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].usage == whole.usage


async def test_e2e_completion_respects_max_tokens(tiny: Server, tokenizer: Any) -> None:
    client = tiny.client()
    whole = await client.completions.create(model=TINY, prompt=GREEDY_PROMPT, max_tokens=20, temperature=0)
    choice, usage = whole.choices[0], whole.usage
    assert whole.object == "text_completion" and choice.finish_reason == "length" and usage is not None
    assert usage.completion_tokens == 20
    assert usage.prompt_tokens == len(tokenizer(GREEDY_PROMPT)["input_ids"])
    stream = await client.completions.create(
        model=TINY, prompt=GREEDY_PROMPT, max_tokens=20, temperature=0, stream=True
    )
    pieces = [c.choices[0].text async for c in stream if c.choices]
    assert "".join(pieces) == choice.text and len(pieces) > 1


async def test_e2e_stop_sequence_cuts_the_text(tiny: Server) -> None:
    client = tiny.client()
    full = (await client.completions.create(model=TINY, prompt=GREEDY_PROMPT, max_tokens=32, temperature=0)).choices[0]
    word = re.search(r"[a-z]{3,}", full.text[2:])
    assert word is not None, full.text
    stop = word.group()
    cut = await client.completions.create(model=TINY, prompt=GREEDY_PROMPT, max_tokens=32, temperature=0, stop=[stop])
    assert cut.choices[0].text == full.text[: full.text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


async def test_e2e_legacy_chat(tiny: Server) -> None:
    status, body = await tiny.post("/chat", {"prompt": "YOUR QUESTION HERE", "generate_kwargs": {"max_length": 8}})
    assert status == 200 and set(body) == {"Result"} and body["Result"].startswith("YOUR QUESTION HERE")
    status, body = await tiny.post("/chat", {"messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and isinstance(body["Result"], str) and body["Result"]


async def test_e2e_openai_errors(tiny: Server) -> None:
    client = tiny.client()
    with pytest.raises(openai.NotFoundError) as not_found:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert "tiny" in not_found.value.message
    with pytest.raises(openai.BadRequestError) as too_long:
        await client.completions.create(model=TINY, prompt="the cat " * 200, max_tokens=10)
    assert "256" in too_long.value.message and too_long.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.completions.create(model=TINY, prompt="x", temperature=5)
    assert bad.value.param == "temperature"


async def test_e2e_concurrent_requests_answered_or_429(tiny_model_dir: Path) -> None:
    engine = tiny_engine_for(tiny_model_dir, max_concurrency=1, max_queue=2)
    async with running(engine) as server:

        async def one() -> tuple[int, str | None]:
            body = {"model": TINY, "prompt": GREEDY_PROMPT, "max_tokens": 32, "temperature": 0}
            async with server.http.post(server.url + COMPLETIONS, json=body) as resp:
                payload = await resp.json()
                if resp.status == 200:
                    assert payload["usage"]["completion_tokens"] == 32
                else:
                    assert payload["error"]["type"] == "rate_limit_error"
                return resp.status, resp.headers.get("Retry-After")

        results = await asyncio.gather(*(one() for _ in range(32)))
        statuses = [status for status, _ in results]
        assert set(statuses) == {200, 429}, statuses
        assert statuses.count(200) >= 3  # one running + two queued, at least
        assert all(retry == "1" for status, retry in results if status == 429)
        samples = _samples(await server.get("/metrics"))
        assert samples[("kaito_inference_queue_depth", ())] == 0
        key = ("kaito_inference_requests_total", (("code", "429"), ("route", COMPLETIONS)))
        assert samples[key] == statuses.count(429)


async def test_e2e_health_turns_200_after_load(tiny_model_dir: Path) -> None:
    engine = GatedEngine(tiny_model_dir, served_model_name=TINY)
    engine.gate = asyncio.Event()
    async with running(engine, ready=False) as server:
        assert await server.get("/health") == (503, {"status": "loading"})
        with pytest.raises(openai.InternalServerError):
            await server.client().completions.create(model=TINY, prompt="x")
        engine.gate.set()
        await until_healthy(server, within=30)
        assert (await server.client().completions.create(model=TINY, prompt="x", max_tokens=2)).choices
        samples = _samples(await server.get("/metrics"))
        assert samples[("kaito_inference_model_load_seconds", ())] > 0


async def test_e2e_adapters_listed_and_selectable(tiny_model_dir: Path, tiny_adapters_dir: Path) -> None:
    engine = tiny_engine_for(tiny_model_dir, adapters_dir=tiny_adapters_dir, environ={})
    async with running(engine) as server:
        client = server.client()
        listed = [m.id async for m in await client.models.list()]
        assert listed == [TINY, "tiny-lora", "tiny-lora-env", "tiny-lora-zero"]
        base = await client.completions.create(model=TINY, prompt=GREEDY_PROMPT, max_tokens=16, temperature=0)
        tuned = await client.completions.create(model="tiny-lora", prompt=GREEDY_PROMPT, max_tokens=16, temperature=0)
        assert tuned.model == "tiny-lora" and tuned.choices[0].text != base.choices[0].text


async def test_kaito_serve_command_answers_legacy_chat_and_stops_on_sigterm(tiny_model_dir: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "kaito.cli", "serve", "--model", str(tiny_model_dir), "--host", "127.0.0.1"]
    proc = await asyncio.create_subprocess_exec(
        *command, "--port", str(port), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with aiohttp.ClientSession() as http:
            server = Server(tiny_engine_for(tiny_model_dir), f"http://127.0.0.1:{port}", http)
            await until(lambda: _health_or_none(server), lambda health: health == 200, within=60)
            status, body = await server.post("/chat", {"prompt": "YOUR QUESTION HERE"})
            assert status == 200 and isinstance(body["Result"], str)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert f"http://127.0.0.1:{port}" in out.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _health_or_none(server: Server) -> int | None:
    try:
        return (await server.get("/health"))[0]
    except aiohttp.ClientConnectionError:
        return None


# --- `kaito serve` options: the config file, flags over it, the engine choice ---


def serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(argv)


ENGINE_CONFIG = """
engine: vllm
model: microsoft/phi-4
revision: main
servedModelName: phi-4
port: 5000
maxModelLen: 4096
tensorParallelSize: 2
adaptersDir: /mnt/adapter
adapters: [{name: style, strength: 1.0}]
nodes: 1
vllm:
  enable-prefix-caching: true
  max-num-batched-tokens: 8192
"""


def test_serve_flags_override_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text(ENGINE_CONFIG)
    config = load_config(str(path))
    from_file = resolve(serve_args("--config", str(path)), config)
    assert (from_file.engine, from_file.model, from_file.served_model_name) == ("vllm", "microsoft/phi-4", "phi-4")
    assert (from_file.port, from_file.adapters_dir, from_file.max_queue) == (5000, "/mnt/adapter", 32)
    flags = serve_args("--config", str(path), "--engine", "transformers", "--model", "/m", "--port", "0")
    overridden = resolve(flags, config)
    assert (overridden.engine, overridden.model, overridden.port) == ("transformers", "/m", 0)
    assert overridden.served_model_name == "phi-4"
    bare = resolve(serve_args("--model", "/models/x"), EngineConfig())
    assert (bare.engine, bare.served_model_name, bare.port) == ("auto", "/models/x", 5000)
    assert bare.adapters_dir == "/mnt/adapter"


def test_vllm_engine_is_built_from_config_and_flags(tmp_path: Path) -> None:
    vllm_engine = pytest.importorskip("kaito.inference.engines.vllm_engine")
    config = EngineConfig.from_yaml(ENGINE_CONFIG)
    args = serve_args("--max-num-seqs", "8", "--tensor-parallel-size", "4")
    engine = build_engine(resolve(args, config), config, args)
    assert isinstance(engine, vllm_engine.VllmEngine)
    settings = engine.config
    assert (settings.model, settings.served_model_name) == ("microsoft/phi-4", "phi-4")
    assert (settings.max_model_len, settings.max_num_seqs, settings.tensor_parallel_size) == (4096, 8, 4)
    assert "--enable-prefix-caching" in settings.extra and "--max-num-batched-tokens=8192" in settings.extra


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("model: m\nmaxModelLen: lots\n", "maxModelLen", id="bad-number"),
        pytest.param("model: m\nengineArgs: [--max-model-len=4096]\n", "engineArgs", id="unknown-field"),
    ],
)
async def test_serve_names_the_field_of_a_malformed_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, field: str
) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text(text)
    assert await run_serve(serve_args("--config", str(path))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kaito serve: --config {path}: {field}: ")


def test_auto_picks_transformers_without_vllm_or_gpu() -> None:
    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        assert choose_engine("auto") == "vllm"
    else:
        assert choose_engine("auto") == "transformers"
    assert choose_engine("transformers") == "transformers"
    with pytest.raises(ServeError):
        choose_engine("tgi")


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-model"),
        pytest.param(["--config", "/nonexistent/engine.yaml"], id="missing-config"),
        pytest.param(["--model", "/m", "--engine", "transformers", "--dtype", "float7"], id="bad-dtype"),
    ],
)
async def test_serve_reports_bad_configuration(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_serve(serve_args(*argv)) == 2
    assert capsys.readouterr().err.startswith("kaito serve: ")
