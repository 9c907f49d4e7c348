"""Prometheus metrics of a training run, served on the tuning pod's port so progress is visible from outside."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class TuningMetrics:
    """Steps, loss, learning rate and epoch of one run, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.steps = Counter("kaito_tuning_steps", "Optimizer steps completed", registry=self.registry)
        self.planned = Gauge("kaito_tuning_planned_steps", "Optimizer steps this run will take", registry=self.registry)
        self.loss = Gauge("kaito_tuning_loss", "Training loss of the latest step", registry=self.registry)
        self.eval_loss = Gauge("kaito_tuning_eval_loss", "Loss on the held-out split", registry=self.registry)
        self.learning_rate = Gauge(
            "kaito_tuning_learning_rate", "Learning rate of the latest step", registry=self.registry
        )
        self.epoch = Gauge("kaito_tuning_epoch", "Epochs completed, fractional", registry=self.registry)
        self.started = Gauge("kaito_tuning_start_time_seconds", "When training began", registry=self.registry)
        self.finished = Gauge("kaito_tuning_finished", "1 once the adapter is saved", registry=self.registry)
        self._server: Any = None

    def serve(self, port: int, host: str = "0.0.0.0") -> int:
        """Serve /metrics in a background thread; returns the bound port (0 picks one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def start(self, planned_steps: int) -> None:
        self.planned.set(planned_steps)
        self.started.set(time.time())

    def step(self, loss: float, learning_rate: float, epoch: float) -> None:
        self.steps.inc()
        self.loss.set(loss)
        self.learning_rate.set(learning_rate)
        self.epoch.set(epoch)

    def finish(self, eval_loss: float | None) -> None:
        if eval_loss is not None:
            self.eval_loss.set(eval_loss)
        self.finished.set(1)
