"""Kubernetes `Status` failures raised inside the simulated API server and rendered as clients expect.

Exception tree::

    ApiError                    any failure answered with a Status body (code, reason, message)
      (built by the helpers below: not_found, already_exists, conflict, invalid, bad_request,
       unsupported_media_type, expired, forbidden, method_not_allowed, internal_error)
"""

from __future__ import annotations

from typing import Any

JsonObj = dict[str, Any]


class ApiError(Exception):
    """A request failure carried to the client as a `Status` object with HTTP status `code`."""

    def __init__(self, code: int, reason: str, message: str, details: JsonObj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JsonObj:
        body: JsonObj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def cause(reason: str, message: str, field: str) -> JsonObj:
    """One entry of `details.causes`: `reason` is e.g. FieldValueRequired, FieldValueInvalid."""
    return {"reason": reason, "message": message, "field": field}


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(plural, group)} "{name}" not found',
        {"name": name, "group": group, "kind": plural},
    )


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(plural, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
        {"name": name, "group": group, "kind": plural},
    )


def invalid(kind: str, group: str, name: str, causes: list[JsonObj]) -> ApiError:
    """422 Invalid; each cause names its field, as kubectl prints `* field: message` per cause."""
    qualified_kind = f"{kind}.{group}" if group else kind
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{qualified_kind} "{name}" is invalid: {summary}',
        {"name": name, "group": group, "kind": kind, "causes": causes},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}"
        if content_type
        else "the body of the request was in an unknown format",
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def forbidden(message: str, details: JsonObj | None = None) -> ApiError:
    return ApiError(403, "Forbidden", message, details)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message, {})


def internal_error(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")
