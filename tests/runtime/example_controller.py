"""An example controller on the runtime: copies a labelled ConfigMap's data into `<name>-copy`, which it owns."""

from __future__ import annotations

from kaito.runtime import errors
from kaito.runtime.builder import Builder
from kaito.runtime.client import Client
from kaito.runtime.controller import Controller
from kaito.runtime.handler import has_label
from kaito.runtime.kinds import CONFIG_MAP
from kaito.runtime.manager import Manager
from kaito.runtime.objects import Obj, ObjectKey
from kaito.runtime.reconcile import Result

COPY_LABEL = "example.kaito.sh/copy"
FIELD_MANAGER = "configmap-copier"


class ConfigMapCopier:
    """Level-based: every pass reads the source from the cache and applies the whole desired copy."""

    def __init__(self, manager: Manager) -> None:
        self.cache = manager.cache
        self.client: Client = manager.client
        self.reconciled: list[ObjectKey] = []

    async def reconcile(self, key: ObjectKey) -> Result:
        self.reconciled.append(key)
        if key.name.endswith("-copy"):
            return Result()
        source = self.cache.find(CONFIG_MAP, key.name, namespace=key.namespace)
        if source is None or COPY_LABEL not in (source["metadata"].get("labels") or {}):
            await errors.ignore_not_found(self.client.delete(CONFIG_MAP, f"{key.name}-copy", namespace=key.namespace))
            return Result()
        await self.client.apply(CONFIG_MAP, desired_copy(source), field_manager=FIELD_MANAGER, force=True)
        return Result()


def desired_copy(source: Obj) -> Obj:
    meta = source["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{meta['name']}-copy",
            "namespace": meta["namespace"],
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": dict(source.get("data") or {}),
    }


def setup(manager: Manager) -> tuple[ConfigMapCopier, Controller]:
    """The whole wiring: the reconciler plus three lines of watches."""
    copier = ConfigMapCopier(manager)
    controller = (
        Builder(manager, "configmap-copier")
        .for_(CONFIG_MAP, has_label(COPY_LABEL))
        .owns(CONFIG_MAP)
        .complete(copier.reconcile)
    )
    return copier, controller
