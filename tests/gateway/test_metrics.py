"""The gateway's metrics keep one series per ready replica and per answered status, bound once."""

from __future__ import annotations

from kaito.gateway.metrics import GatewayMetrics


def sample(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_replica_back_after_removal_reports_into_a_live_series() -> None:
    metrics = GatewayMetrics()
    metrics.replicas_changed(added=["a"], removed=[], ready=1)
    metrics.replica_outstanding("a", 3)
    metrics.replicas_changed(added=[], removed=["a"], ready=0)
    assert sample(metrics, "kaito_gateway_replica_in_flight", replica="a") is None
    metrics.replicas_changed(added=["a"], removed=[], ready=1)
    assert sample(metrics, "kaito_gateway_replica_in_flight", replica="a") == 0
    metrics.replica_outstanding("a", 2)
    assert sample(metrics, "kaito_gateway_replica_in_flight", replica="a") == 2


def test_answers_count_by_status_code() -> None:
    metrics = GatewayMetrics()
    for status in (200, 200, 503):
        metrics.answered(status)
    assert sample(metrics, "kaito_gateway_requests_total", code="200") == 2
    assert sample(metrics, "kaito_gateway_requests_total", code="503") == 1
