"""The node-local model cache: verified blobs by digest, one record per model, file locks, and LRU eviction.

Layout under the root (a hostPath such as /var/lib/kaito/models):
  blobs/<algorithm>/<hex>   a blob, complete and digest-verified (read-only); nothing else is ever put here
  tmp/<hex>.partial         a download in progress, written only under that blob's lock
  models/<hex>.json         a model (by manifest digest): its image, its blobs, and whether it was ever linked
                            by symbolic links; the file's mtime is when the model was last pulled (the LRU clock)
  models/<hex>.hold         the model's marker file (read-only), hard-linked into every output as its marker
  locks/                    flock(2) files: `cache` (records and eviction), `blob-<hex>`, `model-<hex>`

A model is *in use*, and never evicted, while (a) a pull holds its model lock (shared), or (b) its hold file has
a link count above one, or (c) it was ever linked into an output by symbolic links.

(b) is how the cache sees pods: a pod's model directory is an emptyDir on the node, its files are hard links to
the cache's blobs (same file system), and its marker is a hard link to the model's hold file. So each pod's
model directory adds one to that count, and the kubelet deleting the emptyDir with the pod takes it away again.
No record of outputs can do this: every pod sees its emptyDir at the same path (/mnt/model), so a path names no
pod. The blobs' own counts cannot either: models share blobs (one tokenizer in a family's models), and a blob
says nothing about which of them a pod runs; the hold file is one per model.
(c) is the fallback's price: where the output is on another file system, the files are symbolic links, whose
readers the cache cannot count, so such a model is kept until someone removes it from the cache by hand.
Eviction deletes only blobs no remaining model references and nothing outside the cache hard-links
(st_nlink == 1): deleting those would free no space.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kaito.api.modelimage import NODE_CACHE_DIR

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(NODE_CACHE_DIR)
MARKER = ".kaito-model.json"  # written into an output directory last: the model there is complete


class CacheError(Exception):
    """The cache cannot hold or link a model; the message names the path."""


@dataclass
class ModelRecord:
    image: str
    manifest: str
    blobs: dict[str, int]
    symlinked: bool = False  # linked into some output by symbolic links: the cache cannot tell when that ends

    def to_json(self) -> bytes:
        body = {"image": self.image, "manifest": self.manifest, "blobs": self.blobs, "symlinked": self.symlinked}
        return json.dumps(body, sort_keys=True).encode()


class ModelCache:
    """One cache directory; safe to share between threads and processes (all coordination is by flock)."""

    def __init__(self, root: Path, *, budget: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.budget = budget
        self.clock = clock
        for sub in ("blobs", "tmp", "models", "locks"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    # -- blobs
    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def partial_path(self, digest: str) -> Path:
        return self.root / "tmp" / f"{digest.partition(':')[2]}.partial"

    @contextlib.contextmanager
    def blob_lock(self, digest: str) -> Iterator[None]:
        """Held by whoever downloads this blob; a second puller waits here, then finds the blob stored."""
        with _flock(self._lock_file(f"blob-{digest.partition(':')[2]}"), fcntl.LOCK_EX):
            yield

    def commit(self, digest: str) -> Path:
        """Move a verified partial file into blobs/ (atomically, read-only). Call under the blob's lock."""
        partial, final = self.partial_path(digest), self.blob_path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(partial, 0o444)
        os.replace(partial, final)
        return final

    # -- models
    def record(self, manifest: str) -> ModelRecord | None:
        try:
            body = json.loads(self._record_path(manifest).read_bytes())
        except (OSError, ValueError):
            return None
        return ModelRecord(body["image"], body["manifest"], dict(body["blobs"]), bool(body.get("symlinked", False)))

    @contextlib.contextmanager
    def using(self, record: ModelRecord) -> Iterator[None]:
        """Mark the model in use and record it (so eviction keeps its blobs); a failed first pull leaves no record."""
        with _flock(self._lock_file(f"model-{_hex(record.manifest)}"), fcntl.LOCK_SH):
            with self._cache_lock():
                known = self.record(record.manifest)
                if known is not None:
                    record.symlinked = record.symlinked or known.symlinked
                self._write_record(record)
            try:
                yield
            except BaseException:
                if known is None:
                    with self._cache_lock():
                        self._record_path(record.manifest).unlink(missing_ok=True)
                raise
            with self._cache_lock():
                self._write_record(record)  # whether it is symlinked now, and a fresh mtime: the LRU clock

    def has_model(self, manifest: str) -> bool:
        record = self.record(manifest)
        return record is not None and all(self.has_blob(digest) for digest in record.blobs)

    # -- output directories
    def link_into(self, output: Path, files: list[tuple[str, str]], *, manifest: str, marker: bytes) -> str:
        """Make output/<title> the blob of each (title, digest): each file appears whole, the marker last.

        The marker is a hard link to the model's hold file (written with `marker` when missing), so the hold
        file's link count tells how many outputs use the model.
        Hard links where the output is on the cache's file system, else symbolic links; returns which (the caller
        sets the record's `symlinked` from it, before the record is written at the end of `using`).
        """
        output.mkdir(parents=True, exist_ok=True)
        kind = "hardlink"
        for title, digest in files:
            target = output / PurePosixPath(title)
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = self.blob_path(digest)
            if target.exists() and not target.is_symlink() and os.path.samefile(target, blob):
                continue
            temporary = target.parent / f".{target.name}.{secrets.token_hex(4)}.link"
            try:
                os.link(blob, temporary)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise CacheError(f"cannot link {blob} into {output}: {exc}") from exc
                os.symlink(blob, temporary)
                kind = "symlink"
            os.replace(temporary, target)
        self._link_marker(output, manifest, marker, hard=kind == "hardlink")
        return kind

    def _link_marker(self, output: Path, manifest: str, marker: bytes, *, hard: bool) -> None:
        hold = self._hold_path(manifest)
        if not hold.exists():
            _atomic_write(hold, marker, mode=0o444)
        target = output / MARKER
        if not hard:
            _atomic_write(target, marker)
            return
        if target.exists() and os.path.samefile(target, hold):
            return
        temporary = output / f".{MARKER}.{secrets.token_hex(4)}.link"
        try:
            os.link(hold, temporary)
        except OSError as exc:
            raise CacheError(f"cannot link {hold} into {output}: {exc}") from exc
        os.replace(temporary, target)

    # -- eviction
    def size(self) -> int:
        return sum(path.stat().st_size for path in (self.root / "blobs").rglob("*") if path.is_file())

    def evict(self, *, room_for: int = 0) -> list[str]:
        """Evict until the blobs fit the budget less room_for: stale partials, unreferenced blobs, then LRU models."""
        if self.budget is None:
            return []
        evicted: list[str] = []
        with self._cache_lock():
            self._drop_stale_partials()
            limit = self.budget - room_for
            used = self.size()
            records = sorted(self._records(), key=lambda item: item[0])
            referenced = {digest for _, record in records for digest in record.blobs}
            for blob in [p for p in (self.root / "blobs").rglob("*") if p.is_file()]:
                if used <= limit:
                    break
                if f"{blob.parent.name}:{blob.name}" not in referenced:
                    used -= self._drop_blob(blob)
            gone: set[int] = set()  # the records evicted so far: their blobs are no one else's reason to stay
            for index, (_, record) in enumerate(records):
                if used <= limit:
                    break
                if self._in_use(record):
                    continue
                self._record_path(record.manifest).unlink(missing_ok=True)
                self._hold_path(record.manifest).unlink(missing_ok=True)
                gone.add(index)
                others = {d for j, (_, kept) in enumerate(records) if j not in gone for d in kept.blobs}
                for digest in set(record.blobs) - others:
                    used -= self._drop_blob(self.blob_path(digest))
                evicted.append(record.image)
                log.info("evicted %s (%s) from the model cache %s", record.image, record.manifest, self.root)
        return evicted

    def _in_use(self, record: ModelRecord) -> bool:
        lock = self._lock_file(f"model-{_hex(record.manifest)}")
        with _try_flock(lock, fcntl.LOCK_EX) as free:
            if not free:
                return True  # a pull of it is running
        return record.symlinked or _link_count(self._hold_path(record.manifest)) > 1

    def _drop_blob(self, blob: Path) -> int:
        """Delete a blob nothing else links to; returns the bytes freed (0 when it is linked elsewhere)."""
        try:
            stat = blob.stat()
        except FileNotFoundError:
            return 0
        if stat.st_nlink > 1:
            return 0
        blob.unlink(missing_ok=True)
        return stat.st_size

    def _drop_stale_partials(self) -> None:
        for partial in (self.root / "tmp").glob("*.partial"):
            with _try_flock(self._lock_file(f"blob-{partial.name.removesuffix('.partial')}"), fcntl.LOCK_EX) as free:
                if free:
                    partial.unlink(missing_ok=True)

    def _records(self) -> list[tuple[float, ModelRecord]]:
        found = []
        for path in (self.root / "models").glob("*.json"):
            record = self.record(path.stem.replace("-", ":", 1))
            with contextlib.suppress(FileNotFoundError):
                if record is not None:
                    found.append((path.stat().st_mtime, record))
        return found

    def _record_path(self, manifest: str) -> Path:
        algorithm, _, hexdigest = manifest.partition(":")
        return self.root / "models" / f"{algorithm}-{hexdigest}.json"

    def _hold_path(self, manifest: str) -> Path:
        return self._record_path(manifest).with_suffix(".hold")

    def _write_record(self, record: ModelRecord) -> None:
        path = self._record_path(record.manifest)
        _atomic_write(path, record.to_json())
        now = self.clock()
        os.utime(path, (now, now))

    def _lock_file(self, name: str) -> Path:
        return self.root / "locks" / f"{name}.lock"

    def _cache_lock(self) -> contextlib.AbstractContextManager[None]:
        return _flock(self._lock_file("cache"), fcntl.LOCK_EX)


def _link_count(path: Path) -> int:
    try:
        return path.stat().st_nlink
    except FileNotFoundError:
        return 0


def _hex(digest: str) -> str:
    return digest.partition(":")[2]


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, mode)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


@contextlib.contextmanager
def _try_flock(path: Path, mode: int) -> Iterator[bool]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


def _atomic_write(path: Path, body: bytes, *, mode: int | None = None) -> None:
    temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    temporary.write_bytes(body)
    if mode is not None:
        os.chmod(temporary, mode)
    os.replace(temporary, path)
