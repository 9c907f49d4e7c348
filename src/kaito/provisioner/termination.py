"""Taking a deleted NodeClaim down in order: its cloud instance, then its Node, and only then the finalizer."""

from __future__ import annotations

from contextlib import suppress

from kaito.api.nodeclaim import FINALIZER, NODECLAIM
from kaito.provisioner import cloud
from kaito.provisioner.cloud import CloudProvider, InstanceState
from kaito.provisioner.launches import retry_result
from kaito.provisioner.nodeclaims import claim_nodes
from kaito.runtime import errors
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.kinds import NODE
from kaito.runtime.objects import Obj, resource_version
from kaito.runtime.reconcile import DONE, Result


class Terminator:
    """Idempotent: each pass moves deletion one step on, so a crash anywhere resumes where it stopped."""

    def __init__(
        self, client: Client, *, cache: Cache, provider: CloudProvider, poll_interval: float, retry_interval: float
    ) -> None:
        self.cache = cache
        self.client = client
        self.provider = provider
        self.poll_interval = poll_interval
        self.retry_interval = retry_interval

    async def terminate(self, claim: Obj) -> Result:
        meta = claim["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return DONE  # not ours to hold, or already released
        try:
            if not await self._instance_gone(meta["name"]):
                return Result(requeue_after=self.poll_interval)
        except cloud.CloudError as exc:
            return retry_result(exc, retry_interval=self.retry_interval)
        for node in self._node_names(claim):
            await errors.ignore_not_found(self.client.delete(NODE, node))
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version(claim)}}
        await errors.ignore_not_found(self.client.patch(NODECLAIM, meta["name"], patch))
        return DONE

    async def _instance_gone(self, name: str) -> bool:
        """Start deleting the instance unless it already is; True once the cloud no longer knows it."""
        with suppress(cloud.NotFound):
            instance = await self.provider.get(name)
            if instance.state is not InstanceState.DELETING:
                await self.provider.delete(name)
            await self.provider.get(name)
            return False
        return True

    def _node_names(self, claim: Obj) -> list[str]:
        """The labelled Nodes, plus the one the status names (in case its label was edited away)."""
        names = {str(node["metadata"]["name"]) for node in claim_nodes(self.cache, claim["metadata"]["name"])}
        if node_name := (claim.get("status") or {}).get("nodeName"):
            names.add(str(node_name))
        return sorted(names)
