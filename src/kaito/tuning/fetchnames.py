"""The file names `kaito fetch-data` writes: safe, from the URL, unique, with an extension the trainer reads."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath
from urllib.parse import unquote

from yarl import URL

from kaito.tuning.fetchcontent import DATASET_EXTENSIONS

MAX_NAME_BYTES = 200
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
