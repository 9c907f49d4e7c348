"""The inference server's Prometheus metrics, in a registry each app owns: tests and servers never share counts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class InferenceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "kaito_inference_requests_total", "HTTP requests by route and status code", ["route", "code"], registry=r
        )
        self.duration = Histogram(
            "kaito_inference_request_duration_seconds",
            "Time from request to the last byte of the response (the whole stream when streaming)",
            ["route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "kaito_inference_time_to_first_token_seconds",
            "Time from handing a request to the engine to its first generated text",
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("kaito_inference_prompt_tokens_total", "Prompt tokens processed", registry=r)
        self.generation_tokens = Counter(
            "kaito_inference_generation_tokens_total", "Completion tokens generated", registry=r
        )
        self.queue_depth = Gauge(
            "kaito_inference_queue_depth", "Generations in flight (running or queued in the engine)", registry=r
        )
        self.model_load = Gauge(
            "kaito_inference_model_load_seconds", "Seconds the engine took to load (0 until loaded)", registry=r
        )
        self.kv_cache_tokens = Gauge(
            "kaito_engine_kv_cache_tokens", "Tokens the engine's KV cache holds as allocated (0: unknown)", registry=r
        )
        self.max_model_len = Gauge(
            "kaito_engine_max_model_len", "The context length the engine accepted (0 until loaded)", registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
