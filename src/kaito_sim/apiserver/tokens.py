"""Who is calling: bearer tokens mapped to users, and the TokenRequest API that mints service account tokens.

The admin token of `SimServer` stands for `kubernetes-admin` in `system:masters`. Service account
tokens are JWT-shaped and signed (HS256) with a key that lives only as long as the server, so they
carry their identity and need no table; like the real apiserver's bound tokens they stop working
when they expire, when the ServiceAccount is deleted or replaced (its uid changes), or when they
were requested for an audience other than the API server's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.store import Store

API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
ISSUER = API_AUDIENCE
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600  # the apiserver refuses anything shorter than ten minutes
MAX_EXPIRATION = 1 << 32
SERVICE_ACCOUNTS = ("", "serviceaccounts")
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated (or anonymous) caller, as the authorizer sees it."""

    name: str
    groups: tuple[str, ...] = ()

    @property
    def is_master(self) -> bool:
        return "system:masters" in self.groups


ADMIN = UserInfo("kubernetes-admin", ("system:masters", AUTHENTICATED))
ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))


def service_account_user(namespace: str, name: str) -> UserInfo:
    """The user a service account token stands for, with the groups the apiserver gives it."""
    return UserInfo(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Authenticator:
    """Maps a bearer token to a `UserInfo`; mints service account tokens for `POST .../serviceaccounts/X/token`."""

    def __init__(self, store: Store, *, admin_tokens: set[str]) -> None:
        self.store = store
        self.admin_tokens = admin_tokens
        self._key = secrets.token_bytes(32)
        self._header = _b64(json.dumps({"alg": "HS256", "kid": "kaito-sim"}, separators=(",", ":")).encode())

    def authenticate(self, authorization: str) -> UserInfo | None:
        """The caller of a request with this `Authorization` header; None when it proves nothing."""
        if not authorization.startswith("Bearer "):
            return None
        token = authorization[7:].strip()
        if token in self.admin_tokens:
            return ADMIN
        return self._service_account(token)

    def _service_account(self, token: str) -> UserInfo | None:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != self._header:
            return None
        expected = _b64(hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return None
        claims = json.loads(_unb64(parts[1]))
        if claims["exp"] <= time.time() or API_AUDIENCE not in claims["aud"]:
            return None
        ref = claims["kubernetes.io"]
        namespace, name, uid = ref["namespace"], ref["serviceaccount"]["name"], ref["serviceaccount"]["uid"]
        account = self.store.get(SERVICE_ACCOUNTS, namespace, name)
        if account is None or account["metadata"].get("uid") != uid:
            return None
        return service_account_user(namespace, name)

    def issue(self, namespace: str, name: str, *, audiences: list[str], expiration: int) -> tuple[str, int]:
        """A signed token for an existing service account, and when it expires (epoch seconds)."""
        account = self.store.get(SERVICE_ACCOUNTS, namespace, name)
        if account is None:
            raise errors.not_found("serviceaccounts", "", name)
        now = int(time.time())
        claims = {
            "aud": audiences,
            "exp": now + expiration,
            "iat": now,
            "nbf": now,
            "iss": ISSUER,
            "sub": service_account_user(namespace, name).name,
            "jti": secrets.token_hex(8),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": account["metadata"]["uid"]},
            },
        }
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64(hmac.new(self._key, f"{self._header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{self._header}.{payload}.{signature}", now + expiration

    def token_request(self, namespace: str, name: str, body: Any) -> JsonObj:
        """The TokenRequest answer (status.token filled in) to a TokenRequest body, validated as the apiserver does."""
        body = body if isinstance(body, dict) else {}
        if body.get("kind", "TokenRequest") != "TokenRequest":
            raise errors.bad_request(f"the body is a {body.get('kind')}, not an authentication.k8s.io/v1 TokenRequest")
        spec = dict(body.get("spec") or {})
        expiration = int(spec.get("expirationSeconds") or DEFAULT_EXPIRATION)
        if expiration < MIN_EXPIRATION or expiration > MAX_EXPIRATION:
            limit = "less than 10 minutes" if expiration < MIN_EXPIRATION else "larger than 2^32 seconds"
            cause = errors.cause(
                "FieldValueInvalid",
                f"Invalid value: {expiration}: may not specify a duration {limit}",
                "spec.expirationSeconds",
            )
            raise errors.invalid("TokenRequest", "authentication.k8s.io", name, [cause])
        audiences = list(spec.get("audiences") or [API_AUDIENCE])
        token, expires = self.issue(namespace, name, audiences=audiences, expiration=expiration)
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": _rfc3339(int(time.time()))},
            "spec": {**spec, "audiences": audiences, "expirationSeconds": expiration},
            "status": {"token": token, "expirationTimestamp": _rfc3339(expires)},
        }
