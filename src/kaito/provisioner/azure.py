"""`AzureProvider`: NodeClaims as AKS agent pools (one single-node pool per claim) through the azure-mgmt SDK.

Idempotence comes from the name: a claim's pool name is derived from the claim's name, so after a restart
`create` finds the pool it made before instead of making a second one. `create` issues at most one PUT and
never for a pool that exists: a pool that is Creating, Succeeded, Deleting or Failed comes back as it is,
and a Failed one is for the caller to `delete` (the next `create` after it is gone makes a fresh pool), as
karpenter does with a failed launch. Neither `create` nor `delete` waits for the long-running operation; the
controller polls `get`.

Before the PUT, `create` asks the Compute usages API whether one more VM of the size fits its family's vCPU quota
(and the region's), and refuses at once with QuotaExceeded when it does not (see azure_quota). The region is
the managed cluster's location, read once, unless `location` is given.

Retries are ours, not azure-core's (its retry policy is switched off): 429 and 5xx/connection failures are
retried up to `max_retries` times with the injected clock, honouring Retry-After, then surface as Throttled or
TransientError. A PUT is retried only after a 429, which ARM answers before doing anything; after a 5xx the PUT
may have landed, so the error surfaces and the caller's next `create` looks before it writes again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from azure.core.pipeline import PipelineResponse
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.containerservice.aio import ContainerServiceClient
from azure.mgmt.containerservice.aio.operations import AgentPoolsOperations
from azure.mgmt.containerservice.models import AgentPool

from kaito.api.nodeclaim import LABEL_NODECLAIM
from kaito.presets.catalog import Catalog
from kaito.provisioner.azure_errors import InvalidRequest, classify, from_azure
from kaito.provisioner.azure_quota import DEFAULT_TTL, FamilyUsage, QuotaCheck, SizeQuota, Usages
from kaito.provisioner.cloud import (
    CloudError,
    Instance,
    InstanceRequest,
    InstanceState,
    NotFound,
    Throttled,
    TransientError,
)
from kaito.runtime.clock import REAL_CLOCK, Clock

T = TypeVar("T")

# ARM tag names may not contain '/', so the tags spell the kaito.sh keys with '-'; node labels keep the '/'.
NODECLAIM_TAG = "kaito-nodeclaim"
MANAGED_BY_TAG = "kaito-managed-by"
MANAGED_BY = "kaito"
POOL_NAME_LENGTH = 12

_STATES = {
    "succeeded": InstanceState.SUCCEEDED,
    "failed": InstanceState.FAILED,
    "canceled": InstanceState.FAILED,
    "deleting": InstanceState.DELETING,
}


def pool_name(nodeclaim: str) -> str:
    """The agent pool name for a claim: 'k' + 11 base32 characters of its SHA-256, valid for AKS Linux pools."""
    digest = base64.b32encode(hashlib.sha256(nodeclaim.encode()).digest()).decode().lower()
    return "k" + digest[: POOL_NAME_LENGTH - 1]


class AzureProvider:
    """The `CloudProvider` for AKS. Close it (or use `async with`) to release the SDK's HTTP session."""

    name = "azure"

    def __init__(
        self,
        *,
        credential: AsyncTokenCredential,
        subscription_id: str,
        resource_group: str,
        cluster: str,
        base_url: str = "https://management.azure.com",
        connection_verify: str | bool = True,
        clock: Clock = REAL_CLOCK,
        max_retries: int = 5,
        retry_backoff: float = 0.5,
        max_retry_delay: float = 60.0,
        location: str | None = None,
        catalog: Catalog | None = None,
        usages_ttl: float = DEFAULT_TTL,
    ) -> None:
        self.resource_group = resource_group
        self.cluster = cluster
        self.clock = clock
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.max_retry_delay = max_retry_delay
        self._sdk_args = (credential, subscription_id)
        self._base_url = base_url
        self._connection_verify = connection_verify
        self._client: ContainerServiceClient | None = None
        self._compute: ComputeManagementClient | None = None
        self._location = location
        self._catalog = catalog
        self.quota = QuotaCheck(
            fetch=self._read_usages,
            size_quota=self._size_quota,
            location=self._known_location,
            clock=clock,
            ttl=usages_ttl,
        )

    @property
    def _aks(self) -> ContainerServiceClient:
        """The AKS SDK client, made on first use, inside the running loop its session needs."""
        if self._client is None:
            self._client = ContainerServiceClient(*self._sdk_args, **self._client_options())
        return self._client

    @property
    def _pools(self) -> AgentPoolsOperations:
        return self._aks.agent_pools

    def _client_options(self) -> dict[str, Any]:
        return {
            "base_url": self._base_url,
            "retry_total": 0,
            "connection_timeout": 30,
            "read_timeout": 60,
            **_tls_options(self._connection_verify),
        }

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._compute is not None:
            await self._compute.close()

    async def __aenter__(self) -> AzureProvider:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def create(self, request: InstanceRequest) -> Instance:
        name = pool_name(request.nodeclaim)
        try:
            existing = await self._get_pool(name)
        except NotFound:
            pass
        else:
            instance = _instance(existing, name)
            if instance.nodeclaim != request.nodeclaim:
                raise InvalidRequest(
                    f"agent pool {name} exists but belongs to {instance.nodeclaim or 'someone else'}, "
                    f"not NodeClaim {request.nodeclaim}",
                    code="AgentPoolNameConflict",
                )
            return instance
        await self.quota.reserve(request.instance_type)
        body = _agent_pool(request)

        async def put() -> None:
            await self._pools.begin_create_or_update(
                self.resource_group, self.cluster, name, io.BytesIO(body), polling=False
            )

        try:
            await self._call(put, retry_transient=False)
        except CloudError:
            await self.quota.release(request.instance_type)
            raise
        return Instance(
            name=name, nodeclaim=request.nodeclaim, instance_type=request.instance_type, state=InstanceState.CREATING
        )

    async def get(self, nodeclaim: str) -> Instance:
        name = pool_name(nodeclaim)
        return _instance(await self._get_pool(name), name)

    async def delete(self, nodeclaim: str) -> None:
        name = pool_name(nodeclaim)
        statuses: list[int] = []

        def record(response: PipelineResponse[Any, Any]) -> None:
            statuses.append(response.http_response.status_code)

        async def start() -> None:
            statuses.clear()
            await self._pools.begin_delete(
                self.resource_group, self.cluster, name, polling=False, raw_response_hook=record
            )

        await self._call(start, retry_transient=True)
        self.quota.forget()
        if statuses and statuses[-1] == 204:  # ARM answers a DELETE of nothing with 204 No Content
            raise NotFound(f"agent pool {name} for NodeClaim {nodeclaim} does not exist", code="NotFound")

    async def list(self) -> list[Instance]:
        async def collect() -> list[AgentPool]:
            return [pool async for pool in self._pools.list(self.resource_group, self.cluster)]

        pools = await self._call(collect, retry_transient=True)
        return [
            _instance(pool, pool.name or "") for pool in pools if (pool.tags or {}).get(MANAGED_BY_TAG) == MANAGED_BY
        ]

    async def _read_usages(self) -> Usages:
        """One try at the region's usages (no retries: the check is advisory and must not hold a create up)."""
        location = await self._cluster_location()
        if self._compute is None:
            self._compute = ComputeManagementClient(*self._sdk_args, **self._client_options())
        return [
            FamilyUsage(usage.name.value, usage.current_value, usage.limit)
            async for usage in self._compute.usage.list(location)
            if usage.name is not None and usage.name.value
        ]

    async def _cluster_location(self) -> str:
        if self._location is None:
            cluster = await self._aks.managed_clusters.get(self.resource_group, self.cluster)
            self._location = cluster.location
        return self._location

    async def _known_location(self) -> str | None:
        return self._location

    async def _size_quota(self, vm_size: str) -> SizeQuota | None:
        """The size's quota family and vCPUs from the catalog; None for a size it does not know."""
        if self._catalog is None:
            self._catalog = await asyncio.to_thread(Catalog.builtin)
        sku = self._catalog.find_sku(vm_size)
        if sku is None or sku.cloud != "azure" or not sku.quota_family or sku.vcpus is None:
            return None
        return SizeQuota(sku.quota_family, sku.vcpus)

    async def _get_pool(self, name: str) -> AgentPool:
        async def get() -> AgentPool:
            return await self._pools.get(self.resource_group, self.cluster, name)

        return await self._call(get, retry_transient=True)

    async def _call(self, call: Callable[[], Awaitable[T]], *, retry_transient: bool) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except AzureError as err:
                error = from_azure(err)
                delay = self._retry_delay(error, attempt, retry_transient)
                if delay is None:
                    raise error from err
            await self.clock.sleep(delay)
            attempt += 1

    def _retry_delay(self, error: CloudError, attempt: int, retry_transient: bool) -> float | None:
        """Seconds to wait before trying again, or None to give up and raise."""
        retryable = isinstance(error, Throttled) or (retry_transient and isinstance(error, TransientError))
        if not retryable or attempt >= self.max_retries:
            return None
        delay = error.retry_after if error.retry_after is not None else self.retry_backoff * 2**attempt
        # A long Retry-After is better spent by the work queue than by a worker sleeping here.
        return delay if delay <= self.max_retry_delay else None


def _tls_options(verify: str | bool) -> dict[str, Any]:
    """The SDK's TLS options; a CA bundle goes in one SSL context on the session's connector.

    Given a CA path as `connection_verify`, azure-core builds a new SSL context for every request, and
    aiohttp pools connections by SSL context: each request then paid a TLS handshake and left one more
    idle connection (with its 256 KiB read buffer) in the pool, 150 of them after 50 workspaces.
    """
    if isinstance(verify, bool):
        return {"connection_verify": verify}
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=verify))
    # The same session settings azure-core gives the session it makes itself.
    session = aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=True
    )
    return {"session": session}


def _agent_pool(request: InstanceRequest) -> bytes:
    """The PUT body as JSON: the REST shape is stable across SDK releases, the Python models are not."""
    properties: dict[str, Any] = {
        "vmSize": request.instance_type,
        "count": 1,
        "mode": "User",
        "osType": "Linux",
        "type": "VirtualMachineScaleSets",
        "nodeLabels": {**request.labels, LABEL_NODECLAIM: request.nodeclaim},
        "nodeTaints": list(request.taints),
        "tags": {NODECLAIM_TAG: request.nodeclaim, MANAGED_BY_TAG: MANAGED_BY},
    }
    if request.os_disk_gb is not None:
        properties["osDiskSizeGB"] = request.os_disk_gb
    return json.dumps({"properties": properties}).encode()


def _instance(pool: AgentPool, name: str) -> Instance:
    # Flattened attribute reads work with both the older msrest models and the newer `properties`-nested ones.
    raw_state: str = pool.provisioning_state or ""
    state = _STATES.get(raw_state.lower(), InstanceState.CREATING)  # Creating, Updating, Scaling, Upgrading, ...
    nodeclaim: str = (pool.tags or {}).get(NODECLAIM_TAG) or (pool.node_labels or {}).get(LABEL_NODECLAIM, "")
    error: CloudError | None = None
    if state is InstanceState.FAILED:
        detail = getattr(getattr(pool, "status", None), "provisioning_error", None)
        code = getattr(detail, "code", None) or raw_state
        message = getattr(detail, "message", None) or f"agent pool {name} is {raw_state}"
        error = classify(code, message)
    return Instance(
        name=name,
        nodeclaim=nodeclaim,
        instance_type=pool.vm_size or "",
        state=state,
        message=error.message if error else "",
        error=error,
    )
