"""Hash a file in order while its byte ranges are still being written in parallel, instead of a pass after them."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

HASH_CHUNK = 256 * 1024  # read back from the page cache in pieces that stay in the L2 cache for the hash
WAKE_BATCH = 8 * 1024 * 1024  # a hasher that caught up sleeps until this much more is written (or the part ends)


class OrderedHasher:
    """Follows the parts of one file (each written front to back, any number at once) and hashes what is there.

    Writers report the bytes they wrote to a part with `wrote`; `hash` reads the file from the start, never
    past what the part it is in has reported, and returns the digest once every part is complete. A writer that
    fails calls `abandon`, and `hash` returns "" at once.
    """

    def __init__(self, path: Path, parts: list[tuple[int, int]]) -> None:
        self.path = path
        self.parts = parts  # (start, end) of each part, in file order, covering the file
        self._written = [0] * len(parts)
        self._abandoned = False
        self._wake: tuple[int, int] | None = None  # (part, end): the hasher sleeps until that part reaches end
        self._changed = threading.Condition()

    def wrote(self, part: int, count: int) -> None:
        with self._changed:
            self._written[part] += count
            if self._wake is not None and part == self._wake[0] and self._written[part] >= self._wake[1]:
                self._changed.notify()

    def abandon(self) -> None:
        with self._changed:
            self._abandoned = True
            self._changed.notify_all()

    def hash(self, algorithm: str) -> str:
        """'algorithm:hex' of the whole file, or "" when a writer abandoned it."""
        hasher = hashlib.new(algorithm)
        buffer = memoryview(bytearray(HASH_CHUNK))
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            for index, (start, end) in enumerate(self.parts):
                offset = start
                while offset < end:
                    ready = self._ready(index, offset)
                    if ready is None:
                        return ""
                    while offset < ready:
                        count = os.preadv(descriptor, [buffer[: min(HASH_CHUNK, ready - offset)]], offset)
                        if not count:
                            raise OSError(f"{self.path} ended at byte {offset}, before the {end} it was written to")
                        hasher.update(buffer[:count])
                        offset += count
        finally:
            os.close(descriptor)
        return f"{hasher.name}:{hasher.hexdigest()}"

    def _ready(self, index: int, offset: int) -> int | None:
        """Wait until part index has bytes past offset; the end of what it holds (None: abandoned)."""
        start, end = self.parts[index]
        with self._changed:
            if start + self._written[index] <= offset:
                self._wake = (index, min(end, offset + WAKE_BATCH) - start)
                while not self._abandoned and start + self._written[index] < start + self._wake[1]:
                    self._changed.wait()
                self._wake = None
            return None if self._abandoned else start + self._written[index]


class MarkingSink:
    """An unbuffered handle on the file, at a part's position, that tells the hasher what it has written.

    Unbuffered, so that what the hasher is told of is in the file already, where its reads find it.
    """

    def __init__(self, sink: io.FileIO, hasher: OrderedHasher, part: int) -> None:
        self.sink, self.hasher, self.part = sink, hasher, part

    def write(self, data: memoryview, /) -> int:
        done = 0
        while done < len(data):
            done += self.sink.write(data[done:])
        self.hasher.wrote(self.part, done)
        return done
