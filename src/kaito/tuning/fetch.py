"""`kaito fetch-data`: the tuning pod's init step, which downloads the Workspace's tuning.input.urls for the trainer.

Each URL is streamed to a hidden temporary file in the data directory and renamed into place once it is complete,
within its size limits, and looks like a dataset the trainer reads (parquet, JSON/JSONL or CSV). Connections go only
to addresses the `AddressPolicy` accepts, on the first request and on every redirect. Files are fetched one after
another; a file already in the directory under the same name is replaced (an init container may run again).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import email.utils
import os
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import unquote

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from kaito.tuning.addresses import AddressPolicy, AddressRefusedError, PolicyResolver, parse_address

KiB = 1 << 10
GiB = 1 << 30
DEFAULT_OUTPUT = Path("/mnt/data")
SCHEMES = ("http", "https")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
BACKOFF_BASE_S = 0.5
MAX_RETRY_AFTER_S = 30.0
CHUNK_BYTES = 1 << 20
HEAD_BYTES = 64 * KiB
MAX_NAME_BYTES = 200
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"

# File extension -> the format the trainer reads it as (kaito.tuning.data).
DATASET_EXTENSIONS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
EXTENSION_BY_CONTENT_TYPE = {
    "application/vnd.apache.parquet": ".parquet",
    "application/x-parquet": ".parquet",
    "application/parquet": ".parquet",
    "application/json": ".json",
    "application/jsonl": ".jsonl",
    "application/jsonlines": ".jsonl",
    "application/x-jsonlines": ".jsonl",
    "application/x-ndjson": ".jsonl",
    "text/csv": ".csv",
}

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Log = Callable[[str], None]


class FetchError(Exception):
    """A URL could not be fetched; the message names the URL and what was wrong."""


class RetryableError(FetchError):
    """A failure worth another attempt: a connection error, a timeout, HTTP 429 or 5xx."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UsageError(ValueError):
    """The command line or its URL list is unusable; nothing was fetched."""


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


# URLs


def display_url(url: str | URL) -> str:
    """A URL as logs show it: without a password, and with query values hidden (they often carry signatures)."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except ValueError:
        return str(url)
    if parsed.password is not None:
        parsed = parsed.with_password(None)
    parsed = parsed.with_fragment(None)
    if not parsed.raw_query_string:
        return str(parsed)
    keys = [part.split("=", 1)[0] for part in parsed.raw_query_string.split("&") if part]
    return f"{parsed.with_query(None)}?" + "&".join(f"{key}=..." for key in keys)


def parse_url(raw: str) -> URL:
    """An absolute http(s) URL with a host; FetchError names the URL and, for other schemes, the scheme."""
    try:
        url = URL(raw.strip())
    except ValueError as exc:
        raise FetchError(f"{raw!r} is not a valid URL: {exc}") from None
    scheme = url.scheme.lower()
    if not scheme:
        raise FetchError(f"{display_url(url)}: not an absolute URL; expected http:// or https://")
    if scheme not in SCHEMES:
        raise FetchError(f"{display_url(url)}: scheme {scheme!r} is not supported; only http and https are fetched")
    if not url.raw_host:
        raise FetchError(f"{display_url(url)}: the URL has no host")
    return url


def check_literal_address(url: URL, policy: AddressPolicy) -> None:
    """Apply the policy to a URL whose host is an IP address (aiohttp connects to those without resolving)."""
    host = url.raw_host or ""
    try:
        address = parse_address(host)
    except ValueError:
        return  # a name: PolicyResolver checks what it resolves to
    policy.check(host, address)


# File names


_UNSAFE_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")
_DOT_RUNS = re.compile(r"\.{2,}")


def sanitise_name(name: str) -> str | None:
    """A safe file name: no path separators or control characters, no `..`, no leading dot; None if nothing is left."""
    name = _DOT_RUNS.sub(".", _UNSAFE_CHARS.sub("_", name)).strip().lstrip(".").strip()
    if not name:
        return None
    if len(name.encode()) > MAX_NAME_BYTES:
        suffix = PurePosixPath(name).suffix
        suffix = suffix if len(suffix) <= 16 else ""
        stem = name[: len(name) - len(suffix)].encode()[: MAX_NAME_BYTES - len(suffix.encode())]
        name = stem.decode("utf-8", "ignore") + suffix
    return name


def name_from_url(url: str | URL) -> str | None:
    """The sanitised, percent-decoded last path segment of a URL (never its query), or None if it has none."""
    parsed = url if isinstance(url, URL) else URL(url)
    return sanitise_name(unquote(parsed.raw_path.rsplit("/", 1)[-1]))


def unique_name(name: str, taken: Iterable[str]) -> str:
    """`name`, or `name` with a -1, -2 ... suffix before its extension when already taken."""
    used = set(taken)
    if name not in used:
        return name
    path = PurePosixPath(name)
    stem, suffix = (path.stem, path.suffix) if path.stem else (name, "")
    number = 1
    while f"{stem}-{number}{suffix}" in used:
        number += 1
    return f"{stem}-{number}{suffix}"


def choose_name(url: URL, index: int, content_type: str, dataset_format: str, head: bytes, taken: Iterable[str]) -> str:
    """The file name for a download: the URL's last segment or `data-<index>`, with a dataset extension, unique."""
    name = name_from_url(url) or f"data-{index}"
    if DATASET_EXTENSIONS.get(PurePosixPath(name).suffix.lower()) != dataset_format:
        name += _extension_for(dataset_format, content_type, head)
    return unique_name(name, taken)


def _extension_for(dataset_format: str, content_type: str, head: bytes) -> str:
    by_type = EXTENSION_BY_CONTENT_TYPE.get(content_type)
    if by_type is not None and DATASET_EXTENSIONS[by_type] == dataset_format:
        return by_type
    if dataset_format == "json":
        return ".json" if head.lstrip()[:1] == b"[" else ".jsonl"
    return f".{dataset_format}"


# Content checks


class Sniffer:
    """Watches a body go by: its size, first bytes, last four bytes, and whether it is valid UTF-8."""

    def __init__(self) -> None:
        self.size = 0
        self.head = b""
        self.tail = b""
        self.utf8_error: str | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        self.tail = (self.tail + chunk)[-len(PARQUET_MAGIC) :]
        if self.utf8_error is None and not self.head.startswith(PARQUET_MAGIC):
            self._decode(chunk, final=False)
        self.size += len(chunk)

    def finish(self) -> None:
        if self.utf8_error is None and not self.head.startswith(PARQUET_MAGIC):
            self._decode(b"", final=True)

    def _decode(self, chunk: bytes, *, final: bool) -> None:
        pending = len(self._decoder.getstate()[0])  # bytes of a character cut off by the previous chunk
        try:
            self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            self.utf8_error = f"invalid UTF-8 at byte {self.size - pending + exc.start}"


def looks_like_html(head: bytes) -> bool:
    start = head.removeprefix(UTF8_BOM).lstrip()[:16].lower()
    return start.startswith((b"<!doctype html", b"<html"))


def dataset_format(suffix: str, sniffer: Sniffer) -> str:
    """The format ("parquet", "json" or "csv") a body holds; ValueError says what is wrong with it.

    A file named with a dataset extension must hold that format; any other name is judged by content alone.
    """
    expected = DATASET_EXTENSIONS.get(suffix.lower())
    if expected is not None:
        problem = _format_problem(expected, sniffer, by_content=False)
        if problem is not None:
            raise ValueError(f"is named *{suffix} but {problem}")
        return expected
    for candidate in ("parquet", "json", "csv"):
        if _format_problem(candidate, sniffer, by_content=True) is None:
            return candidate
    raise ValueError("does not look like a dataset the trainer can read (parquet, JSON/JSONL or CSV)")


def _format_problem(dataset_format: str, sniffer: Sniffer, *, by_content: bool) -> str | None:
    head = sniffer.head
    if dataset_format == "parquet":
        if not head.startswith(PARQUET_MAGIC):
            return "does not start with the parquet magic PAR1"
        if sniffer.size < 2 * len(PARQUET_MAGIC) + 4 or sniffer.tail != PARQUET_MAGIC:
            return "does not end with the parquet magic PAR1 (truncated?)"
        return None
    if sniffer.utf8_error is not None:
        return f"is not valid UTF-8 ({sniffer.utf8_error})"
    if dataset_format == "json":
        if head.startswith(UTF8_BOM):
            return "starts with a UTF-8 byte-order mark, not '{' or '['"
        return None if head.lstrip()[:1] in (b"{", b"[") else "does not start with '{' or '['"
    header = head.split(b"\n", 1)[0].strip()
    if not header:
        return "has no header line"
    if by_content and b"," not in header and b"\t" not in header:
        return "has no comma- or tab-separated header line"
    return None


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


# Downloading


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
            raise FetchError(f"{hop.describe()}: {_describe_error(exc, self.limits.timeout_s)}") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise RetryableError(f"{hop.describe()}: {_describe_error(exc, self.limits.timeout_s)}") from None
        except aiohttp.ClientError as exc:
            raise FetchError(f"{hop.describe()}: {_describe_error(exc, self.limits.timeout_s)}") from None

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
            raise FetchError(f"{where} returned an HTML page, not a dataset; is the URL a download link?")
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
            raise FetchError(f"{where} returned an HTML page, not a dataset; is the URL a download link?")
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


# Command line


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?))?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """A positive byte count: `1048576`, `500Mi`/`500MiB` (powers of 1024), `2G`/`2GB` (powers of 1000)."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 10Gi, 500M, 1048576)")
    number, unit, binary = match.groups()
    power = "kmgt".index(unit.lower()) + 1 if unit else 0
    value = int(float(number) * (1024 if binary else 1000) ** power)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def add_fetch_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", dest="urls", action="append", metavar="URL", help="an http(s) URL to download")
    parser.add_argument(
        "--urls-file",
        type=Path,
        metavar="FILE",
        help="a file of URLs, one per line (# comments allowed); with neither --url nor --urls-file, "
        "the space-separated DATA_URLS environment variable is read",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="directory to write into (%(default)s)")
    parser.add_argument(
        "--max-bytes", type=parse_size, default=DEFAULT_LIMITS.max_bytes, metavar="SIZE", help="per-file limit (10Gi)"
    )
    parser.add_argument(
        "--max-total-bytes",
        type=parse_size,
        default=DEFAULT_LIMITS.max_total_bytes,
        metavar="SIZE",
        help="limit for all files together (50Gi)",
    )
    parser.add_argument(
        "--retries",
        type=_non_negative_int,
        default=DEFAULT_LIMITS.retries,
        help="retries after connection errors, timeouts, HTTP 429 and 5xx (%(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_LIMITS.timeout_s,
        metavar="SECONDS",
        help="per attempt: to connect, and to wait for data while reading (%(default)s)",
    )
    parser.add_argument(
        "--allow-private-addresses",
        action="store_true",
        help="allow private, loopback, link-local and carrier-grade NAT addresses (e.g. an in-cluster server); "
        "cloud metadata addresses (169.254.169.254, fd00:ec2::254, 168.63.129.16) stay refused",
    )


def collect_urls(urls: Sequence[str] | None, urls_file: Path | None, environ: Mapping[str, str]) -> list[str]:
    """The URLs to fetch, in order, each once: --url and --urls-file, or else DATA_URLS."""
    found = list(urls or [])
    if urls_file is not None:
        try:
            lines = urls_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --urls-file {urls_file}: {exc}") from None
        found += [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if urls is None and urls_file is None:
        found = environ.get("DATA_URLS", "").split()
    return list(dict.fromkeys(found))


def _fail(message: str, code: int) -> int:
    print(f"kaito fetch-data: {' '.join(message.splitlines())}", file=sys.stderr, flush=True)
    return code


def run_fetch_data(args: argparse.Namespace) -> int:
    """Run `kaito fetch-data`: 0 when every URL was fetched, 1 when one failed, 2 for bad flags or no URLs."""
    try:
        urls = collect_urls(args.urls, args.urls_file, os.environ)
        for url in urls:
            parse_url(url)
        limits = Limits(
            max_bytes=args.max_bytes, max_total_bytes=args.max_total_bytes, retries=args.retries, timeout_s=args.timeout
        )
    except (UsageError, FetchError, ValueError) as exc:
        return _fail(str(exc), 2)
    if not urls:
        return _fail("no URLs to fetch; pass --url or --urls-file, or set DATA_URLS", 2)
    policy = AddressPolicy(allow_private=args.allow_private_addresses)
    try:
        asyncio.run(fetch_all(urls, args.output, policy=policy, limits=limits))
    except FetchError as exc:
        return _fail(str(exc), 1)
    except OSError as exc:
        return _fail(f"cannot write to {args.output}: {exc}", 1)
    return 0
