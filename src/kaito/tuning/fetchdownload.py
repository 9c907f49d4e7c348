"""Downloading URLs one by one: every hop checked by the address policy, retries, size limits, atomic renames."""

from __future__ import annotations

import asyncio
import email.utils
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from kaito.tuning.addresses import AddressPolicy, AddressRefusedError, PolicyResolver
from kaito.tuning.fetchcontent import Sniffer, dataset_format, looks_like_html
from kaito.tuning.fetchnames import choose_name, name_from_url
from kaito.tuning.fetchurls import FetchError, check_literal_address, display_url, parse_url

GiB = 1 << 30
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
BACKOFF_BASE_S = 0.5
MAX_RETRY_AFTER_S = 30.0
CHUNK_BYTES = 1 << 20
HTML_PAGE = "returned an HTML page, not a dataset; is the URL a download link?"

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Log = Callable[[str], None]


class RetryableError(FetchError):
    """A failure worth another attempt: a connection error, a timeout, HTTP 429 or 5xx."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limits:
    """Per-file and total size limits, retries after the first attempt, the per-attempt idle timeout, redirects."""

    max_bytes: int = 10 * GiB
    max_total_bytes: int = 50 * GiB
    retries: int = 3
    timeout_s: float = 60.0
    max_redirects: int = 5

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_total_bytes <= 0:
            raise ValueError("size limits must be positive")
        if self.retries < 0 or self.max_redirects < 0:
            raise ValueError("retries and redirects must not be negative")
        if self.timeout_s <= 0:
            raise ValueError("the timeout must be positive")


DEFAULT_LIMITS = Limits()


def log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped at MAX_RETRY_AFTER_S."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


@dataclass
class _Hop:
    """Where an attempt is: the URL asked for, the URL being requested now, and the one that redirected to it."""

    url: URL
    current: URL
    via: URL | None = None

    def describe(self) -> str:
        if self.via is None:
            return display_url(self.url)
        if self.via == self.url:
            return f"{display_url(self.url)}: redirect to {display_url(self.current)}"
        return f"{display_url(self.url)}: redirect from {display_url(self.via)} to {display_url(self.current)}"


def _describe_error(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ClientError):
        return f"timed out (no progress for {timeout_s:g} s)"
    return str(exc) or type(exc).__name__


def _make_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)


def _open_part_file(directory: Path) -> tuple[Path, BinaryIO]:
    """A new hidden temporary file in `directory` (the trainer skips dot files) and its open handle."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".fetch-", suffix=".part")
    return Path(name), os.fdopen(fd, "wb")


def _move_into_place(part: Path, target: Path) -> None:
    part.chmod(0o644)  # mkstemp makes it 0600; the trainer may run as another user
    os.replace(part, target)


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)


@dataclass
class _Fetcher:
    session: aiohttp.ClientSession
    output: Path
    policy: AddressPolicy
    limits: Limits
    sleep: Sleep
    clock: Clock
    log: Log
    taken: set[str] = field(default_factory=set)
    total_bytes: int = 0

    async def fetch(self, index: int, url: URL) -> Path:
        started = self.clock()
        attempt = 0
        while True:
            try:
                path, size = await self._attempt(index, url)
            except RetryableError as exc:
                attempt += 1
                if attempt > self.limits.retries:
                    plural = "s" if attempt > 1 else ""
                    raise FetchError(f"{exc} (gave up after {attempt} attempt{plural})") from None
                delay = exc.retry_after if exc.retry_after is not None else BACKOFF_BASE_S * 2 ** (attempt - 1)
                self.log(f"retrying {display_url(url)} in {delay:g} s: {exc}")
                await self.sleep(delay)
                continue
            self.log(f"fetched {display_url(url)} -> {path} ({size} bytes, {self.clock() - started:.2f} s)")
            return path

    async def _attempt(self, index: int, url: URL) -> tuple[Path, int]:
        hop = _Hop(url, url)
        try:
            return await self._follow(index, hop)
        except AddressRefusedError as exc:
            where = hop.describe() + (" refused" if hop.via is not None else "")
            raise FetchError(f"{where}: {exc}") from None
        except (aiohttp.ClientSSLError, aiohttp.InvalidURL) as exc:
            raise FetchError(self._failure(hop, exc)) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise RetryableError(self._failure(hop, exc)) from None
        except aiohttp.ClientError as exc:
            raise FetchError(self._failure(hop, exc)) from None

    def _failure(self, hop: _Hop, exc: BaseException) -> str:
        return f"{hop.describe()}: {_describe_error(exc, self.limits.timeout_s)}"

    async def _follow(self, index: int, hop: _Hop) -> tuple[Path, int]:
        for _ in range(self.limits.max_redirects + 1):
            check_literal_address(hop.current, self.policy)
            async with self.session.get(hop.current, allow_redirects=False) as response:
                location = response.headers.get("Location")
                if response.status not in REDIRECT_STATUSES or location is None:
                    return await self._save(index, hop, response)
            hop.via, hop.current = hop.current, self._redirect_target(hop, location)
        raise FetchError(f"{display_url(hop.url)}: more than {self.limits.max_redirects} redirects")

    def _redirect_target(self, hop: _Hop, location: str) -> URL:
        try:
            target = hop.current.join(URL(location))
        except ValueError as exc:
            raise FetchError(f"{hop.describe()}: bad redirect Location {location!r}: {exc}") from None
        try:
            return parse_url(str(target))
        except FetchError as exc:
            raise FetchError(f"{display_url(hop.url)}: redirect to {display_url(target)} refused: {exc}") from None

    async def _save(self, index: int, hop: _Hop, response: aiohttp.ClientResponse) -> tuple[Path, int]:
        where = display_url(hop.url)
        if response.status != 200:
            message = f"{hop.describe()}: HTTP {response.status} {response.reason or ''}".rstrip()
            if response.status == 429 or response.status >= 500:
                raise RetryableError(message, retry_after_seconds(response.headers.get("Retry-After")))
            raise FetchError(message)
        if response.content_type == "text/html":
            raise FetchError(f"{where} {HTML_PAGE}")
        limit, limit_name = self._limit()
        if response.content_length is not None and response.content_length > limit:
            raise FetchError(f"{where}: Content-Length {response.content_length} bytes exceeds {limit_name}")
        part, sink = _open_part_file(self.output)
        try:
            with sink:
                sniffer = await self._stream(response, sink, where, limit, limit_name)
            name = self._check_and_name(index, hop.url, response.content_type, sniffer, where)
            target = self.output / name
            _move_into_place(part, target)
        except BaseException:
            _discard(part)
            raise
        self.taken.add(name)
        self.total_bytes += sniffer.size
        return target, sniffer.size

    def _limit(self) -> tuple[int, str]:
        remaining = self.limits.max_total_bytes - self.total_bytes
        if remaining < self.limits.max_bytes:
            return remaining, f"the remaining total limit of {remaining} bytes (--max-total-bytes)"
        return self.limits.max_bytes, f"the per-file limit of {self.limits.max_bytes} bytes (--max-bytes)"

    async def _stream(
        self, response: aiohttp.ClientResponse, sink: BinaryIO, where: str, limit: int, limit_name: str
    ) -> Sniffer:
        sniffer = Sniffer()
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            if sniffer.size + len(chunk) > limit:
                raise FetchError(f"{where}: the body exceeds {limit_name}; stopped reading")
            sniffer.feed(chunk)
            sink.write(chunk)
        sniffer.finish()
        return sniffer

    def _check_and_name(self, index: int, url: URL, content_type: str, sniffer: Sniffer, where: str) -> str:
        if sniffer.size == 0:
            raise FetchError(f"{where} returned an empty body")
        if looks_like_html(sniffer.head):
            raise FetchError(f"{where} {HTML_PAGE}")
        suffix = PurePosixPath(name_from_url(url) or "").suffix
        try:
            found = dataset_format(suffix, sniffer)
        except ValueError as exc:
            raise FetchError(f"{where}: the body {exc}") from None
        return choose_name(url, index, content_type, found, sniffer.head, self.taken)


async def fetch_all(
    urls: Sequence[str],
    output: Path,
    *,
    policy: AddressPolicy,
    limits: Limits = DEFAULT_LIMITS,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    log: Log = log_to_stderr,
    resolver: AbstractResolver | None = None,
) -> list[Path]:
    """Download every URL into `output`, one after another, and return the files written, in URL order.

    `resolver` is the name resolver the policy wraps (aiohttp's threaded getaddrinfo resolver by default).
    Raises FetchError at the first URL that cannot be fetched (files fetched before it stay), OSError when
    `output` cannot be written.
    """
    parsed = [parse_url(url) for url in urls]
    _make_directory(output)
    connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy, resolver), use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=None, connect=limits.timeout_s, sock_read=limits.timeout_s)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers={"User-Agent": "kaito-fetch-data"}, trust_env=False
    ) as session:
        fetcher = _Fetcher(session, output, policy, limits, sleep, clock, log)
        return [await fetcher.fetch(index, url) for index, url in enumerate(parsed, start=1)]
