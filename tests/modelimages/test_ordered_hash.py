"""The in-order hasher of a ranged download: the file's digest whatever order its parts are written in."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

from kaito.modelimages.ordered_hash import MarkingSink, OrderedHasher


def _write_part(path: Path, hasher: OrderedHasher, index: int, body: bytes, piece: int) -> None:
    start, end = hasher.parts[index]
    with io.FileIO(path, "r+") as handle:
        handle.seek(start)
        sink = MarkingSink(handle, hasher, index)
        for offset in range(start, end, piece):
            sink.write(memoryview(body)[offset : min(end, offset + piece)])


def test_parts_written_last_first_hash_to_the_files_digest(tmp_path: Path) -> None:
    body = os.urandom(3 * 1024 * 1024 + 12345)
    path = tmp_path / "blob.partial"
    path.write_bytes(b"\0" * len(body))
    step = len(body) // 3 + 1
    hasher = OrderedHasher(path, [(start, min(len(body), start + step)) for start in range(0, len(body), step)])
    writers = [threading.Thread(target=_write_part, args=(path, hasher, index, body, 70_000)) for index in (2, 1, 0)]
    for writer in writers:
        writer.start()
    digest = hasher.hash("sha256")
    for writer in writers:
        writer.join()
    assert digest == f"sha256:{hashlib.sha256(body).hexdigest()}"


def test_a_writer_that_gives_up_ends_the_hash_with_no_digest(tmp_path: Path) -> None:
    path = tmp_path / "blob.partial"
    path.write_bytes(b"\0" * 2048)
    hasher = OrderedHasher(path, [(0, 1024), (1024, 2048)])
    _write_part(path, hasher, 0, b"x" * 2048, 1024)
    hasher.wrote(1, 100)
    failing = threading.Thread(target=hasher.abandon)
    failing.start()
    assert hasher.hash("sha256") == ""
    failing.join()
