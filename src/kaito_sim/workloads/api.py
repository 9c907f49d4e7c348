"""In-process reads and writes for the simulated controllers, through the same pipeline HTTP clients use."""

from __future__ import annotations

import logging
import secrets

from kaito_sim.apiserver.cluster import Cluster, WriteOptions
from kaito_sim.apiserver.deletion import Deleter
from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.apiserver.objects import now_rfc3339
from kaito_sim.apiserver.resources import ResourceType
from kaito_sim.apiserver.store import StorageKey
from kaito_sim.apiserver.writes import Writer
from kaito_sim.workloads.common import EVENTS, controller_ref, key_of

log = logging.getLogger(__name__)


class Api:
    """In-process reads and writes under one field manager, through the pipeline HTTP clients go through."""

    def __init__(self, cluster: Cluster, manager: str) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self.manager = manager
        self._writer = Writer(cluster)
        self._deleter = Deleter(cluster)

    def _rt(self, key: StorageKey) -> ResourceType:
        rt = self.cluster.registry.get(key[0], "v1", key[1])
        assert rt is not None, key
        return rt

    def _opts(self) -> WriteOptions:
        return WriteOptions(field_manager=self.manager, user=f"system:{self.manager}")

    def get(self, key: StorageKey, ns: str, name: str) -> JsonObj | None:
        return self.store.get(key, ns, name)

    def items(self, key: StorageKey, ns: str | None = None) -> list[JsonObj]:
        return self.store.items(key, ns)

    def owned(self, key: StorageKey, owner: JsonObj) -> list[JsonObj]:
        """Objects of `key` whose controlling owner is `owner`, by name."""
        uid = owner["metadata"]["uid"]
        out = []
        for storage, (ns, name) in self.store.dependents(uid):
            obj = self.store.get(storage, ns, name) if storage == key else None
            if obj is not None and (controller_ref(obj) or {}).get("uid") == uid:
                out.append(obj)
        return out

    async def create(self, key: StorageKey, ns: str, body: JsonObj) -> JsonObj:
        return await self._writer.create(self._rt(key), ns, body, self._opts())

    async def update(self, key: StorageKey, obj: JsonObj, *, status: bool = False) -> JsonObj:
        ns, name = key_of(obj)
        rt = self._rt(key)
        return await self._writer.update(rt, ns, name, obj, self._opts(), subresource="status" if status else "")

    async def update_status(self, key: StorageKey, obj: JsonObj, status: JsonObj) -> bool:
        """Write `status` unless it is what `obj` already has; True when it wrote."""
        if obj.get("status") == status:
            return False
        await self.update(key, {**obj, "status": status}, status=True)
        return True

    async def delete(self, key: StorageKey, obj: JsonObj) -> None:
        ns, name = key_of(obj)
        try:
            await self._deleter.delete(
                self._rt(key),
                ns,
                name,
                policy="Background",
                preconditions={"uid": obj["metadata"]["uid"]},
                opts=self._opts(),
            )
        except ApiError as exc:
            if exc.code not in (404, 409):  # gone already, or replaced by a namesake: either way not ours to delete
                raise

    def finish_deletion(self, key: StorageKey, obj: JsonObj) -> None:
        """Remove an object whose deletion waits on nothing any more (a pod whose containers have stopped)."""
        self._deleter.remove(self._rt(key), obj)

    async def event(
        self, obj: JsonObj, *, reason: str, message: str, warning: bool = True, host: str = "", field_path: str = ""
    ) -> None:
        """Record a core/v1 Event about `obj`, as client-go's event recorder does (best effort)."""
        ns, name = key_of(obj)
        now = now_rfc3339()
        involved = {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": obj.get("kind", ""),
            "namespace": ns,
            "name": name,
            "uid": obj["metadata"].get("uid", ""),
            "resourceVersion": obj["metadata"].get("resourceVersion", ""),
        }
        if field_path:
            involved["fieldPath"] = field_path
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{secrets.token_hex(8)}", "namespace": ns or "default"},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": self.manager, **({"host": host} if host else {})},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.manager,
            "reportingInstance": host or self.manager,
        }
        try:
            await self.create(EVENTS, ns or "default", event)
        except ApiError as exc:
            level = logging.DEBUG if exc.code in (403, 404) else logging.WARNING
            log.log(level, "%s: event %s on %s/%s dropped: %s", self.manager, reason, ns, name, exc)
