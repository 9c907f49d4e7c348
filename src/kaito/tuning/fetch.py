"""`kaito fetch-data`: the tuning pod's init step, which downloads the Workspace's tuning.input.urls for the trainer.

Each URL is streamed to a hidden temporary file in the data directory and renamed into place once it is complete,
within its size limits, and looks like a dataset the trainer reads (parquet, JSON/JSONL or CSV). Connections go only
to addresses the `AddressPolicy` accepts, on the first request and on every redirect. Files are fetched one after
another; a file already in the directory under the same name is replaced (an init container may run again).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from kaito.tuning.addresses import AddressPolicy
from kaito.tuning.fetchdownload import DEFAULT_LIMITS, Limits, fetch_all
from kaito.tuning.fetchurls import FetchError, parse_url

__all__ = ["FetchError", "Limits", "add_fetch_data_arguments", "fetch_all", "run_fetch_data"]

DEFAULT_OUTPUT = Path("/mnt/data")


class UsageError(ValueError):
    """The command line or its URL list is unusable; nothing was fetched."""


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
