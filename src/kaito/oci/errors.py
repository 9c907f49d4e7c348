"""The error OCI pushes and pulls raise, and how registry, TLS and connection failures are phrased in it."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator

import requests


class OciError(Exception):
    """A push or pull that failed, with a message that says what to fix."""


def registry_error(response: requests.Response) -> str:
    """'HTTP 401 UNAUTHORIZED: authentication required' from a registry's error body, or the status line."""
    status = f"HTTP {response.status_code}"
    try:
        errors = response.json().get("errors") if response.content else None
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return f"{status} {first.get('code', '')}: {first.get('message', '')}".strip().rstrip(":")
    text = (response.text or "").strip().replace("\n", " ")[:200] if response.content else ""
    return f"{status} {response.reason or ''}".strip() + (f": {text}" if text else "")


@contextlib.contextmanager
def as_oci_error(action: str) -> Iterator[None]:
    """oras-py signals failures with ValueError and friends; turn them into one OciError naming the action."""
    try:
        yield
    except OciError:
        raise
    except (ValueError, OSError, KeyError) as exc:
        raise OciError(f"{action} failed: {exc}") from exc


def tls_failure(host: str, exc: BaseException) -> str:
    cause = _root_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"TLS to registry {host} failed: certificate verify failed: {cause.verify_message}; pass the CA that "
            "signed the registry's certificate (--ca-file)"
        )
    reason = getattr(cause, "reason", None) or str(cause)
    hint = "; if the registry serves plain HTTP, use --plain-http" if "WRONG_VERSION" in str(reason).upper() else ""
    return f"TLS to registry {host} failed: {reason}{hint}"


def connection_failure(host: str, exc: BaseException) -> str:
    cause = _root_cause(exc)
    if isinstance(exc, requests.Timeout) or isinstance(cause, TimeoutError | socket.timeout):
        return f"registry {host} did not answer in time ({cause})"
    if isinstance(cause, ConnectionRefusedError):
        return f"cannot connect to registry {host}: connection refused"
    if isinstance(cause, socket.gaierror):
        return f"cannot connect to registry {host}: cannot resolve the host name ({cause.strerror})"
    return f"cannot connect to registry {host}: {cause}"


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error under requests' and urllib3's wrappers (an ssl or socket error, usually)."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        nested = getattr(current, "reason", None)
        if not isinstance(nested, BaseException):
            nested = next((arg for arg in current.args if isinstance(arg, BaseException)), None)
        nested = nested or current.__cause__ or current.__context__
        if nested is None:
            break
        current = nested
    return current
