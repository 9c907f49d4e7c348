"""The gateway's Prometheus metrics, in a registry of its own per gateway (the autoscaler reads these names)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

HELD_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class GatewayMetrics:
    """`kaito_gateway_*`: queued, in flight (all and per replica), ready replicas, time held, answers by code, and
    the counters the autoscaler takes a rate from: requests arrived, and requests answered with their duration."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.queued = Gauge(
            "kaito_gateway_queued_requests", "Requests held because no replica is ready", registry=self.registry
        )
        self.in_flight = Gauge(
            "kaito_gateway_in_flight_requests",
            "Requests sent to a replica and not yet answered",
            registry=self.registry,
        )
        self.replica_in_flight = Gauge(
            "kaito_gateway_replica_in_flight",
            "Requests sent to each replica and not yet answered",
            ["replica"],
            registry=self.registry,
        )
        self.held = Histogram(
            "kaito_gateway_held_seconds",
            "How long a held request waited for a replica (released or timed out)",
            buckets=HELD_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "kaito_gateway_requests_total", "Requests answered, by HTTP status code", ["code"], registry=self.registry
        )
        self.arrived = Counter(
            "kaito_gateway_requests_arrived", "Requests received, held or not, answered or not", registry=self.registry
        )
        self.duration = Histogram(
            "kaito_gateway_request_duration_seconds",
            "Seconds from sending a request to a replica to the last byte of its answer (time held excluded)",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.ready_replicas = Gauge(
            "kaito_gateway_ready_replicas", "Replicas the gateway routes to", registry=self.registry
        )

        # Children bound once per label value: `.labels(...)` on every request costs more than the update itself.
        self._answered: dict[int, Counter] = {}
        self._replica_in_flight: dict[str, Gauge] = {}

    def answered(self, status: int) -> None:
        """One more request answered with HTTP `status`."""
        child = self._answered.get(status)
        if child is None:
            child = self._answered[status] = self.requests.labels(code=str(status))
        child.inc()

    def replica_outstanding(self, name: str, count: int) -> None:
        """Replica `name` has `count` requests in flight."""
        child = self._replica_in_flight.get(name)
        if child is None:
            child = self._replica_in_flight[name] = self.replica_in_flight.labels(replica=name)
        child.set(count)

    def replicas_changed(self, *, added: list[str], removed: list[str], ready: int) -> None:
        for name in removed:
            self.replica_in_flight.remove(name)
            self._replica_in_flight.pop(name, None)
        for name in added:
            self.replica_outstanding(name, 0)
        self.ready_replicas.set(ready)
