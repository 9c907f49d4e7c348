"""The `CloudProvider` protocol: the four calls the NodeClaim controller needs from any cloud, and its errors.

CloudError                 any provider failure; `code` and `message` are the cloud's own
+-- NotFound               the instance does not exist (deleting it again is fine)
+-- InsufficientCapacity   the region has no capacity for the size right now
+-- QuotaExceeded          the subscription's quota for the size family is exhausted
+-- SkuNotAvailable        the size is not offered in this region/subscription
+-- Throttled              too many requests; retry after `retry_after` seconds
+-- TransientError         anything else worth retrying with backoff
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class CloudError(Exception):
    """A cloud call failed; `reason` is what goes on the NodeClaim/Workspace condition."""

    reason = "CloudError"
    retryable = True

    def __init__(self, message: str, *, code: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.reason
        self.retry_after = retry_after


class NotFound(CloudError):
    reason = "NotFound"
    retryable = False


class InsufficientCapacity(CloudError):
    reason = "InsufficientCapacity"


class QuotaExceeded(CloudError):
    reason = "QuotaExceeded"


class SkuNotAvailable(CloudError):
    reason = "SkuNotAvailable"


class Throttled(CloudError):
    reason = "Throttled"


class TransientError(CloudError):
    reason = "TransientError"


class InstanceState(StrEnum):
    CREATING = "Creating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DELETING = "Deleting"


@dataclass(frozen=True)
class InstanceRequest:
    """One GPU node to create for one NodeClaim."""

    nodeclaim: str  # the NodeClaim's name: the provider derives a deterministic instance name from it
    instance_type: str
    labels: dict[str, str] = field(default_factory=dict)  # put on the node
    taints: tuple[str, ...] = ()  # "key=value:Effect"
    os_disk_gb: int | None = None


@dataclass(frozen=True)
class Instance:
    name: str  # the cloud's name (an AKS agent pool name)
    nodeclaim: str  # the NodeClaim it was created for (a tag on the cloud side)
    instance_type: str
    state: InstanceState
    provider_id: str | None = None  # what the Node's spec.providerID will be, once known
    message: str = ""  # the cloud's message for a failed instance
    error: CloudError | None = None  # typed failure for a FAILED instance


class CloudProvider(Protocol):
    """Idempotent by NodeClaim name: `create` of an existing instance returns it instead of making a second."""

    name: str

    async def create(self, request: InstanceRequest) -> Instance: ...

    async def get(self, nodeclaim: str) -> Instance:
        """Raises NotFound."""
        ...

    async def delete(self, nodeclaim: str) -> None:
        """Starts deletion; raises NotFound when already gone."""
        ...

    async def list(self) -> list[Instance]:
        """Every instance this provider created (for orphan collection)."""
        ...
