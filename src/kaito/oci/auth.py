"""Authenticated requests to one registry repository: Basic and Bearer (token service) auth, retries, user errors."""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import oras.provider  # type: ignore[import-untyped, unused-ignore]
import requests

from kaito.oci.dockerconfig import Credentials
from kaito.oci.errors import OciError, connection_failure, registry_error, tls_failure
from kaito.oci.reference import Reference
from kaito.oci.scheme import Scheme

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
_TIMEOUT = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
_TOKEN_CLIENT_ID = "kaito"
# A request answers at most this many different 401 challenges (e.g. a pull scope, then a push scope).
_MAX_CHALLENGES = 3
_CHALLENGE_PARAM_RE = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


class _OrasRegistry(oras.provider.Registry):  # type: ignore[misc]
    """oras-py's registry client with kaito's request policy.

    oras-py does the blob protocol (existence check, monolithic and chunked uploads, blob URLs, streaming GETs).
    Its own request wrapper is replaced: it retries every failure (auth and TLS failures included) with
    pauses that add up to minutes, and its auth backends handle either Basic or Bearer challenges, not both,
    nor identity (refresh) tokens.
    """

    def __init__(self, client: RegistryClient, *, tls_verify: bool | str) -> None:
        insecure = client.scheme.name == "http"
        super().__init__(hostname=client.ref.api_host, insecure=insecure, tls_verify=tls_verify)
        self.kaito_session = client

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: dict[str, Any] | bytes | None = None,
        headers: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        return self.kaito_session.request(method, url, data=data, headers=headers, json_body=json, stream=stream)

    def _check_200_response(self, response: requests.Response) -> None:
        self.kaito_session.expect_success(response, f"{response.request.method} {response.request.path_url}")


class RegistryClient:
    """Requests for one push or pull against one repository: auth state, retries, and errors phrased for the user.

    Transient failures (connection errors, 429, 5xx) are retried after retry_delays; auth and 404 never are.
    The scheme says whether requests go in HTTPS or plain HTTP, and whether a TLS failure may turn them to HTTP.
    """

    def __init__(
        self,
        ref: Reference,
        credentials: Credentials | None,
        *,
        scheme: Scheme,
        ca_file: Path | None,
        purpose: str,
        retry_delays: tuple[float, ...],
    ) -> None:
        if ca_file is not None and not ca_file.is_file():
            raise OciError(f"CA file {ca_file} does not exist")
        self.ref = ref
        self.purpose = purpose
        self.retry_delays = retry_delays
        self.scheme = scheme
        self.verify: bool | str = str(ca_file) if ca_file else True
        self.auth = _Authenticator(self, credentials)
        self.oras = _OrasRegistry(self, tls_verify=self.verify)
        self.http: requests.Session = self.oras.session
        # Blobs are hashed as stored: no transparent gzip decoding between the registry and the digest check.
        self.http.headers["Accept-Encoding"] = "identity"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, Any] | bytes | None = None,
        headers: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        def send() -> requests.Response:
            return self._send_authenticated(method, url, data, headers, json_body, stream)

        return self.with_retries(send, self.ref.api_host)

    def with_retries(self, send: Callable[[], requests.Response], host: str) -> requests.Response:
        """Send, retrying connection errors, 429 and 5xx after retry_delays; TLS and auth failures fail at once."""
        for attempt, delay in enumerate((*self.retry_delays, None)):
            try:
                response = send()
            except requests.exceptions.SSLError as exc:
                raise OciError(tls_failure(host, exc)) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                if delay is None:
                    raise OciError(f"{connection_failure(host, exc)} (tried {attempt + 1} times)") from exc
                log.warning("%s; retrying in %.1fs", connection_failure(host, exc), delay)
                time.sleep(delay)
                continue
            if response.status_code in RETRYABLE_STATUS and delay is not None:
                log.warning("registry %s answered HTTP %d; retrying in %.1fs", host, response.status_code, delay)
                response.close()
                time.sleep(delay)
                continue
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send_authenticated(
        self,
        method: str,
        url: str,
        data: dict[str, Any] | bytes | None,
        headers: dict[str, str] | None,
        json_body: dict[str, Any] | None,
        stream: bool,
    ) -> requests.Response:
        answered: set[str] = set()
        while len(answered) <= _MAX_CHALLENGES:
            sent_headers = dict(headers or {})
            if self.auth.header:
                sent_headers["Authorization"] = self.auth.header
            response = self._send(method, url, data=data, json=json_body, headers=sent_headers, stream=stream)
            if response.status_code != 401:
                return response
            self.auth.answer(response, answered)
        raise OciError(f"registry {self.ref.registry} keeps asking for authentication with new challenges")

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One request in the transfer's scheme; sent again in plain HTTP when the scheme falls back after TLS fails."""
        try:
            return self.http.request(method, self._in_scheme(url), verify=self.verify, timeout=_TIMEOUT, **kwargs)
        except requests.exceptions.SSLError:
            if not self.scheme.falls_back(self.ref.api_host):
                raise
        return self.http.request(method, self._in_scheme(url), verify=self.verify, timeout=_TIMEOUT, **kwargs)

    def _in_scheme(self, url: str) -> str:
        """The URL in the transfer's scheme: a registry URL made before a fall back to plain HTTP is turned to HTTP."""
        if self.scheme.name == "http" and url.startswith(f"https://{self.ref.api_host}/"):
            return "http://" + url.removeprefix("https://")
        return url

    def expect_success(self, response: requests.Response, action: str) -> None:
        if response.status_code < 300:
            return
        detail = registry_error(response)
        response.close()
        if response.status_code == 400 and "HTTPS server" in detail:
            detail += "; the registry serves HTTPS, so leave out --plain-http"
        if response.status_code == 403:
            raise OciError(
                f"registry {self.ref.registry} denied {self.auth.who()} {self.purpose} access to "
                f"{self.ref.repository} ({detail}); check that the {self.purpose} secret's identity may "
                f"{self.purpose} this repository"
            )
        raise OciError(f"registry {self.ref.registry} failed {action} for {self.ref} ({detail})")


class _Authenticator:
    """Answers 401 challenges: Basic with the credentials, or Bearer via the token service the challenge names."""

    def __init__(self, client: RegistryClient, credentials: Credentials | None) -> None:
        self.client = client
        self.credentials = credentials
        self.header: str | None = None

    def who(self) -> str:
        if self.credentials is None:
            return "anonymous"
        source = f" (from {self.credentials.source})" if self.credentials.source else ""
        return self.credentials.describe() + source

    def answer(self, response: requests.Response, answered: set[str]) -> None:
        """Set the header that answers this 401, or raise OciError when the registry has refused what we have."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(challenge)
        detail = registry_error(response)
        response.close()
        if challenge in answered:
            raise OciError(self._refused(detail) if self.credentials else self._no_credentials(detail))
        answered.add(challenge)
        if scheme == "basic":
            self.header = self._basic_header(detail)
        elif scheme == "bearer":
            self.header = "Bearer " + self._token(params)
        else:
            raise OciError(
                f"registry {self.client.ref.registry} answered HTTP 401 with an authentication scheme kaito "
                f"does not speak ({challenge or 'no WWW-Authenticate header'})"
            )

    def _basic_header(self, detail: str) -> str:
        if self.credentials is None:
            raise OciError(self._no_credentials(detail))
        creds = self.credentials
        if not creds.username and creds.identity_token:
            raise OciError(
                f"registry {self.client.ref.registry} asks for a username and password (HTTP Basic), "
                "but the credentials hold only an identity token"
            )
        pair = f"{creds.username}:{creds.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _token(self, params: dict[str, str]) -> str:
        realm = params.get("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise OciError(f"registry {self.client.ref.registry} named no usable token service (realm={realm!r})")
        query: dict[str, str] = {key: params[key] for key in ("service", "scope") if key in params}
        creds = self.credentials
        realm_host = realm.split("/")[2]

        def send() -> requests.Response:
            http, verify = self.client.http, self.client.verify
            if creds and creds.identity_token:
                form: dict[str, str] = {**query, "grant_type": "refresh_token", "client_id": _TOKEN_CLIENT_ID}
                form["refresh_token"] = creds.identity_token
                return http.post(realm, data=form, verify=verify, timeout=_TIMEOUT)
            basic = (creds.username, creds.password) if creds else None
            return http.get(realm, params=query, auth=basic, verify=verify, timeout=_TIMEOUT)

        response = self.client.with_retries(send, realm_host)
        if response.status_code in (401, 403):
            detail = f"token service {realm} answered {registry_error(response)}"
            if creds is None:
                raise OciError(self._no_credentials(detail))
            raise OciError(self._refused(detail))
        if response.status_code != 200:
            raise OciError(f"token service {realm} failed ({registry_error(response)})")
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise OciError(f"token service {realm} answered without a token")
        return token

    def _no_credentials(self, detail: str) -> str:
        registry = self.client.ref.registry
        return (
            f"registry {registry} requires credentials to {self.client.purpose} {self.client.ref.repository} "
            f"and none were given for {registry} ({detail}); pass a docker config (--docker-config) with an "
            f"auths entry for {registry}"
        )

    def _refused(self, detail: str) -> str:
        return (
            f"registry {self.client.ref.registry} refused the credentials for {self.who()} ({detail}); "
            f"check the {self.client.purpose} secret"
        )


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Scheme (lowercased) and parameters of a WWW-Authenticate header, e.g. Bearer realm="...",scope="..."."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _CHALLENGE_PARAM_RE.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = quoted if quoted is not None else bare
    return scheme.lower(), params
