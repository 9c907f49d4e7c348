"""An InferenceSet's load, read from the Prometheus text its gateway pods and engines serve on /metrics.

Gateway pods count what they hold and what they have forwarded, and keep counters of the requests that arrived and
of those answered with their seconds (a histogram's `_count` and `_sum`), kept per pod for `traffic` to difference.
Engines count what they run and what waits in them. vLLM names its gauges `vllm:num_requests_running`,
`vllm:num_requests_waiting` and the KV-cache use
`vllm:kv_cache_usage_perc` (0..1; older vLLM names it `vllm:gpu_cache_usage_perc`, and serves both while the old
name is deprecated), one series per engine (label `engine`) when a pod runs several;
`kaito serve` exposes `kaito_inference_queue_depth`, generations running or queued in its engine, which counts as
running since it does not tell them apart. A pod that does not answer, or answers with something that is not
metrics, is skipped and named in `Load.readings`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from kaito.controllers.autoscale import Load, Readings
from kaito.controllers.traffic import GatewayCounts

GATEWAY_QUEUED = "kaito_gateway_queued_requests"
GATEWAY_IN_FLIGHT = "kaito_gateway_in_flight_requests"
GATEWAY_ARRIVED = "kaito_gateway_requests_arrived_total"
GATEWAY_DURATION = "kaito_gateway_request_duration_seconds"
GATEWAY_ANSWERED, GATEWAY_ANSWERED_SECONDS = f"{GATEWAY_DURATION}_count", f"{GATEWAY_DURATION}_sum"
VLLM_RUNNING = "vllm:num_requests_running"
VLLM_WAITING = "vllm:num_requests_waiting"
VLLM_KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # newer name first
KAITO_QUEUE_DEPTH = "kaito_inference_queue_depth"
GATEWAY_COUNTERS = (GATEWAY_ARRIVED, GATEWAY_ANSWERED, GATEWAY_ANSWERED_SECONDS)
GATEWAY_GAUGES = (GATEWAY_QUEUED, GATEWAY_IN_FLIGHT)
WANTED = frozenset({*GATEWAY_GAUGES, *GATEWAY_COUNTERS, VLLM_RUNNING, VLLM_WAITING, KAITO_QUEUE_DEPTH, *VLLM_KV_USAGE})
MAX_BODY = 16 * 1024 * 1024  # a metrics page is kilobytes; a pod sending more is not serving metrics
DEFAULT_SCRAPE_TIMEOUT = 2.0


class Unreadable(Exception):
    """A pod's answer that is not Prometheus text."""


Samples = dict[str, list[float]]


@dataclass(frozen=True)
class EngineLoad:
    running: float
    waiting: float
    kv_cache_usage: float | None


def parse_samples(text: str) -> Samples:
    """The values of the gauges and counters this module reads, by name (every label set of a name; NaN dropped)."""
    found: Samples = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in WANTED and not math.isnan(sample.value):
                    found.setdefault(sample.name, []).append(float(sample.value))
    except (ValueError, TypeError, IndexError) as exc:
        raise Unreadable(f"not Prometheus text: {exc}") from exc
    return found


def gateway_load(samples: Samples) -> tuple[float, float]:
    """(in flight, queued) of one gateway pod."""
    return sum(samples.get(GATEWAY_IN_FLIGHT, [])), sum(samples.get(GATEWAY_QUEUED, []))


def gateway_counts(samples: Samples) -> GatewayCounts | None:
    """One gateway pod's counters of requests arrived and answered; None from a gateway that keeps none."""
    if any(name not in samples for name in GATEWAY_COUNTERS):
        return None
    arrived, answered, seconds = (sum(samples[name]) for name in GATEWAY_COUNTERS)
    return GatewayCounts(arrived, answered, seconds)


def engine_load(samples: Samples) -> EngineLoad:
    """One engine pod's running, waiting and KV-cache use; vLLM's own gauges win over kaito serve's queue depth."""
    kv = next((samples[name] for name in VLLM_KV_USAGE if name in samples), None)
    kv_usage = max(kv) if kv else None
    if VLLM_RUNNING in samples or VLLM_WAITING in samples:
        running, waiting = sum(samples.get(VLLM_RUNNING, [])), sum(samples.get(VLLM_WAITING, []))
        return EngineLoad(running, waiting, kv_usage)
    return EngineLoad(sum(samples.get(KAITO_QUEUE_DEPTH, [])), 0.0, kv_usage)


async def scrape(url: str, *, session: aiohttp.ClientSession, scrape_timeout: float) -> Samples:
    """GET one metrics URL and parse it; raises Unreadable for any failure to get metrics out of it."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=scrape_timeout)) as response:
            if response.status != 200:
                raise Unreadable(f"HTTP {response.status}")
            body = await response.content.read(MAX_BODY + 1)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise Unreadable(f"{type(exc).__name__}: {exc}") from exc
    if len(body) > MAX_BODY:
        raise Unreadable(f"a page over {MAX_BODY} bytes")
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise Unreadable("not UTF-8 text") from exc
    return parse_samples(text)


Fetch = Callable[[str], Awaitable[Samples]]
"""One pod's metrics by its address (a URL, an API path): parsed samples, or Unreadable."""


async def read_load(
    gateway_urls: Sequence[str],
    engine_urls: Sequence[str],
    *,
    session: aiohttp.ClientSession,
    scrape_timeout: float = DEFAULT_SCRAPE_TIMEOUT,
) -> Load:
    """Scrape every gateway pod and engine at once (full metrics URLs) and sum their load; none is waited on
    longer than `scrape_timeout` seconds."""

    async def fetch(url: str) -> Samples:
        return await scrape(url, session=session, scrape_timeout=scrape_timeout)

    return await gather_load(gateway_urls, engine_urls, fetch)


async def gather_load(gateways: Sequence[str], engines: Sequence[str], fetch: Fetch) -> Load:
    """Every gateway's and engine's metrics at once, through `fetch`, summed into the set's Load."""
    pages = await asyncio.gather(*(_fetch_or_none(fetch, address) for address in [*gateways, *engines]))
    gateway_pages, engine_pages = pages[: len(gateways)], pages[len(gateways) :]
    gateway_loads = [gateway_load(page) for page in gateway_pages if page is not None]
    engine_loads = [engine_load(page) for page in engine_pages if page is not None]
    kv = [engine.kv_cache_usage for engine in engine_loads if engine.kv_cache_usage is not None]
    counted = ((address, gateway_counts(page)) for address, page in zip(gateways, gateway_pages, strict=True) if page)
    return Load(
        in_flight=sum(in_flight for in_flight, _ in gateway_loads),
        queued=sum(queued for _, queued in gateway_loads),
        engine_waiting=sum(engine.waiting for engine in engine_loads),
        engine_running=sum(engine.running for engine in engine_loads),
        kv_cache_usage=max(kv) if kv else None,
        readings=Readings(
            gateways=len(gateways),
            engines=len(engines),
            gateways_unread=_unread(gateways, gateway_pages),
            engines_unread=_unread(engines, engine_pages),
        ),
        gateway_counts={address: counts for address, counts in counted if counts is not None},
    )


async def _fetch_or_none(fetch: Fetch, address: str) -> Samples | None:
    try:
        return await fetch(address)
    except Unreadable:
        return None


def _unread(urls: Iterable[str], pages: Iterable[Samples | None]) -> tuple[str, ...]:
    return tuple(url for url, page in zip(urls, pages, strict=True) if page is None)
