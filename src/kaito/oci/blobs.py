"""Blob transfers for large artifacts: existence checks, resumable chunked uploads, ranged and hashed downloads.

Every method reports each transferred byte to a callback, so one progress meter can follow many blobs at once.
An interrupted chunked upload asks the registry how far it got (GET on the upload session answers `Range`)
and continues from there; when the registry has forgotten the session, the blob starts over.
"""

from __future__ import annotations

import http.client
import logging
import os
import urllib.parse
from collections.abc import Callable
from typing import IO, Any, Protocol

import requests
import urllib3

from kaito.oci.errors import OciError, registry_error
from kaito.oci.session import RegistrySession

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
# Downloads read into one reusable buffer of this size, which the hash and the file write then read again: at
# 1 MiB (the first choice) it fell out of the 1 MiB per-core L2 cache between those passes and pulls ran slower.
READ_CHUNK = 256 * 1024
# How often one chunked upload may lose its connection before the push gives up.
UPLOAD_RESUMES = 3


class Sink(Protocol):
    def write(self, data: memoryview, /) -> int: ...


def _ignore(_: int) -> None:
    return None


class BlobSession(RegistrySession):
    """Blob requests against one repository, on one HTTP session (one per thread: requests sessions are not shared)."""

    def blob_url(self, digest: str) -> str:
        return self.url(f"{self.ref.api_host}/v2/{self.ref.repository}/blobs/{digest}")

    def blob_exists(self, digest: str) -> tuple[bool, bool]:
        """(present, ranged): whether the registry holds the blob, and whether it serves byte ranges of it."""
        response = self.request("HEAD", self.blob_url(digest))
        response.close()
        if response.status_code == 404:
            return False, False
        self.expect_success(response, f"the existence check of blob {digest}")
        return True, response.headers.get("Accept-Ranges", "").lower() == "bytes"

    def upload_blob(
        self, path: os.PathLike[str], digest: str, size: int, *, chunk_size: int, progress: Progress = _ignore
    ) -> None:
        """Upload a file as the blob digest: one PUT when it fits a chunk, else PATCHes then a closing PUT."""
        for attempt in range(UPLOAD_RESUMES + 1):
            location = self._start_upload()
            sent = 0

            def counted(count: int) -> None:
                nonlocal sent
                sent += count
                progress(count)

            try:
                with open(path, "rb") as handle:
                    if size <= chunk_size:
                        body = handle.read()
                        self._finish_upload(location, digest, body)
                        counted(len(body))
                        return
                    location = self._patch_all(handle, location, size, chunk_size, counted)
                self._finish_upload(location, digest, b"")
                return
            except _SessionLost as lost:
                progress(-sent)  # those bytes go again
                if attempt == UPLOAD_RESUMES:
                    raise OciError(f"upload of {digest} to {self.ref} kept breaking off ({lost})") from None
                log.warning("upload session of %s is gone (%s); starting the blob again", digest, lost)

    def upload_bytes(self, body: bytes, digest: str) -> None:
        """Upload a small blob held in memory (a config): one POST, one PUT."""
        try:
            self._finish_upload(self._start_upload(), digest, body)
        except _SessionLost as lost:
            raise OciError(f"upload of {digest} to {self.ref} failed ({lost})") from None

    def _start_upload(self) -> str:
        url = self.url(f"{self.ref.api_host}/v2/{self.ref.repository}/blobs/uploads/")
        response = self.request("POST", url, headers={"Content-Length": "0"})
        self.expect_success(response, "starting a blob upload")
        return self._location(response)

    def _location(self, response: requests.Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise OciError(f"registry {self.ref.registry} answered an upload without a Location header")
        return urllib.parse.urljoin(response.url, location)

    def _patch_all(self, handle: IO[bytes], location: str, size: int, chunk_size: int, progress: Progress) -> str:
        """PATCH the file from where the registry's session stands; returns the location of the last answer."""
        offset, resumes = 0, 0
        while offset < size:
            handle.seek(offset)
            chunk = handle.read(chunk_size)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Length": str(len(chunk)),
            }
            try:
                response = self._send_once("PATCH", location, data=chunk, headers=headers)
            except (requests.ConnectionError, requests.Timeout) as exc:
                resumes += 1
                if resumes > UPLOAD_RESUMES:
                    raise _SessionLost(str(exc)) from exc
                done, location = self._upload_offset(location)
                log.warning("upload broke off at %d of %d bytes (%s); resuming at %d", offset, size, exc, done)
                progress(done - offset)
                offset = done
                continue
            if response.status_code in (404, 416):
                raise _SessionLost(registry_error(response))
            self.expect_success(response, f"a chunk upload ({headers['Content-Range']})")
            location = self._location(response)
            progress(len(chunk))
            offset += len(chunk)
        return location

    def _upload_offset(self, location: str) -> tuple[int, str]:
        """How many bytes the upload session holds (its `Range: 0-<last>`), and where it continues."""
        try:
            response = self._send_once("GET", location)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _SessionLost(str(exc)) from exc
        if 400 <= response.status_code < 500 and response.status_code not in (401, 403):
            raise _SessionLost(registry_error(response))  # distribution cancels a session a broken chunk left uneven
        self.expect_success(response, "asking how far an upload got")
        _, _, last = response.headers.get("Range", "0--1").rpartition("-")
        return int(last) + 1, self._location(response)

    def _finish_upload(self, location: str, digest: str, body: bytes) -> None:
        separator = "&" if "?" in location else "?"
        url = f"{location}{separator}digest={urllib.parse.quote(digest)}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
        response = self.request("PUT", url, data=body, headers=headers)
        if response.status_code == 404:
            raise _SessionLost(registry_error(response))
        self.expect_success(response, f"the upload of blob {digest}")

    def _send_once(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One authenticated request without retries: the caller knows how to resume."""
        return self._send_authenticated(method, url, kwargs.get("data"), kwargs.get("headers"), None, False)

    def fetch(
        self,
        digest: str,
        sink: Sink,
        *,
        start: int = 0,
        end: int | None = None,
        hasher: Any = None,
        progress: Progress = _ignore,
    ) -> int:
        """Write the blob's bytes [start, end) at sink's position (updating hasher); returns the bytes written."""
        headers = {"Range": f"bytes={start}-{'' if end is None else end - 1}"} if start or end is not None else None
        response = self.request("GET", self.blob_url(digest), headers=headers, stream=True)
        with response:
            if response.status_code == 404:
                raise OciError(f"blob {digest} of {self.ref} is missing from registry {self.ref.registry}")
            self.expect_success(response, f"the download of blob {digest}")
            if headers and response.status_code != 206:
                raise OciError(f"registry {self.ref.registry} ignored a byte range of blob {digest}")
            written = _copy_body(response, sink, hasher, progress)
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and written != int(expected):
                raise requests.exceptions.ChunkedEncodingError(
                    f"connection broken: {written} of {expected} bytes of blob {digest} arrived"
                )
        if end is not None and written != end - start:
            raise OciError(f"blob {digest} of {self.ref}: asked for {end - start} bytes at {start}, got {written}")
        return written


def _copy_body(response: requests.Response, sink: Sink, hasher: Any, progress: Progress) -> int:
    """Read the body into one reused buffer (no allocation per chunk), hashing and writing each fill; a body
    that breaks off raises ChunkedEncodingError, as requests' own streaming does, so callers can resume."""
    raw = response.raw
    body = getattr(raw, "_fp", None)  # urllib3's readinto would read into a fresh bytes object, then copy it
    readinto = body.readinto if isinstance(body, http.client.HTTPResponse) else raw.readinto
    buffer = memoryview(bytearray(READ_CHUNK))
    written = 0
    while True:
        try:
            count = readinto(buffer)
        except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
            raise requests.exceptions.ChunkedEncodingError(f"connection broken: {exc!r}") from exc
        if not count:
            break
        chunk = buffer[:count]
        if hasher is not None:
            hasher.update(chunk)
        sink.write(chunk)
        written += count
        progress(count)
    if isinstance(body, http.client.HTTPResponse) and body.isclosed():
        raw.release_conn()  # read to its end, as urllib3 would have noticed: the connection serves the next blob
    return written


class _SessionLost(Exception):
    """The registry no longer knows the upload session (or it broke too often): start the blob again."""
