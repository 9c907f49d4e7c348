"""Reading a set's load from its gateway pods' and engines' /metrics, over HTTP, with pods that fail in each way."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from kaito.controllers.autoscale import Load, Readings
from kaito.controllers.loadread import Unreadable, engine_load, gateway_counts, parse_samples, read_load
from kaito.controllers.traffic import GatewayCounts
from kaito.gateway.metrics import GatewayMetrics
from kaito.inference.metrics import InferenceMetrics


def gateway_page(*, in_flight: float, queued: float) -> bytes:
    registry = CollectorRegistry()
    Gauge("kaito_gateway_queued_requests", "held", registry=registry).set(queued)
    Gauge("kaito_gateway_in_flight_requests", "forwarded", registry=registry).set(in_flight)
    per_replica = Gauge("kaito_gateway_replica_in_flight", "per replica", ["replica"], registry=registry)
    per_replica.labels("set-abcde").set(in_flight)
    return generate_latest(registry)


def counted_gateway_page(*, arrived: int, answered: tuple[float, ...]) -> bytes:
    """A page as `kaito gateway` serves it, after `arrived` requests and answers that took `answered` seconds."""
    metrics = GatewayMetrics()
    metrics.in_flight.set(arrived - len(answered))
    metrics.arrived.inc(arrived)
    for seconds in answered:
        metrics.duration.observe(seconds)
    return generate_latest(metrics.registry)


def vllm_page(*engines: tuple[float, float, float], kv_names: tuple[str, ...] = ("vllm:kv_cache_usage_perc",)) -> bytes:
    """A vLLM /metrics page, one series per engine (running, waiting, KV use), with a histogram beside them."""
    lines = []
    for name, column in (("vllm:num_requests_running", 0), ("vllm:num_requests_waiting", 1)):
        lines += [f"# HELP {name} Number of requests.", f"# TYPE {name} gauge"]
        lines += [f'{name}{{engine="{i}",model_name="m"}} {e[column]}' for i, e in enumerate(engines)]
    for offset, name in enumerate(kv_names):
        lines += [f"# HELP {name} KV-cache usage. 1 means 100 percent usage.", f"# TYPE {name} gauge"]
        lines += [f'{name}{{engine="{i}",model_name="m"}} {e[2] - offset / 10}' for i, e in enumerate(engines)]
    lines += [
        "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
        "# TYPE vllm:time_to_first_token_seconds histogram",
        'vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 3.0',
        'vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4.0',
        'vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 4.0',
        'vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 0.9',
    ]
    return ("\n".join(lines) + "\n").encode()


def kaito_serve_page(in_flight: int) -> bytes:
    metrics = InferenceMetrics()
    metrics.queue_depth.set(in_flight)
    return metrics.exposition()


PAGES = {
    "/gw-a": gateway_page(in_flight=10, queued=2),
    "/gw-b": gateway_page(in_flight=4, queued=1),
    "/gw-counted": counted_gateway_page(arrived=5, answered=(2.0, 6.5, 1.5)),
    "/vllm": vllm_page((6, 2, 0.5), (5, 0, 0.93)),  # two engines in one pod (data parallel)
    "/vllm-old": vllm_page((3, 1, 0.4), kv_names=("vllm:gpu_cache_usage_perc",)),
    "/vllm-both": vllm_page((1, 0, 0.2), kv_names=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")),
    "/kaito": kaito_serve_page(4),
    "/html": b"<html><body>It works!</body></html>",
    "/binary": b"\xff\xfe\x00\x01",
}


@pytest.fixture
async def pods() -> AsyncIterator[str]:
    never = asyncio.Event()

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=PAGES[request.path], content_type="text/plain")

    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=503, text="engine loading")

    async def hanging(request: web.Request) -> web.Response:
        await never.wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_routes([web.get(path, page) for path in PAGES])
    app.router.add_routes([web.get("/503", failing), web.get("/hang", hanging)])
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_gateways_and_engines_are_summed_and_the_fullest_kv_cache_counts(pods: str) -> None:
    async with aiohttp.ClientSession() as session:
        load = await read_load(
            [f"{pods}/gw-a", f"{pods}/gw-b"],
            [f"{pods}/vllm", f"{pods}/vllm-old", f"{pods}/kaito"],
            session=session,
        )
    assert load == Load(
        in_flight=14,
        queued=3,
        engine_waiting=3,
        engine_running=6 + 5 + 3 + 4,  # kaito serve's queue depth counts as running
        kv_cache_usage=0.93,
        readings=Readings(gateways=2, engines=3),
    )


async def test_pods_that_do_not_answer_with_metrics_are_skipped_and_named(pods: str) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/metrics"
    bad = [dead, f"{pods}/html", f"{pods}/binary", f"{pods}/503", f"{pods}/hang"]
    async with aiohttp.ClientSession() as session:
        load = await read_load([f"{pods}/gw-a", dead], [f"{pods}/vllm", *bad], session=session, scrape_timeout=0.5)
    assert (load.in_flight, load.queued, load.engine_running, load.engine_waiting) == (10, 2, 11, 2)
    assert load.readings == Readings(gateways=2, engines=6, gateways_unread=(dead,), engines_unread=tuple(bad))
    assert load.readings.summary() == "1 of 2 gateways and 5 of 6 engines unreadable"


async def test_nothing_to_read_is_no_load_and_a_complete_read() -> None:
    async with aiohttp.ClientSession() as session:
        load = await read_load([], [], session=session)
    assert load == Load(0, 0, 0, 0, None, Readings())
    assert load.readings.complete and load.readings.summary() == ""


def test_the_newer_kv_name_wins_over_the_deprecated_one() -> None:
    both = engine_load(parse_samples(PAGES["/vllm-both"].decode()))
    assert (both.running, both.waiting, both.kv_cache_usage) == (1, 0, 0.2)


def test_a_page_with_none_of_the_gauges_reads_as_no_load_and_nan_is_ignored() -> None:
    assert engine_load(parse_samples("process_cpu_seconds_total 12.5\n")) == engine_load({})
    assert parse_samples("vllm:num_requests_running NaN\nvllm:num_requests_waiting 2\n") == {
        "vllm:num_requests_waiting": [2.0]
    }


@pytest.mark.parametrize("text", ["<html>hi</html>", "vllm:num_requests_running lots\n", "a b c d\n"])
def test_garbage_is_unreadable(text: str) -> None:
    with pytest.raises(Unreadable):
        parse_samples(text)


async def test_gateway_counters_are_kept_per_pod_for_the_rate(pods: str) -> None:
    async with aiohttp.ClientSession() as session:
        load = await read_load([f"{pods}/gw-counted", f"{pods}/gw-a"], [], session=session)
    assert load.in_flight == 2 + 10
    assert load.gateway_counts == {f"{pods}/gw-counted": GatewayCounts(arrived=5, answered=3, answered_seconds=10.0)}


def test_a_gateway_without_the_counters_has_none() -> None:
    assert gateway_counts(parse_samples(PAGES["/gw-a"].decode())) is None
