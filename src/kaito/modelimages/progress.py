"""How far a model push or pull has come (bytes, total, rate, ETA): logged at intervals and exported to Prometheus."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 5.0


class TransferMetrics:
    """The transfer series, registered on the registry the caller owns (a server's, or a test's own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("direction", "image")
        self.done = Gauge(
            "kaito_model_transfer_bytes", "Bytes of the model transferred so far", labels, registry=registry
        )
        self.total = Gauge(
            "kaito_model_transfer_total_bytes", "Bytes of the model this transfer moves", labels, registry=registry
        )
        self.rate = Gauge(
            "kaito_model_transfer_rate_bytes_per_second", "Mean rate of this transfer", labels, registry=registry
        )
        self.eta = Gauge("kaito_model_transfer_eta_seconds", "Estimated seconds to finish", labels, registry=registry)
        self.blobs = Counter(
            "kaito_model_transfer_blobs",
            "Blobs moved, and blobs found already there",
            (*labels, "outcome"),
            registry=registry,
        )


@dataclass(frozen=True)
class Snapshot:
    done: int
    total: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def to_line(self) -> dict[str, object]:
        """The snapshot as one progress line of `kaito pull-model` (stable keys, read back by the manager)."""
        eta = self.eta_s
        return {
            "progress": {
                "bytes": self.done,
                "totalBytes": self.total,
                "bytesPerSecond": round(self.rate),
                "etaSeconds": None if eta is None else round(eta),
            }
        }

    def describe(self) -> str:
        eta = f"{self.eta_s:.0f}s" if self.eta_s is not None else "unknown"
        return (
            f"{self.done / 2**20:.1f}/{self.total / 2**20:.1f} MiB ({_percent(self.done, self.total)}), "
            f"{self.rate / 2**20:.1f} MiB/s, ETA {eta}"
        )


class Progress:
    """Thread-safe byte counter of one transfer; `add` is called by every worker, logs at most every interval."""

    def __init__(
        self,
        *,
        direction: str,
        image: str,
        metrics: TransferMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = LOG_INTERVAL_S,
        report: Callable[[Snapshot], None] | None = None,
    ) -> None:
        """`report`, when given, takes each interval's snapshot instead of the log (e.g. a pod's progress lines)."""
        self.direction, self.image = direction, image
        self.report = report
        self.metrics = metrics
        self.clock = clock
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._done = 0
        self._total = 0
        self._started = clock()
        self._last_log = self._started

    def expect(self, total: int) -> None:
        """Set the bytes this transfer will move (blobs already present are not counted)."""
        with self._lock:
            self._total = total
        if self.metrics:
            self.metrics.total.labels(self.direction, self.image).set(total)
        snapshot = self.snapshot()
        self._export(snapshot)
        if self.report:
            self.report(snapshot)

    def blob(self, outcome: str) -> None:
        if self.metrics:
            self.metrics.blobs.labels(self.direction, self.image, outcome).inc()

    def add(self, count: int) -> None:
        with self._lock:
            self._done += count
            now = self.clock()
            due = now - self._last_log >= self.interval_s
            if due:
                self._last_log = now
        snapshot = self.snapshot()
        self._export(snapshot)
        if due and self.report:
            self.report(snapshot)
        elif due:
            log.info("%s %s: %s", self.direction, self.image, snapshot.describe())

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(done=self._done, total=self._total, elapsed_s=self.clock() - self._started)

    def finish(self) -> Snapshot:
        snapshot = self.snapshot()
        self._export(snapshot)
        if self.report:
            self.report(snapshot)
        log.info("%s %s done: %s in %.1fs", self.direction, self.image, snapshot.describe(), snapshot.elapsed_s)
        return snapshot

    def _export(self, snapshot: Snapshot) -> None:
        if not self.metrics:
            return
        labels = (self.direction, self.image)
        self.metrics.done.labels(*labels).set(snapshot.done)
        self.metrics.rate.labels(*labels).set(snapshot.rate)
        self.metrics.eta.labels(*labels).set(snapshot.eta_s if snapshot.eta_s is not None else float("nan"))


def _percent(done: int, total: int) -> str:
    return f"{100 * done / total:.0f}%" if total else "100%"
