"""Pull a model image into the node's cache and link it into an output directory: parallel, ranged, verified.

Blobs the cache holds are not downloaded again; a blob another pull is downloading is waited for, not fetched
twice. Every byte is hashed before its blob enters the cache, and files appear in the output whole (linked
under a temporary name, then renamed), with the marker file last.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import requests

from kaito.api.modelimage import ANNOTATION_TITLE, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, ModelImageConfig
from kaito.modelimages.cache import ModelCache, ModelRecord
from kaito.modelimages.ordered_hash import MarkingSink, OrderedHasher
from kaito.modelimages.progress import Progress, Snapshot, TransferMetrics
from kaito.modelimages.sessions import SessionPool
from kaito.oci.blobs import Sink
from kaito.oci.client import OCI_MANIFEST, RETRY_DELAYS_S, Auth
from kaito.oci.errors import OciError
from kaito.oci.reference import DIGEST_RE, parse_reference
from kaito.oci.scheme import Scheme

log = logging.getLogger(__name__)

DEFAULT_PARALLEL = 4
RANGE_MIN_PART = 32 * 1024 * 1024  # a blob is split into byte ranges only in parts at least this large


@dataclass(frozen=True)
class Layer:
    title: str
    digest: str
    size: int


@dataclass(frozen=True)
class PulledModel:
    """What a pull did: the manifest, the model's sizing facts, and how many blobs and bytes it downloaded."""

    image: str
    digest: str
    config: ModelImageConfig
    output: Path
    downloaded_blobs: int
    downloaded_bytes: int
    link: str


def pull_model(
    image: str,
    output: Path,
    *,
    cache: ModelCache,
    auth: Auth,
    plain_http: bool = False,
    insecure: Collection[str] = (),
    ca_file: Path | None = None,
    parallel: int = DEFAULT_PARALLEL,
    range_part: int = RANGE_MIN_PART,
    metrics: TransferMetrics | None = None,
    clock: Callable[[], float] = time.monotonic,
    report: Callable[[Snapshot], None] | None = None,
) -> PulledModel:
    """Pull image into the cache (downloading only what it lacks) and link its files into output.

    A blob of at least two range_part bytes is fetched in byte ranges (when the registry serves them) while
    fewer large blobs than parallel streams remain to share them. `report` takes the progress at intervals
    (instead of the log). The registry is spoken to in HTTPS, or plain HTTP by Docker's rule (`Scheme.docker_rule`).
    """
    ref = parse_reference(image)
    scheme = Scheme.docker_rule(ref.registry, plain_http=plain_http, insecure=insecure)
    progress = Progress(direction="pull", image=str(ref), metrics=metrics, clock=clock, report=report)
    with SessionPool(ref, auth, scheme=scheme, ca_file=ca_file, purpose="pull") as pool:
        digest, manifest = _manifest(pool, ref.digest, str(ref))
        layers = _layers(manifest, str(ref))
        config_descriptor = manifest["config"]
        record = ModelRecord(
            image=str(ref),
            manifest=digest,
            blobs={config_descriptor["digest"]: int(config_descriptor["size"]), **{x.digest: x.size for x in layers}},
        )
        with cache.using(record):
            missing = {d: size for d, size in record.blobs.items() if not cache.has_blob(d)}
            progress.expect(sum(missing.values()))
            cache.evict(room_for=sum(missing.values()))
            fetched = _Downloader(pool, cache, progress, parallel=parallel, range_part=range_part).run(missing)
            config = ModelImageConfig.from_blob(cache.blob_path(config_descriptor["digest"]).read_bytes())
            marker = json.dumps({"image": str(ref), "digest": digest}).encode()
            files = [(layer.title, layer.digest) for layer in layers]
            link = cache.link_into(output, files, manifest=digest, marker=marker)
            record.symlinked = record.symlinked or link == "symlink"  # recorded as `using` ends
    cache.evict()
    snapshot = progress.finish()
    return PulledModel(str(ref), digest, config, output, fetched, snapshot.done, link)


def _manifest(pool: SessionPool, pinned: str | None, image: str) -> tuple[str, dict[str, Any]]:
    session = pool.session()
    digest, document = session.get_manifest_document(pool.ref.manifest_key, pinned, "model image", OCI_MANIFEST)
    kind = document.get("artifactType") or (document.get("config") or {}).get("mediaType")
    if kind != ARTIFACT_TYPE or (document.get("config") or {}).get("mediaType") != CONFIG_MEDIA_TYPE:
        raise OciError(f"{image} is not a kaito model image (artifact type {kind!r}, expected {ARTIFACT_TYPE})")
    return digest, document


def _layers(manifest: dict[str, Any], image: str) -> list[Layer]:
    layers = []
    for entry in manifest.get("layers") or []:
        digest = str(entry.get("digest", ""))
        title = str((entry.get("annotations") or {}).get(ANNOTATION_TITLE, ""))
        if not DIGEST_RE.fullmatch(digest):
            raise OciError(f"manifest of {image} has a layer without a sha256/sha512 digest: {entry!r}")
        layers.append(Layer(_safe_title(title, image), digest, int(entry.get("size", -1))))
    if not layers:
        raise OciError(f"{image} holds no files")
    config_digest = str((manifest.get("config") or {}).get("digest", ""))
    if not DIGEST_RE.fullmatch(config_digest):
        raise OciError(f"manifest of {image} has a config without a digest")
    return layers


def _safe_title(title: str, image: str) -> str:
    path = PurePosixPath(title)
    if not title or path.is_absolute() or any(part in ("", ".", "..") for part in title.split("/")) or "\\" in title:
        raise OciError(f"{image} has a layer titled {title!r}; refusing to write it (titles are relative paths)")
    return title


class _Downloader:
    """Downloads blobs into the cache: several at once, a large one in byte ranges when there are few."""

    def __init__(
        self, pool: SessionPool, cache: ModelCache, progress: Progress, *, parallel: int, range_part: int
    ) -> None:
        self.pool, self.cache, self.progress = pool, cache, progress
        self.range_part = max(1, range_part)
        self.parallel = max(1, parallel)
        self.streams = threading.Semaphore(self.parallel)
        self.parts = ThreadPoolExecutor(self.parallel, thread_name_prefix="model-part")

    def run(self, missing: dict[str, int]) -> int:
        """Download the missing blobs; returns how many this process fetched (others may have fetched some)."""
        large = [d for d, size in missing.items() if size >= 2 * self.range_part]
        per_blob = max(1, math.ceil(self.parallel / len(large))) if large else 1
        order = sorted(missing, key=lambda d: -missing[d])  # the largest first: they set the finish time
        try:
            with ThreadPoolExecutor(self.parallel, thread_name_prefix="model-blob") as blobs:
                results = list(blobs.map(lambda d: self._blob(d, missing[d], per_blob), order))
        finally:
            self.parts.shutdown(wait=True)
        return sum(results)

    def _blob(self, digest: str, size: int, parts: int) -> int:
        with self.cache.blob_lock(digest):
            if self.cache.has_blob(digest):  # another pull stored it while we waited
                self.progress.add(size)
                self.progress.blob("shared")
                return 0
            partial = self.cache.partial_path(digest)
            try:
                parts = min(parts, max(1, size // self.range_part))
                ranged = parts > 1 and self.pool.session().blob_exists(digest)[1]
                actual = self._ranged(digest, size, parts, partial) if ranged else self._whole(digest, size, partial)
                if actual != digest:
                    raise OciError(
                        f"digest mismatch: blob {digest} of {self.pool.ref} arrived with digest {actual}; "
                        "the registry holds other bytes than its manifest names"
                    )
                self.cache.commit(digest)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        self.progress.blob("downloaded")
        return 1

    def _whole(self, digest: str, size: int, partial: Path) -> str:
        hasher = hashlib.new(digest.partition(":")[0])
        with partial.open("wb") as sink:
            self._fetch(digest, sink, 0, size, hasher=hasher, resumable=False)
        return f"{hasher.name}:{hasher.hexdigest()}"

    def _ranged(self, digest: str, size: int, parts: int, partial: Path) -> str:
        """Parts download in parallel while this thread hashes the file in order right behind them."""
        with partial.open("wb") as sink:
            sink.truncate(size)
        step = math.ceil(size / parts)
        follower = OrderedHasher(partial, [(start, min(size, start + step)) for start in range(0, size, step)])

        def part(index: int, start: int) -> None:
            try:
                with io.FileIO(partial, "r+") as sink:
                    sink.seek(start)
                    marked = MarkingSink(sink, follower, index)
                    self._fetch(digest, marked, start, min(size, start + step), hasher=None, resumable=True)
            except BaseException:
                follower.abandon()
                raise

        futures = [self.parts.submit(part, index, start) for index, start in enumerate(range(0, size, step))]
        try:
            actual = follower.hash(digest.partition(":")[0])
        finally:
            for future in futures:
                future.result()
        return actual

    def _fetch(self, digest: str, sink: Sink, start: int, end: int, *, hasher: Any, resumable: bool) -> None:
        """Bytes [start, end) of the blob into sink; a broken stream continues where it stopped (same hasher)."""
        offset = start
        for delay in (*RETRY_DELAYS_S, None):
            counter = _Counting(sink, self.progress)
            try:
                with self.streams:
                    ranged = resumable or offset > start
                    self.pool.session().fetch(
                        digest,
                        counter,
                        start=offset if ranged else 0,
                        end=end if ranged else None,
                        hasher=hasher,
                        progress=_ignore,
                    )
                if not ranged and counter.written != end - start:
                    raise OciError(
                        f"blob {digest} of {self.pool.ref} should be {end - start} bytes, got {counter.written}"
                    )
                return
            except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError, requests.Timeout) as exc:
                if delay is None:
                    raise OciError(
                        f"download of {digest} from {self.pool.ref.registry} kept breaking off ({exc})"
                    ) from exc
                offset += counter.written
                log.warning("download of %s broke off at byte %d (%s); resuming in %.1fs", digest, offset, exc, delay)
                time.sleep(delay)


class _Counting:
    """A sink that counts what is written through it, for progress and for resuming a broken stream."""

    def __init__(self, sink: Sink, progress: Progress) -> None:
        self.sink, self.progress, self.written = sink, progress, 0

    def write(self, data: memoryview, /) -> int:
        count = self.sink.write(data)
        self.written += count
        self.progress.add(count)
        return count


def _ignore(_: int) -> None:
    return None
