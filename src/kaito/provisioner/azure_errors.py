"""Azure failures as the provisioner's typed errors, keeping the cloud's code and message verbatim.

    error code (or condition)                                  -> provisioner error
    ---------------------------------------------------------     ----------------------------------
    QuotaExceeded, InsufficientVCPUQuota, ErrCode_InsufficientVCPUQuota,
    OperationNotAllowed whose message mentions quota           -> QuotaExceeded
    SkuNotAvailable, VMSizeNotSupported, ErrorCodeUnsupportedGPUDedicatedVHDVMSize,
    BadRequest "...not supported for subscription..." or "...restricted by AKS..."
                                                               -> SkuNotAvailable (the size is not offered here)
    AllocationFailed, ZonalAllocationFailed, OverconstrainedAllocationRequest,
    OverconstrainedZonalAllocationRequest                      -> InsufficientCapacity (offered, none free now)
    HTTP 404, NotFound, ResourceNotFound                       -> NotFound
    HTTP 429 (any code; Retry-After kept)                      -> Throttled
    HTTP 5xx, 409 OperationNotAllowed/Conflict without quota, Canceled,
    connection, TLS and timeout failures                       -> TransientError
    any other HTTP 400/422 (InvalidParameter, ...)             -> InvalidRequest (not retryable)
    anything else (401, 403, ...)                              -> CloudError with the cloud's code

SkuNotAvailable on-demand means the region or subscription does not offer the size, so retrying will not help
until someone changes the Workspace or the subscription; allocation failures are capacity that may come back.
"""

from __future__ import annotations

import datetime as dt
import email.utils

from azure.core.exceptions import AzureError, HttpResponseError

from kaito.provisioner.cloud import (
    CloudError,
    InsufficientCapacity,
    NotFound,
    QuotaExceeded,
    SkuNotAvailable,
    Throttled,
    TransientError,
)

_QUOTA = frozenset({"quotaexceeded", "insufficientvcpuquota", "errcode_insufficientvcpuquota"})
_SKU = frozenset({"skunotavailable", "vmsizenotsupported", "errorcodeunsupportedgpudedicatedvhdvmsize"})
_CAPACITY = frozenset(
    {
        "allocationfailed",
        "zonalallocationfailed",
        "overconstrainedallocationrequest",
        "overconstrainedzonalallocationrequest",
    }
)
_NOT_FOUND = frozenset({"notfound", "resourcenotfound"})
_TRANSIENT = frozenset({"operationnotallowed", "conflict", "canceled", "internalservererror", "serviceunavailable"})
_SKU_PHRASES = ("is not supported for subscription", "restricted by aks")


class InvalidRequest(CloudError):
    """Azure refused the request as malformed or invalid; sending it again will not help."""

    reason = "InvalidRequest"
    retryable = False


def classify(code: str, message: str, *, status: int | None = None, retry_after: float | None = None) -> CloudError:
    """The typed error for an Azure error `code` (and HTTP `status`, when there was a response)."""
    key = code.lower()
    lowered = message.lower()
    if status == 429:
        return Throttled(message, code=code, retry_after=retry_after)
    if key in _QUOTA or (key == "operationnotallowed" and "quota" in lowered):
        return QuotaExceeded(message, code=code)
    if key in _SKU or (key == "badrequest" and any(p in lowered for p in _SKU_PHRASES)):
        return SkuNotAvailable(message, code=code)
    if key in _CAPACITY:
        return InsufficientCapacity(message, code=code)
    if status == 404 or key in _NOT_FOUND:
        return NotFound(message, code=code)
    if (status is not None and status >= 500) or key in _TRANSIENT:
        return TransientError(message, code=code, retry_after=retry_after)
    if status in (400, 422):
        return InvalidRequest(message, code=code)
    return CloudError(message, code=code)


def from_azure(err: AzureError) -> CloudError:
    """Map an exception raised by the Azure SDK; anything without an HTTP response is a transport failure."""
    if not isinstance(err, HttpResponseError) or err.response is None:
        return TransientError(str(err.message or err), code=type(err).__name__)
    status = err.status_code
    code = (err.error.code if err.error is not None else None) or str(status)
    message = (err.error.message if err.error is not None else None) or err.reason or str(err.message)
    headers = getattr(err.response, "headers", None) or {}
    return classify(code, message, status=status, retry_after=retry_after(headers.get("Retry-After")))


def retry_after(header: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
