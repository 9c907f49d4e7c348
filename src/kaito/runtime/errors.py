"""API errors as a small exception tree, so callers catch what they mean instead of comparing status codes.

ApiError                  any non-2xx answer; carries the parsed Status
+-- BadRequest            400
+-- Unauthorized          401
+-- Forbidden             403
+-- NotFound              404
+-- MethodNotAllowed      405
+-- Conflict              409, reason Conflict (stale resourceVersion)
+-- AlreadyExists         409, reason AlreadyExists
+-- Gone                  410 (resourceVersion too old: relist)
+-- UnsupportedMediaType  415
+-- Invalid               422 (field errors in `causes`)
+-- TooManyRequests       429 (retry after `retry_after`)
+-- ServerError           5xx
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ApiError(Exception):
    """A Kubernetes API failure with its Status object."""

    def __init__(
        self,
        code: int,
        *,
        reason: str = "",
        message: str = "",
        status: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.message = message or reason or f"HTTP {code}"
        self.status: dict[str, Any] = dict(status or {})
        self.retry_after = retry_after
        super().__init__(f"{code} {reason}: {self.message}" if reason else f"{code}: {self.message}")

    @property
    def causes(self) -> list[dict[str, Any]]:
        """Field-level causes from `details.causes` (what 422 Invalid uses to name fields)."""
        details = self.status.get("details") or {}
        return list(details.get("causes") or [])


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class MethodNotAllowed(ApiError):
    pass


class Conflict(ApiError):
    pass


class AlreadyExists(ApiError):
    pass


class Gone(ApiError):
    pass


class UnsupportedMediaType(ApiError):
    pass


class Invalid(ApiError):
    pass


class TooManyRequests(ApiError):
    pass


class ServerError(ApiError):
    pass


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    410: Gone,
    415: UnsupportedMediaType,
    422: Invalid,
    429: TooManyRequests,
}


def error_class(code: int, reason: str) -> type[ApiError]:
    if code == 409:
        return AlreadyExists if reason == "AlreadyExists" else Conflict
    if code >= 500:
        return ServerError
    return _BY_CODE.get(code, ApiError)


def from_status(status: Mapping[str, Any], *, code: int | None = None, retry_after: float | None = None) -> ApiError:
    """The exception for a Status object (from a response body or a watch ERROR event)."""
    status_code = int(code if code is not None else status.get("code") or 500)
    reason = str(status.get("reason") or "")
    cls = error_class(status_code, reason)
    message = str(status.get("message") or "")
    return cls(status_code, reason=reason, message=message, status=status, retry_after=retry_after)


def from_response(code: int, body: bytes, *, retry_after: float | None = None) -> ApiError:
    """The exception for a non-2xx HTTP response; tolerates bodies that are not a Status."""
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict) or parsed.get("kind") != "Status":
        text = body.decode(errors="replace").strip()[:500]
        parsed = {"kind": "Status", "code": code, "message": text}
    return from_status(parsed, code=code, retry_after=retry_after)


async def ignore_not_found(call: Awaitable[T]) -> T | None:
    """Await `call`; a NotFound becomes None (e.g. deleting something already gone)."""
    try:
        return await call
    except NotFound:
        return None


async def ignore_already_exists(call: Awaitable[T]) -> T | None:
    """Await `call`; an AlreadyExists becomes None (e.g. creating something another replica made)."""
    try:
        return await call
    except AlreadyExists:
        return None
