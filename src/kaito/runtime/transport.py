"""One HTTP exchange with the API server: client-side rate limiting, retries, metrics and error mapping.

Auth, TLS and the connection pool stay kubernetes-asyncio's (`ApiClient.rest_client`); we send the
request ourselves because its generated API classes only cover built-in kinds and decode into models.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import random
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from kaito.runtime import errors
from kaito.runtime.clock import Clock
from kaito.runtime.k8slib import ApiClient
from kaito.runtime.metrics import RuntimeMetrics
from kaito.runtime.ratelimit import TokenBucket

log = logging.getLogger(__name__)

JSON = "application/json"
MAX_RETRY_AFTER = 10.0
BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0
CONNECT_TIMEOUT = 30.0
# Without Retry-After only these are worth repeating, and only for reads: a write may have happened.
_BLIND_RETRY_CODES = frozenset({500, 503, 504})


class Transport:
    """Sends requests through an `ApiClient`'s session, waiting on a token bucket and retrying what is safe."""

    def __init__(
        self,
        api_client: ApiClient,
        *,
        qps: float,
        burst: int,
        max_retries: int,
        clock: Clock,
        user_agent: str,
        request_timeout: float | None,
        metrics: RuntimeMetrics,
    ) -> None:
        self.api_client = api_client
        self.metrics = metrics
        self.max_retries = max_retries
        self.clock = clock
        self.user_agent = user_agent
        self.base_url = str(api_client.configuration.host).rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        self.bucket = TokenBucket(qps=qps, burst=burst, clock=clock)
        self.timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=request_timeout)

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        """One request, retried as allowed; returns the decoded JSON body or raises the mapped `ApiError`."""
        _, data = await self._send(method, path, query or {}, body, content_type, self.timeout, stream=False)
        return json.loads(data) if data else {}

    async def call_text(self, path: str, *, read_timeout: float) -> str:
        """A GET whose body is text, not JSON (a pod's /metrics through the API server's proxy), within `read_timeout`.

        Tried once: a pod that does not answer now is the caller's news, not something to wait out.
        """
        client_timeout = aiohttp.ClientTimeout(total=read_timeout)
        response, data = await self._attempt("GET", path, {}, None, JSON, client_timeout, stream=False)
        if response.status >= 300:
            raise errors.from_response(response.status, data)
        return data.decode(errors="replace")

    async def open_stream(
        self, path: str, *, query: dict[str, str], read_timeout: float | None
    ) -> aiohttp.ClientResponse:
        """A GET whose 2xx response is handed back unread; the caller must close it."""
        timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=read_timeout)
        response, _ = await self._send("GET", path, query, None, JSON, timeout, stream=True)
        return response

    async def _send(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        content_type: str,
        client_timeout: aiohttp.ClientTimeout,
        *,
        stream: bool,
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        attempt = 0
        while True:
            try:
                response, data = await self._attempt(
                    method, path, query, body, content_type, client_timeout, stream=stream
                )
            except aiohttp.ClientConnectionError as exc:
                if method != "GET" or attempt >= self.max_retries:
                    raise
                delay, cause = self._backoff(attempt), repr(exc)
            else:
                if response.status < 300:
                    return response, data
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock.wall())
                error = errors.from_response(response.status, data, retry_after=retry_after)
                found = self._retry_delay(method, error, attempt)
                if found is None:
                    raise error
                delay, cause = found, str(error)
            log.debug("retrying %s %s in %.2fs (attempt %d): %s", method, path, delay, attempt + 1, cause)
            attempt += 1
            await self.clock.sleep(delay)

    async def _attempt(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        content_type: str,
        client_timeout: aiohttp.ClientTimeout,
        *,
        stream: bool,
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        waited = await self.bucket.acquire()
        self.metrics.client_rate_limiter_latency.labels(verb=method, host=self.host).observe(waited)
        headers = {**self.api_client.default_headers, "Accept": JSON, "Content-Type": content_type}
        headers["User-Agent"] = self.user_agent
        await self.api_client.update_params_for_auth(headers, [], ["BearerToken"])
        start, code = self.clock.now(), "<error>"
        try:
            # rest_client json-dumps `body` itself for JSON and apply-patch+yaml content types.
            response: aiohttp.ClientResponse = await self.api_client.rest_client.request(
                method,
                self.base_url + path,
                query_params=query,
                headers=headers,
                body=body,
                _preload_content=False,
                _request_timeout=client_timeout,
            )
            code = str(response.status)
            if stream and response.status < 300:
                return response, b""
            try:
                return response, await response.read()
            finally:
                response.release()
        finally:
            self.metrics.client_requests.labels(code=code, method=method, host=self.host).inc()
            self.metrics.client_latency.labels(verb=method, host=self.host).observe(self.clock.now() - start)

    def _retry_delay(self, method: str, error: errors.ApiError, attempt: int) -> float | None:
        if attempt >= self.max_retries:
            return None
        if error.retry_after is not None and (error.code == 429 or error.code >= 500):
            return min(error.retry_after, MAX_RETRY_AFTER)
        if method == "GET" and error.code in _BLIND_RETRY_CODES:
            return self._backoff(attempt)
        return None

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt, 30) * (1.0 + 0.5 * random.random()))


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())
