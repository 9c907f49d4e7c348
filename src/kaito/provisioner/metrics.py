"""`MeteredCloudProvider`: wraps any `CloudProvider` so every call is timed and every typed failure counted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

from kaito.provisioner.cloud import CloudError, CloudProvider, Instance, InstanceRequest
from kaito.runtime.clock import REAL_CLOCK, Clock
from kaito.runtime.metrics import REGISTRY

T = TypeVar("T")

# Cloud calls range from a cached read (ms) to a synchronous agent-pool create (minutes).
_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class CloudProviderMetrics:
    """The two kaito_cloudprovider_* families, in `registry` (a fresh one when none is given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.duration = Histogram(
            "kaito_cloudprovider_duration_seconds",
            "Duration of cloud provider calls in seconds, by method and provider",
            ["method", "provider"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "kaito_cloudprovider_errors_total",
            "Cloud provider calls that failed, by method, provider and typed error reason",
            ["method", "provider", "error"],
            registry=self.registry,
        )


CLOUD_METRICS = CloudProviderMetrics(REGISTRY)  # served by the manager next to the runtime's metrics


class MeteredCloudProvider:
    """The same protocol as `inner`; a failure that is not a `CloudError` is counted as `error="Unknown"`."""

    def __init__(
        self, inner: CloudProvider, *, clock: Clock = REAL_CLOCK, metrics: CloudProviderMetrics = CLOUD_METRICS
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.clock = clock
        self.metrics = metrics
        for method in ("create", "get", "delete", "list"):
            metrics.duration.labels(method=method, provider=self.name)

    async def create(self, request: InstanceRequest) -> Instance:
        return await self._measure("create", lambda: self.inner.create(request))

    async def get(self, nodeclaim: str) -> Instance:
        return await self._measure("get", lambda: self.inner.get(nodeclaim))

    async def delete(self, nodeclaim: str) -> None:
        await self._measure("delete", lambda: self.inner.delete(nodeclaim))

    async def list(self) -> list[Instance]:
        return await self._measure("list", self.inner.list)

    async def _measure(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        started = self.clock.now()
        try:
            return await call()
        except CloudError as exc:
            self.metrics.errors.labels(method=method, provider=self.name, error=exc.reason).inc()
            raise
        except Exception:
            self.metrics.errors.labels(method=method, provider=self.name, error="Unknown").inc()
            raise
        finally:
            self.metrics.duration.labels(method=method, provider=self.name).observe(self.clock.now() - started)
