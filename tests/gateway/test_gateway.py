"""The gateway over HTTP with stub engines behind it: balancing, affinity, streaming, retries, holding, metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from kaito.gateway.demand import Demand
from kaito.gateway.gateway import Gateway, Settings
from kaito.gateway.router import Replica
from kaito.runtime.clock import FakeClock
from tests.gateway.stubs import FedDiscovery, StubEngine, chat, engines, gateway_at, refusing_url, serving, until


@dataclass
class Running:
    gateway: Gateway
    discovery: FedDiscovery
    url: str
    http: aiohttp.ClientSession
    clock: FakeClock

    def sample(self, name: str, **labels: str) -> float:
        value = self.gateway.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def post(self, body: dict[str, object], path: str = "/v1/chat/completions") -> aiohttp.ClientResponse:
        response = await self.http.post(self.url + path, json=body)
        await response.read()
        return response


@pytest.fixture
def patches() -> list[dt.datetime]:
    return []


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
async def running(settings: Settings, patches: list[dt.datetime]) -> AsyncIterator[Running]:
    clock = FakeClock()

    async def sink(at: dt.datetime) -> None:
        patches.append(at)

    discovery = FedDiscovery()
    gateway = Gateway(discovery, demand=Demand(sink, clock=clock), settings=settings, clock=clock)
    async with gateway_at(gateway) as url, aiohttp.ClientSession() as http:
        await discovery.running.wait()
        yield Running(gateway, discovery, url, http, clock)


async def test_least_outstanding_spreads_concurrent_requests(running: Running) -> None:
    gate = asyncio.Event()
    async with engines(StubEngine("a", gate=gate), StubEngine("b", gate=gate), StubEngine("c", gate=gate)) as stubs:
        running.discovery.feed([s.replica for s in stubs])
        sent = [asyncio.create_task(running.post(chat(f"q{i}"))) for i in range(6)]
        await until(lambda: sum(len(s.received) for s in stubs) == 6, what="six requests at the engines")
        assert [len(s.received) for s in stubs] == [2, 2, 2]
        assert running.sample("kaito_gateway_in_flight_requests") == 6
        assert running.sample("kaito_gateway_replica_in_flight", replica="b") == 2
        gate.set()
        answers = await asyncio.gather(*sent)
    assert [r.status for r in answers] == [200] * 6
    assert running.sample("kaito_gateway_requests_total", code="200") == 6
    assert running.sample("kaito_gateway_in_flight_requests") == 0
    assert running.sample("kaito_gateway_replica_in_flight", replica="a") == 0
    assert running.sample("kaito_gateway_ready_replicas") == 3


@pytest.mark.parametrize("settings", [Settings(affinity_slack=1)])
async def test_same_prefix_same_replica_until_it_is_overloaded(running: Running) -> None:
    shared = "You answer questions about the manual below.\n" + "The manual says many things. " * 12
    async with engines(StubEngine("a"), StubEngine("b")) as stubs:
        running.discovery.feed([s.replica for s in stubs])
        for i in range(4):
            assert (await running.post(chat(f"{shared} question {i}"))).status == 200
        counts = sorted(len(s.received) for s in stubs)
        assert counts == [0, 4]  # one replica took every request sharing the prefix
        preferred = next(s for s in stubs if s.received)
        other = next(s for s in stubs if s is not preferred)

        preferred.gate = asyncio.Event()
        held = [asyncio.create_task(running.post(chat(f"{shared} held {i}"))) for i in range(2)]
        await until(lambda: len(preferred.received) == 6, what="two requests waiting at the preferred replica")
        # The preferred replica has 2 outstanding, the other 0: beyond the slack of 1, so the next goes elsewhere.
        assert (await running.post(chat(f"{shared} overflow"))).status == 200
        assert len(other.received) == 1
        preferred.gate.set()
        await asyncio.gather(*held)


async def test_stream_chunks_pass_as_they_come(running: Running) -> None:
    second_chunk = asyncio.Event()
    async with engines(StubEngine("a", stream_chunks=2, stream_gate=second_chunk)) as stubs:
        running.discovery.feed([stubs[0].replica])
        async with running.http.post(running.url + "/v1/chat/completions", json=chat("hi", stream=True)) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 10)
            assert b'"a-0"' in first  # arrived while the engine still holds its second chunk
            second_chunk.set()
            rest = await response.content.read()
    assert b'"a-1"' in rest and rest.endswith(b"data: [DONE]\n\n")


async def test_a_refusing_replica_is_retried_elsewhere(running: Running) -> None:
    async with engines(StubEngine("b")) as stubs:
        # "a" sorts first among equally loaded replicas, so the first attempt goes to the refusing one.
        running.discovery.feed([Replica("a", refusing_url()), stubs[0].replica])
        response = await running.post(chat("hi"))
    assert response.status == 200
    assert len(stubs[0].received) == 1


async def test_a_replica_that_drops_the_connection_before_answering_is_retried(running: Running) -> None:
    async def drop(request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    dropper = web.Application()
    dropper.router.add_post("/v1/chat/completions", drop)
    async with serving(dropper) as dropper_url, engines(StubEngine("b")) as stubs:
        running.discovery.feed([Replica("a", dropper_url), stubs[0].replica])
        response = await running.post(chat("hi"))
    assert response.status == 200
    assert len(stubs[0].received) == 1


async def test_no_retry_after_the_first_byte(running: Running) -> None:
    async def half(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"partial": true}\n\n')
        assert request.transport is not None
        request.transport.close()
        return response

    breaker = web.Application()
    breaker.router.add_post("/v1/chat/completions", half)
    async with serving(breaker) as breaker_url, engines(StubEngine("b")) as stubs:
        running.discovery.feed([Replica("a", breaker_url), stubs[0].replica])
        async with running.http.post(running.url + "/v1/chat/completions", json=chat("hi", stream=True)) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.content.read()
    assert stubs[0].received == []  # never sent again
    assert (await running.http.get(running.url + "/healthz")).status == 200


async def test_held_request_is_answered_once_a_replica_is_ready(running: Running, patches: list[dt.datetime]) -> None:
    first = asyncio.create_task(running.post(chat("first")))
    await until(lambda: len(running.gateway.holding) == 1, what="the request held")
    assert running.sample("kaito_gateway_queued_requests") == 1
    await until(lambda: len(patches) == 1, what="demand written")
    assert patches == [running.clock.wall()]

    running.clock.advance(1)
    models = asyncio.create_task(running.http.get(running.url + "/v1/models"))
    await until(lambda: len(running.gateway.holding) == 2, what="a second request held")
    assert len(patches) == 1  # at most one demand per 5 s
    await running.clock.step(5)
    await until(lambda: len(patches) == 2, what="the later demand written after the interval")
    assert patches[1] - patches[0] == dt.timedelta(seconds=1)

    async with engines(StubEngine("a")) as stubs:
        running.discovery.feed([stubs[0].replica])
        assert (await first).status == 200
        listed = await models
        assert listed.status == 200 and (await listed.json())["data"][0]["owned_by"] == "a"
    assert running.sample("kaito_gateway_queued_requests") == 0
    assert running.sample("kaito_gateway_held_seconds_count") == 2
    assert running.sample("kaito_gateway_held_seconds_sum") == 6 + 5  # held 6 s and 5 s of virtual time
    await running.clock.step(10)
    assert len(patches) == 2  # nothing held: no more demand


@pytest.mark.parametrize("settings", [Settings(max_queue=1, retry_after=7)])
async def test_a_full_queue_answers_503_with_retry_after(running: Running) -> None:
    held = asyncio.create_task(running.post(chat("held")))
    await until(lambda: len(running.gateway.holding) == 1, what="the request held")
    refused = await running.http.post(running.url + "/v1/completions", json={"model": "stub", "prompt": "x"})
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "7"
    assert (await refused.json())["error"]["type"] == "queue_full"
    assert running.sample("kaito_gateway_requests_total", code="503") == 1
    held.cancel()


@pytest.mark.parametrize("settings", [Settings(hold_timeout=30)])
async def test_a_held_request_times_out_with_504_and_the_gateway_keeps_serving(running: Running) -> None:
    held = asyncio.create_task(running.post(chat("held"), path="/chat"))
    await until(lambda: len(running.gateway.holding) == 1, what="the request held")
    await running.clock.step(30)
    timed_out = await held
    assert timed_out.status == 504
    error = (await timed_out.json())["error"]
    assert error["type"] == "hold_timeout" and "30 s" in error["message"]
    assert running.sample("kaito_gateway_requests_total", code="504") == 1
    assert running.sample("kaito_gateway_queued_requests") == 0

    async with engines(StubEngine("a")) as stubs:
        running.discovery.feed([stubs[0].replica])
        assert (await running.post({"prompt": "legacy"}, path="/chat")).status == 200
    assert (await running.http.get(running.url + "/healthz")).status == 200


async def test_metrics_page_names_the_contracted_series(running: Running) -> None:
    async with engines(StubEngine("a")) as stubs:
        running.discovery.feed([stubs[0].replica])
        assert (await running.post(chat("hi"))).status == 200
        page = await (await running.http.get(running.url + "/metrics")).text()
    for line in (
        "kaito_gateway_queued_requests 0.0",
        "kaito_gateway_in_flight_requests 0.0",
        'kaito_gateway_replica_in_flight{replica="a"} 0.0',
        "kaito_gateway_held_seconds_count 0.0",
        'kaito_gateway_requests_total{code="200"} 1.0',
        "kaito_gateway_ready_replicas 1.0",
    ):
        assert line in page.splitlines()
    running.discovery.feed([])
    assert running.sample("kaito_gateway_ready_replicas") == 0
    page = await (await running.http.get(running.url + "/metrics")).text()
    assert 'replica="a"' not in page  # a replica gone leaves no series behind


async def test_arrivals_and_answer_durations_count_for_the_autoscaler(running: Running) -> None:
    held = asyncio.create_task(running.post(chat("held")))
    await until(lambda: len(running.gateway.holding) == 1, what="the request held")
    assert running.sample("kaito_gateway_requests_arrived_total") == 1
    running.clock.advance(4)  # held time is not time on a replica
    gate = asyncio.Event()
    async with engines(StubEngine("a", gate=gate)) as stubs:
        running.discovery.feed([stubs[0].replica])
        await stubs[0].arrived.wait()
        running.clock.advance(2.5)
        gate.set()
        assert (await held).status == 200
    running.discovery.feed([Replica("gone", refusing_url())])
    assert (await running.post(chat("refused"))).status == 502  # arrived, never answered by a replica
    assert running.sample("kaito_gateway_requests_arrived_total") == 2
    assert running.sample("kaito_gateway_request_duration_seconds_count") == 1
    assert running.sample("kaito_gateway_request_duration_seconds_sum") == 2.5
