"""An InferenceSet's load, read from its gateway pods and its ready children's engine pods through the API server.

Each pod's `/metrics` is fetched through `pods/NAME:PORT/proxy` (RBAC: get pods/proxy), which reaches a pod
wherever the manager runs and needs no network path from the manager to the pods; `loadread` sums the pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from kaito.api.inferenceset import GATEWAY_PORT, LABEL_GATEWAY, InferenceSet
from kaito.api.workspace import LABEL_WORKSPACE
from kaito.controllers.autoscale import Load
from kaito.controllers.kinds import SERVE_PORT
from kaito.controllers.loadread import Samples, Unreadable, gather_load, parse_samples
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.kinds import POD

Obj = dict[str, Any]
LoadSource = Callable[[InferenceSet, list[Obj]], Awaitable[Load]]
"""(the set, its ready children) -> the set's load now."""
SCRAPE_TIMEOUT_S = 2.0


class PodMetrics:
    """Reads a set's load from its pods' `/metrics`, through the API server's pod proxy."""

    def __init__(self, client: Client, *, scrape_timeout: float = SCRAPE_TIMEOUT_S) -> None:
        self.client, self.scrape_timeout = client, scrape_timeout

    async def __call__(self, iset: InferenceSet, ready_children: list[Obj]) -> Load:
        namespace = iset.namespace
        gateways = await self._running(namespace, f"{LABEL_GATEWAY}={iset.name}")
        engines: list[str] = []
        for child in ready_children:
            engines += await self._running(namespace, f"{LABEL_WORKSPACE}={child['metadata']['name']}")
        gateway_paths = [_metrics_path(namespace, pod, GATEWAY_PORT) for pod in gateways]
        engine_paths = [_metrics_path(namespace, pod, SERVE_PORT) for pod in engines]
        return await gather_load(gateway_paths, engine_paths, self._fetch)

    async def _running(self, namespace: str, selector: str) -> list[str]:
        listed = await self.client.list(POD, namespace=namespace, label_selector=selector)
        return [
            str(pod["metadata"]["name"])
            for pod in listed.items
            if (pod.get("status") or {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")
        ]

    async def _fetch(self, path: str) -> Samples:
        try:
            return parse_samples(await self.client.text(path, read_timeout=self.scrape_timeout))
        except (errors.ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unreadable(f"{type(exc).__name__}: {exc}") from exc


def _metrics_path(namespace: str, pod: str, port: int) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics"
