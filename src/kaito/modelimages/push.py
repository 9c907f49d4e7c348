"""Push a model directory as a model image: one layer per file, blobs the registry has skipped, several at once.

Pushing the same directory twice gives the same manifest digest (no timestamps in it), and a push that broke
off resumes: the blobs that made it are found by HEAD and skipped, and a chunked upload that lost its
connection continues at the offset the registry reports.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaito.api.modelimage import (
    ANNOTATION_MODEL,
    ANNOTATION_REVISION,
    ANNOTATION_SOURCE,
    ANNOTATION_TITLE,
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    ModelDescriptionError,
    describe_model,
    layer_media_type,
)
from kaito.modelimages.progress import Progress, TransferMetrics
from kaito.modelimages.sessions import SessionPool
from kaito.oci.client import OCI_MANIFEST, Auth
from kaito.oci.errors import OciError
from kaito.oci.reference import parse_reference
from kaito.oci.scheme import Scheme

log = logging.getLogger(__name__)

DEFAULT_PARALLEL = 4
CHUNK_SIZE = 64 * 1024 * 1024  # files above this go up in PATCHes of this size
_HASH_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class PushedModel:
    image: str
    digest: str
    uploaded_blobs: int
    skipped_blobs: int
    uploaded_bytes: int


@dataclass(frozen=True)
class _File:
    path: Path
    title: str
    digest: str
    size: int


def push_model(
    model_dir: Path,
    image: str,
    *,
    auth: Auth,
    plain_http: bool = False,
    insecure: Collection[str] = (),
    ca_file: Path | None = None,
    source_repository: str = "",
    revision: str = "",
    parallel: int = DEFAULT_PARALLEL,
    chunk_size: int = CHUNK_SIZE,
    metrics: TransferMetrics | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> PushedModel:
    ref = parse_reference(image)
    scheme = Scheme.docker_rule(ref.registry, plain_http=plain_http, insecure=insecure)
    if ref.digest:
        raise OciError(f"cannot push to {ref}: push to a tag (e.g. {ref.registry}/{ref.repository}:v1), not a digest")
    try:
        config = describe_model(model_dir, source_repository=source_repository, revision=revision)
    except ModelDescriptionError as exc:
        raise OciError(f"cannot push {model_dir}: {exc}") from exc
    config_blob = config.to_blob()
    config_digest = "sha256:" + hashlib.sha256(config_blob).hexdigest()
    progress = Progress(direction="push", image=str(ref), metrics=metrics, clock=clock)
    with ThreadPoolExecutor(max(1, parallel), thread_name_prefix="model-push") as workers:
        files = list(workers.map(_hashed, *zip(*_files(model_dir), strict=True)))
        with SessionPool(ref, auth, scheme=scheme, ca_file=ca_file, purpose="push") as pool:

            def upload(file: _File) -> bool:
                session = pool.session()
                if session.blob_exists(file.digest)[0]:
                    progress.blob("present")
                    return False
                session.upload_blob(file.path, file.digest, file.size, chunk_size=chunk_size, progress=progress.add)
                progress.blob("uploaded")
                return True

            progress.expect(sum(file.size for file in files))  # blobs found present are not moved: no bytes added
            uploaded = list(workers.map(upload, sorted(files, key=lambda f: -f.size)))  # the largest first
            session = pool.session()
            if not session.blob_exists(config_digest)[0]:
                session.upload_bytes(config_blob, config_digest)
            manifest = _manifest(files, config_digest, len(config_blob), source_repository, revision)
            digest = session.put_manifest(manifest, OCI_MANIFEST)
    progress.finish()
    log.info("pushed %s (%s): %d files, %d skipped (already there)", ref, digest, len(files), uploaded.count(False))
    return PushedModel(str(ref), digest, uploaded.count(True), uploaded.count(False), progress.snapshot().done)


def _files(model_dir: Path) -> list[tuple[Path, str]]:
    """Every regular file under the directory (following links, as Hugging Face snapshots are), hidden ones aside."""
    found = []
    for path in sorted(model_dir.rglob("*")):
        relative = path.relative_to(model_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        found.append((path, relative.as_posix()))
    if not found:
        raise OciError(f"cannot push {model_dir}: no files")
    return found


def _hashed(path: Path, title: str) -> _File:
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return _File(path, title, f"sha256:{hasher.hexdigest()}", size)


def _manifest(files: list[_File], config_digest: str, config_size: int, source: str, revision: str) -> bytes:
    annotations = {ANNOTATION_MODEL: source} if source else {}
    if source:
        annotations[ANNOTATION_SOURCE] = source if "://" in source else f"https://huggingface.co/{source}"
    if revision:
        annotations[ANNOTATION_REVISION] = revision
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size},
        "layers": [
            {
                "mediaType": layer_media_type(file.title),
                "digest": file.digest,
                "size": file.size,
                "annotations": {ANNOTATION_TITLE: file.title},
            }
            for file in files
        ],
    }
    if annotations:
        manifest["annotations"] = annotations
    return json.dumps(manifest, separators=(",", ":")).encode()
