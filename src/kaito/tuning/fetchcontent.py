"""Whether a downloaded body is a dataset the trainer reads (parquet, JSON/JSONL or CSV), judged as it streams by."""

from __future__ import annotations

import codecs

KiB = 1 << 10
HEAD_BYTES = 64 * KiB
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"

# File extension -> the format the trainer reads it as (kaito.tuning.data).
DATASET_EXTENSIONS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


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
        if self._checking_utf8:
            self._decode(chunk, final=False)
        self.size += len(chunk)

    def finish(self) -> None:
        if self._checking_utf8:
            self._decode(b"", final=True)

    @property
    def _checking_utf8(self) -> bool:
        """Still decoding: no invalid byte found yet, and not a parquet file (which is binary)."""
        return self.utf8_error is None and not self.head.startswith(PARQUET_MAGIC)

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
