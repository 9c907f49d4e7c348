"""Finding the set's ready replicas: child Workspaces with a True ready condition, at their Services' ClusterIPs.

Polling, not a watch: one list of the set's Workspaces per interval, plus one GET of a Service the first time
its Workspace is ready (a ClusterIP never changes while the Service lives). A watch would need relists, bookmarks
and backoff for a handful of objects that change a few times an hour.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import aiohttp

from kaito.gateway.names import LABEL_SET, READY_CONDITIONS, REPLICA_PORT, WORKSPACE
from kaito.gateway.router import Replica
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.clock import Clock
from kaito.runtime.kinds import SERVICE
from kaito.runtime.objects import Obj

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[Replica]], None]


class Discovery(Protocol):
    """Publishes the whole ready set whenever it may have changed, until cancelled."""

    async def run(self, publish: Publish) -> None: ...


def is_ready(workspace: Obj) -> bool:
    if (workspace.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (workspace.get("status") or {}).get("conditions") or []
    return any(c.get("type") in READY_CONDITIONS and c.get("status") == "True" for c in conditions)


class ApiDiscovery:
    """The set's ready children read from the API server every `interval` seconds."""

    def __init__(
        self, client: Client, *, namespace: str, inferenceset: str, clock: Clock, interval: float = 1.0
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.inferenceset = inferenceset
        self.clock = clock
        self.interval = interval
        self._addresses: dict[str, str] = {}  # child name -> its Service's ClusterIP

    async def poll(self) -> list[Replica]:
        """The ready replicas now; a child whose Service has no ClusterIP yet is left out."""
        listed = await self.client.list_all(
            WORKSPACE, namespace=self.namespace, label_selector=f"{LABEL_SET}={self.inferenceset}"
        )
        ready = sorted(str(w["metadata"]["name"]) for w in listed.items if is_ready(w))
        self._addresses = {name: ip for name, ip in self._addresses.items() if name in ready}
        replicas = []
        for name in ready:
            ip = self._addresses.get(name) or await self._cluster_ip(name)
            if ip:
                self._addresses[name] = ip
                replicas.append(Replica(name, f"http://{ip}:{REPLICA_PORT}"))
        return replicas

    async def run(self, publish: Publish) -> None:
        while True:
            try:
                publish(await self.poll())
            except (errors.ApiError, aiohttp.ClientError, TimeoutError) as exc:
                # Keep routing to what was last seen until the API answers again.
                log.warning("could not list the replicas of %s/%s: %s", self.namespace, self.inferenceset, exc)
            await self.clock.sleep(self.interval)

    async def _cluster_ip(self, name: str) -> str | None:
        try:
            service = await self.client.get(SERVICE, name, namespace=self.namespace)
        except errors.NotFound:
            return None
        ip = str((service.get("spec") or {}).get("clusterIP") or "")
        return ip if ip and ip != "None" else None
