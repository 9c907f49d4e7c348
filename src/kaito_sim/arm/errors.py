"""ARM error bodies and the cloud's own wording for the failures tests inject, so clients parse what Azure sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JsonObj = dict[str, Any]

NAMING_RULES = "https://aka.ms/aks-naming-rules"

# The HTTP status ARM answers a synchronous failure with, by error code (others: 400).
_SYNC_STATUS = {
    "OperationNotAllowed": 409,
    "AllocationFailed": 409,
    "ZonalAllocationFailed": 409,
    "OverconstrainedAllocationRequest": 409,
    "OverconstrainedZonalAllocationRequest": 409,
    "NotFound": 404,
    "ResourceNotFound": 404,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
}


@dataclass
class ArmError(Exception):
    """A request ARM refuses: rendered as `{"error": {"code", "message"[, "target"]}}` with `status`."""

    status: int
    code: str
    message: str
    target: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> JsonObj:
        return {"error": error_detail(self.code, self.message, self.target)}


def error_detail(code: str, message: str, target: str | None = None) -> JsonObj:
    detail: JsonObj = {"code": code, "message": message}
    if target:
        detail["target"] = target
    return detail


def sync_status(code: str) -> int:
    return _SYNC_STATUS.get(code, 400)


def default_message(code: str, *, vm_size: str, location: str) -> str:
    """What Azure says for `code` when a test injects it without its own message."""
    if code in ("QuotaExceeded", "OperationNotAllowed"):
        return quota_message(vm_size=vm_size, location=location)
    if code == "SkuNotAvailable":
        return sku_not_available_message(vm_size=vm_size, location=location)
    if code in ("AllocationFailed", "ZonalAllocationFailed"):
        return allocation_message(zonal=code == "ZonalAllocationFailed")
    if code.startswith("Overconstrained"):
        return overconstrained_message()
    return f"The operation failed with code '{code}'."


def quota_family(vm_size: str) -> str:
    """Azure's quota family for a size: Standard_NC6s_v3 -> standardNCSv3Family."""
    parts = vm_size.split("_")
    if len(parts) < 2:
        return "standardFamily"
    series = "".join(ch for ch in parts[1] if not ch.isdigit()).upper()
    return f"standard{series}{''.join(parts[2:])}Family"


def quota_message(
    *,
    location: str,
    vm_size: str = "",
    family: str | None = None,
    limit: int = 0,
    usage: int = 0,
    required: int = 6,
) -> str:
    """Azure's refusal for a create beyond a quota; `family` "Total Regional" for the regional vCPU total."""
    family = family or quota_family(vm_size)
    return (
        f"Operation could not be completed as it results in exceeding approved {family} Cores quota. "
        f"Additional details - Deployment Model: Resource Manager, Location: {location}, "
        f"Current Limit: {limit}, Current Usage: {usage}, Additional Required: {required}, "
        f"(Minimum) New Limit Required: {usage + required}. "
        "Submit a request for Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/"
        "UsageAndQuota.ReactView/Parameters/ by specifying parameters listed in the 'Details' section "
        "for deployment to succeed."
    )


def sku_not_available_message(*, vm_size: str, location: str) -> str:
    return (
        f"The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {vm_size}' "
        f"is currently not available in location '{location}'. Please try another size or deploy to a different "
        "location or different zone. See https://aka.ms/azureskunotavailable for details."
    )


def allocation_message(*, zonal: bool = False) -> str:
    scope = "in this zone" if zonal else "in this region"
    return (
        f"Allocation failed. We do not have sufficient capacity for the requested VM size {scope}. "
        "Read more about improving likelihood of allocation success at https://aka.ms/allocation-guidance"
    )


def overconstrained_message() -> str:
    return (
        "Allocation failed. VM(s) with the following constraints cannot be allocated, because the condition is too "
        "restrictive. Please remove some constraints and try again. Constraints applied are: Networking Constraints "
        "(such as Accelerated Networking or IPv6), VM Size."
    )


def vm_size_not_supported(*, vm_size: str, location: str, subscription_id: str) -> ArmError:
    return ArmError(
        400,
        "VMSizeNotSupported",
        f"Virtual Machine size: '{vm_size}' is not supported for subscription {subscription_id} in location "
        f"'{location}'. Please refer to aka.ms/aks/vm-size-selector to find supported VM sizes in location "
        f"'{location}'.",
    )


def invalid_parameter(parameter: str, detail: str = "") -> ArmError:
    message = f"The value of parameter {parameter} is invalid."
    if detail:
        message = f"{message} {detail}"
    if parameter.endswith(".name"):
        message = f"{message} Please see {NAMING_RULES} for more details."
    return ArmError(400, "InvalidParameter", message, parameter)


def throttled(*, subscription_id: str, retry_after: int) -> ArmError:
    return ArmError(
        429,
        "SubscriptionRequestsThrottled",
        f"Number of 'write' requests for subscription '{subscription_id}' actor 'kaito' exceeded. Please try again "
        f"after '{retry_after}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling "
        "for additional information.",
        headers={"Retry-After": str(retry_after)},
    )


def unauthenticated(present: bool) -> ArmError:
    if present:
        code, message, description = (
            "InvalidAuthenticationToken",
            "The access token is invalid.",
            "The access token is invalid.",
        )
    else:
        code, message, description = (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
            "The authentication failed because of missing 'Authorization' header.",
        )
    challenge = (
        'Bearer authorization_uri="https://login.microsoftonline.com/common", '
        f'error="invalid_token", error_description="{description}"'
    )
    return ArmError(401, code, message, headers={"WWW-Authenticate": challenge})
