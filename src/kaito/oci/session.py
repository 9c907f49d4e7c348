"""Blob and manifest transfers to one registry repository, verifying every digest and size."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oras.container  # type: ignore[import-untyped, unused-ignore]
import oras.provider  # type: ignore[import-untyped, unused-ignore]
import requests

from kaito.oci.auth import RegistryClient
from kaito.oci.errors import OciError, as_oci_error, registry_error

log = logging.getLogger(__name__)

_DOWNLOAD_CHUNK = 1024 * 1024


class RegistrySession(RegistryClient):
    """One push or pull against one repository: the registry client's requests, for blobs and manifests."""

    @functools.cached_property
    def container(self) -> Any:
        """oras-py's view of the reference (its own parser would take a dotted first path component for a host)."""
        container = oras.container.Container("placeholder", registry=self.ref.api_host)
        namespace, _, name = self.ref.repository.rpartition("/")
        container.namespace = namespace or None
        container.repository = name
        container.tag = self.ref.tag or "latest"
        container.digest = self.ref.digest
        return container

    def url(self, path: str) -> str:
        return f"{self.scheme.name}://{path}"

    def upload_file(self, path: Path, layer: dict[str, Any], *, chunked: bool, chunk_size: int) -> None:
        with as_oci_error(f"uploading {path.name} to {self.ref}"):
            response = self.oras.upload_blob(
                str(path), self.container, layer, do_chunked=chunked, chunk_size=chunk_size
            )
        self.expect_success(response, f"the upload of {path.name}")
        log.debug("uploaded %s as %s (%d bytes)", path.name, layer["digest"], layer["size"])

    def upload_empty_config(self, config: dict[str, Any]) -> None:
        with as_oci_error(f"uploading the config blob to {self.ref}"), oras.provider.temporary_empty_config() as path:
            response = self.oras.upload_blob(path, self.container, config)
        self.expect_success(response, "the config blob upload")

    def put_manifest(self, body: bytes, media_type: str) -> str:
        digest = _digest_of(body, "sha256:")
        url = self.url(self.container.manifest_url(self.ref.manifest_key))
        response = self.request("PUT", url, data=body, headers={"Content-Type": media_type})
        self.expect_success(response, "the manifest upload")
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise OciError(f"registry {self.ref.registry} stored the manifest as {answered}, expected {digest}")
        return digest

    def get_manifest_document(
        self, key: str, expected_digest: str | None, what: str, accept: str
    ) -> tuple[str, dict[str, Any]]:
        """The manifest (or index) stored under key, as a JSON object, and its digest (checked if expected)."""
        response = self.request("GET", self.url(self.container.manifest_url(key)), headers={"Accept": accept})
        if response.status_code == 404:
            raise OciError(f"{what} {self.ref} not found in registry {self.ref.registry} ({registry_error(response)})")
        self.expect_success(response, "the manifest download")
        body = response.content
        digest = _digest_of(body, expected_digest or "sha256:")
        if expected_digest and digest != expected_digest:
            raise OciError(f"manifest of {self.ref} has digest {digest}, not the requested {expected_digest}")
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise OciError(f"manifest of {self.ref} is not JSON ({exc})") from exc
        if not isinstance(document, dict):
            raise OciError(f"manifest of {self.ref} is not a JSON object")
        return digest, document

    def download_blob(self, descriptor: dict[str, Any], target: Path) -> None:
        """Stream a blob into target (via a temporary file beside it), checking its digest and size."""
        digest = str(descriptor["digest"])
        for attempt, delay in enumerate((*self.retry_delays, None)):
            try:
                self._download_once(digest, int(descriptor.get("size", -1)), target)
                return
            except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError, requests.Timeout) as exc:
                if delay is None:
                    raise OciError(
                        f"download of {digest} from {self.ref.registry} broke off after {attempt + 1} tries ({exc})"
                    ) from exc
                log.warning("download of %s broke off (%s); retrying in %.1fs", digest, exc, delay)
                time.sleep(delay)

    def _download_once(self, digest: str, size: int, target: Path) -> None:
        hasher = _hasher(digest)
        received = 0
        with self.oras.get_blob(self.container, digest, stream=True) as response:
            if response.status_code == 404:
                raise OciError(f"blob {digest} of {self.ref} is missing from registry {self.ref.registry}")
            self.expect_success(response, f"the download of blob {digest}")
            with temporary_path_beside(target) as partial:
                with partial.open("wb") as handle:
                    for chunk in response.iter_content(_DOWNLOAD_CHUNK):
                        hasher.update(chunk)
                        handle.write(chunk)
                        received += len(chunk)
                actual = _digest(hasher)
                if actual != digest:
                    raise OciError(f"blob of {self.ref} should have digest {digest} but the download has {actual}")
                if size >= 0 and received != size:
                    raise OciError(f"blob {digest} of {self.ref} should be {size} bytes, got {received}")
                os.replace(partial, target)


@contextlib.contextmanager
def temporary_path_beside(target: Path) -> Iterator[Path]:
    """A fresh empty file in target's directory (so a rename lands it there), removed unless renamed away."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(descriptor)
    partial = Path(name)
    try:
        yield partial
    finally:
        partial.unlink(missing_ok=True)


def _digest_of(body: bytes, like: str) -> str:
    """The digest of body, with the algorithm of the digest `like` ("sha256:" for sha256)."""
    hasher = _hasher(like if ":" in like else "sha256:")
    hasher.update(body)
    return _digest(hasher)


def _hasher(digest: str) -> Any:
    algorithm = digest.partition(":")[0]
    if algorithm not in ("sha256", "sha512"):
        raise OciError(f"unsupported digest algorithm in {digest!r} (sha256 and sha512 are supported)")
    return hashlib.new(algorithm)


def _digest(hasher: Any) -> str:
    return f"{hasher.name}:{hasher.hexdigest()}"
