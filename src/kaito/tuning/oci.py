"""Push and pull ORAS-style OCI artifacts on real registries, with Basic/Bearer auth, retries and safe pulls."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import socket
import ssl
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, cast

import oras.container  # type: ignore[import-untyped, unused-ignore]
import oras.defaults  # type: ignore[import-untyped, unused-ignore]
import oras.oci  # type: ignore[import-untyped, unused-ignore]
import oras.provider  # type: ignore[import-untyped, unused-ignore]
import requests

from kaito.tuning.dockerconfig import DOCKER_HUB, Credentials, DockerConfig, registry_host

log = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_CREATED = "org.opencontainers.image.created"
# ORAS marks a layer that is a packed directory to unpack on pull (oras push <dir>).
ANNOTATION_UNPACK = "io.deis.oras.content.unpack"
OCI_TAR_GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR_LAYER_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        OCI_TAR_GZIP_LAYER,
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    }
)
_MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
_INDEX_MEDIA_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
REFERENCE_FORM = "<registry>/<repository>[:<tag>][@sha256:<digest>], e.g. myregistry.azurecr.io/adapters/phi-3:0.0.1"

# Transient failures (connection errors, 429, 5xx) are retried after these pauses; auth and 404 never are.
RETRY_DELAYS_S: tuple[float, ...] = (0.5, 1.0)
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
# Blobs above this size go up in chunks (POST, PATCH..., PUT) instead of one PUT that holds the file in memory.
CHUNKED_UPLOAD_THRESHOLD = 256 * 1024 * 1024
CHUNK_SIZE = 32 * 1024 * 1024
_DOWNLOAD_CHUNK = 1024 * 1024
_TOKEN_CLIENT_ID = "kaito"
# A request answers at most this many different 401 challenges (e.g. a pull scope, then a push scope).
_MAX_CHALLENGES = 3

_HOST_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::\d+)?"
)
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
_CHALLENGE_PARAM_RE = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


# What push and pull accept as credentials: those for the registry, or docker config(s) to look them up in.
Auth = Credentials | DockerConfig | None


class OciError(Exception):
    """A push or pull that failed, with a message that says what to fix."""


@dataclass(frozen=True)
class Reference:
    """An image reference: registry host, repository path, and a tag and/or a digest."""

    registry: str
    repository: str
    tag: str | None = "latest"
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse docker-style references; no registry means Docker Hub, no tag and no digest means `latest`."""
        name, digest = text.strip(), None
        if "@" in name:
            name, _, digest = name.partition("@")
            if not _DIGEST_RE.fullmatch(digest):
                raise _bad_reference(text, f"'{digest}' is not a sha256:<64 hex> digest")
        tag = None
        last_slash = name.rfind("/")
        if ":" in name[last_slash + 1 :]:
            name, _, tag = name.rpartition(":")
            if not _TAG_RE.fullmatch(tag):
                raise _bad_reference(text, f"'{tag}' is not a valid tag")
        registry, repository = _split_registry(name)
        if not _HOST_RE.fullmatch(registry):
            raise _bad_reference(text, f"'{registry}' is not a registry host[:port]")
        if not repository or not all(_PATH_COMPONENT_RE.fullmatch(part) for part in repository.split("/")):
            raise _bad_reference(text, f"'{repository}' is not a repository path (lowercase letters, digits, . _ -)")
        if registry == DOCKER_HUB and "/" not in repository:
            repository = f"library/{repository}"  # Docker Hub's official images
        return cls(registry=registry, repository=repository, tag=tag or (None if digest else "latest"), digest=digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        return f"{text}@{self.digest}" if self.digest else text

    @property
    def manifest_key(self) -> str:
        """What goes in /v2/<repository>/manifests/<key>: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        """Where the registry API answers (Docker Hub's API is not at docker.io)."""
        return "registry-1.docker.io" if self.registry == DOCKER_HUB else self.registry

    def with_digest(self, digest: str) -> Reference:
        return Reference(registry=self.registry, repository=self.repository, tag=self.tag, digest=digest)


@dataclass(frozen=True)
class Pushed:
    """A pushed artifact: its manifest digest, the bytes it takes (blobs + manifest), and where it went."""

    digest: str
    size: int
    reference: str


@dataclass(frozen=True)
class Pulled:
    """A pulled artifact: its manifest digest, the files written, and its manifest annotations."""

    digest: str
    files: list[Path]
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str = ""


def parse_reference(reference: str | Reference) -> Reference:
    return reference if isinstance(reference, Reference) else Reference.parse(reference)


def credentials_for(auth: Auth, registry: str) -> Credentials | None:
    """The credentials to present to registry: given directly, or looked up in docker config(s); None if none."""
    credentials = auth.credentials_for(registry) if isinstance(auth, DockerConfig) else auth
    return None if credentials is None or credentials.is_empty else credentials


def push_files(
    reference: str | Reference,
    files: Sequence[tuple[Path, str]],
    *,
    artifact_type: str,
    annotations: dict[str, str],
    auth: Auth,
    plain_http: bool = False,
    ca_file: Path | None = None,
) -> Pushed:
    """Push files (path, media type) as one artifact: a layer per file titled by its name, an empty config."""
    ref = parse_reference(reference)
    if ref.digest:
        raise OciError(f"cannot push to {ref}: push to a tag (e.g. {ref.registry}/{ref.repository}:v1), not a digest")
    layers = [_layer_for(path, media_type) for path, media_type in files]
    _refuse_duplicate_titles(layers)
    config = cast(dict[str, Any], oras.oci.ManifestConfig(media_type=EMPTY_CONFIG_MEDIA_TYPE)[0])
    with _RegistrySession(ref, auth, plain_http=plain_http, ca_file=ca_file, purpose="push") as session:
        for (path, _), layer in zip(files, layers, strict=True):
            session.upload_file(path, layer)
        session.upload_empty_config(config)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": config,
            "layers": layers,
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        body = json.dumps(manifest, separators=(",", ":")).encode()
        digest = session.put_manifest(body, OCI_MANIFEST)
    size = sum(int(layer["size"]) for layer in layers) + int(config["size"]) + len(body)
    log.info("pushed %s (%s, %d bytes)", ref, digest, size)
    return Pushed(digest=digest, size=size, reference=str(ref))


def pull(
    reference: str | Reference,
    outdir: Path,
    *,
    auth: Auth,
    plain_http: bool = False,
    ca_file: Path | None = None,
    tar_subdir: str | None = None,
    what: str = "image",
) -> Pulled:
    """Pull an artifact or image into outdir, verifying every blob's digest.

    Layers titled by ORAS are written under their title; tar layers (docker image layers, ORAS packed directories)
    are unpacked, refusing entries that would land outside outdir. With tar_subdir (e.g. "data"), only the tar
    entries under that directory are unpacked, directly into outdir.
    """
    ref = parse_reference(reference)
    with _RegistrySession(ref, auth, plain_http=plain_http, ca_file=ca_file, purpose="pull") as session:
        digest, manifest = session.get_manifest(what)
        outdir.mkdir(parents=True, exist_ok=True)
        outdir = Path(os.path.realpath(outdir))
        written: list[Path] = []
        for layer in manifest["layers"]:
            written.extend(_pull_layer(session, layer, outdir, tar_subdir))
    annotations = {str(k): str(v) for k, v in (manifest.get("annotations") or {}).items()}
    artifact_type = str(manifest.get("artifactType") or manifest.get("config", {}).get("mediaType", ""))
    log.info("pulled %s (%s): %d files into %s", ref, digest, len(written), outdir)
    return Pulled(digest=digest, files=sorted(set(written)), annotations=annotations, artifact_type=artifact_type)


# --- registry session ---------------------------------------------------------------------------------------------


class _OrasRegistry(oras.provider.Registry):  # type: ignore[misc]
    """oras-py's registry client with kaito's request policy.

    oras-py does the blob protocol (existence check, monolithic and chunked uploads, blob URLs, streaming GETs).
    Its own request wrapper is replaced: it retries every failure (auth and TLS failures included) with
    pauses that add up to minutes, and its auth backends handle either Basic or Bearer challenges, not both,
    nor identity (refresh) tokens.
    """

    def __init__(self, session: _RegistrySession, *, plain_http: bool, tls_verify: bool | str) -> None:
        super().__init__(hostname=session.ref.api_host, insecure=plain_http, tls_verify=tls_verify)
        self.kaito_session = session

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: dict[str, Any] | bytes | None = None,
        headers: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        return self.kaito_session.request(method, url, data=data, headers=headers, json_body=json, stream=stream)

    def _check_200_response(self, response: requests.Response) -> None:
        self.kaito_session.expect_success(response, f"{response.request.method} {response.request.path_url}")


class _RegistrySession:
    """One push or pull against one repository: auth state, retries, and errors phrased for the user."""

    def __init__(self, ref: Reference, auth: Auth, *, plain_http: bool, ca_file: Path | None, purpose: str) -> None:
        if ca_file is not None and not ca_file.is_file():
            raise OciError(f"CA file {ca_file} does not exist")
        self.ref = ref
        self.purpose = purpose
        self.scheme = "http" if plain_http else "https"
        self.verify: bool | str = str(ca_file) if ca_file else True
        self.auth = _Authenticator(self, credentials_for(auth, ref.registry))
        self.oras = _OrasRegistry(self, plain_http=plain_http, tls_verify=self.verify)
        self.http: requests.Session = self.oras.session
        # Blobs are hashed as stored: no transparent gzip decoding between the registry and the digest check.
        self.http.headers["Accept-Encoding"] = "identity"
        self.container = _container(ref)

    def __enter__(self) -> _RegistrySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    # requests, with auth and retries

    def request(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, Any] | bytes | None = None,
        headers: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        def send() -> requests.Response:
            return self._send_authenticated(method, url, data, headers, json_body, stream)

        return self.with_retries(send, self.ref.api_host)

    def with_retries(self, send: Callable[[], requests.Response], host: str) -> requests.Response:
        """Send, retrying connection errors, 429 and 5xx after RETRY_DELAYS_S; TLS and auth failures fail at once."""
        for attempt, delay in enumerate((*RETRY_DELAYS_S, None)):
            try:
                response = send()
            except requests.exceptions.SSLError as exc:
                raise OciError(_tls_failure(host, exc)) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                if delay is None:
                    raise OciError(f"{_connection_failure(host, exc)} (tried {attempt + 1} times)") from exc
                log.warning("%s; retrying in %.1fs", _connection_failure(host, exc), delay)
                time.sleep(delay)
                continue
            if response.status_code in RETRYABLE_STATUS and delay is not None:
                log.warning("registry %s answered HTTP %d; retrying in %.1fs", host, response.status_code, delay)
                response.close()
                time.sleep(delay)
                continue
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send_authenticated(
        self,
        method: str,
        url: str,
        data: dict[str, Any] | bytes | None,
        headers: dict[str, str] | None,
        json_body: dict[str, Any] | None,
        stream: bool,
    ) -> requests.Response:
        answered: set[str] = set()
        while len(answered) <= _MAX_CHALLENGES:
            sent_headers = dict(headers or {})
            if self.auth.header:
                sent_headers["Authorization"] = self.auth.header
            response = self.http.request(
                method,
                url,
                data=data,
                json=json_body,
                headers=sent_headers,
                stream=stream,
                verify=self.verify,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            )
            if response.status_code != 401:
                return response
            self.auth.answer(response, answered)
        raise OciError(f"registry {self.ref.registry} keeps asking for authentication with new challenges")

    def expect_success(self, response: requests.Response, action: str) -> None:
        if response.status_code < 300:
            return
        detail = registry_error(response)
        response.close()
        if response.status_code == 400 and "HTTPS server" in detail:
            detail += "; the registry serves HTTPS, so leave out --plain-http"
        if response.status_code == 403:
            raise OciError(
                f"registry {self.ref.registry} denied {self.auth.who()} {self.purpose} access to "
                f"{self.ref.repository} ({detail}); check that the {self.purpose} secret's identity may "
                f"{self.purpose} this repository"
            )
        raise OciError(f"registry {self.ref.registry} failed {action} for {self.ref} ({detail})")

    # blobs and manifests

    def url(self, path: str) -> str:
        return f"{self.scheme}://{path}"

    def upload_file(self, path: Path, layer: dict[str, Any]) -> None:
        chunked = int(layer["size"]) > CHUNKED_UPLOAD_THRESHOLD
        with _as_oci_error(f"uploading {path.name} to {self.ref}"):
            response = self.oras.upload_blob(
                str(path), self.container, layer, do_chunked=chunked, chunk_size=CHUNK_SIZE
            )
        self.expect_success(response, f"the upload of {path.name}")
        log.debug("uploaded %s as %s (%d bytes)", path.name, layer["digest"], layer["size"])

    def upload_empty_config(self, config: dict[str, Any]) -> None:
        with _as_oci_error(f"uploading the config blob to {self.ref}"), oras.provider.temporary_empty_config() as path:
            response = self.oras.upload_blob(path, self.container, config)
        self.expect_success(response, "the config blob upload")

    def put_manifest(self, body: bytes, media_type: str) -> str:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        url = self.url(self.container.manifest_url(self.ref.manifest_key))
        response = self.request("PUT", url, data=body, headers={"Content-Type": media_type})
        self.expect_success(response, "the manifest upload")
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise OciError(f"registry {self.ref.registry} stored the manifest as {answered}, expected {digest}")
        return digest

    def get_manifest(self, what: str) -> tuple[str, dict[str, Any]]:
        digest, document = self._get_manifest_document(self.ref.manifest_key, self.ref.digest, what)
        if document.get("mediaType") in _INDEX_MEDIA_TYPES or "manifests" in document:
            chosen = _platform_manifest(document, str(self.ref))
            _, document = self._get_manifest_document(chosen, chosen, what)
        _check_manifest(document, str(self.ref))
        return digest, document

    def _get_manifest_document(self, key: str, expected_digest: str | None, what: str) -> tuple[str, dict[str, Any]]:
        accept = ", ".join((*_MANIFEST_MEDIA_TYPES, *_INDEX_MEDIA_TYPES))
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
        for attempt, delay in enumerate((*RETRY_DELAYS_S, None)):
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
            with _temporary_path_beside(target) as partial:
                with partial.open("wb") as handle:
                    for chunk in response.iter_content(_DOWNLOAD_CHUNK):
                        hasher.update(chunk)
                        handle.write(chunk)
                        received += len(chunk)
                actual = f"{hasher.name}:{hasher.hexdigest()}"
                if actual != digest:
                    raise OciError(f"blob of {self.ref} should have digest {digest} but the download has {actual}")
                if size >= 0 and received != size:
                    raise OciError(f"blob {digest} of {self.ref} should be {size} bytes, got {received}")
                os.replace(partial, target)


class _Authenticator:
    """Answers 401 challenges: Basic with the credentials, or Bearer via the token service the challenge names."""

    def __init__(self, session: _RegistrySession, credentials: Credentials | None) -> None:
        self.session = session
        self.credentials = credentials
        self.header: str | None = None

    def who(self) -> str:
        if self.credentials is None:
            return "anonymous"
        source = f" (from {self.credentials.source})" if self.credentials.source else ""
        return self.credentials.describe() + source

    def answer(self, response: requests.Response, answered: set[str]) -> None:
        """Set the header that answers this 401, or raise OciError when the registry has refused what we have."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, params = parse_challenge(challenge)
        detail = registry_error(response)
        response.close()
        if challenge in answered:
            raise OciError(self._refused(detail) if self.credentials else self._no_credentials(detail))
        answered.add(challenge)
        if scheme == "basic":
            self.header = self._basic_header(detail)
        elif scheme == "bearer":
            self.header = "Bearer " + self._token(params)
        else:
            raise OciError(
                f"registry {self.session.ref.registry} answered HTTP 401 with an authentication scheme kaito "
                f"does not speak ({challenge or 'no WWW-Authenticate header'})"
            )

    def _basic_header(self, detail: str) -> str:
        if self.credentials is None:
            raise OciError(self._no_credentials(detail))
        creds = self.credentials
        if not creds.username and creds.identity_token:
            raise OciError(
                f"registry {self.session.ref.registry} asks for a username and password (HTTP Basic), "
                "but the credentials hold only an identity token"
            )
        pair = f"{creds.username}:{creds.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _token(self, params: dict[str, str]) -> str:
        realm = params.get("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise OciError(f"registry {self.session.ref.registry} named no usable token service (realm={realm!r})")
        query: dict[str, str] = {key: params[key] for key in ("service", "scope") if key in params}
        creds = self.credentials
        realm_host = realm.split("/")[2]

        def send() -> requests.Response:
            timeout = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
            http, verify = self.session.http, self.session.verify
            if creds and creds.identity_token:
                form: dict[str, str] = {**query, "grant_type": "refresh_token", "client_id": _TOKEN_CLIENT_ID}
                form["refresh_token"] = creds.identity_token
                return http.post(realm, data=form, verify=verify, timeout=timeout)
            basic = (creds.username, creds.password) if creds else None
            return http.get(realm, params=query, auth=basic, verify=verify, timeout=timeout)

        response = self.session.with_retries(send, realm_host)
        if response.status_code in (401, 403):
            detail = f"token service {realm} answered {registry_error(response)}"
            if creds is None:
                raise OciError(self._no_credentials(detail))
            raise OciError(self._refused(detail))
        if response.status_code != 200:
            raise OciError(f"token service {realm} failed ({registry_error(response)})")
        try:
            token = response.json().get("token") or response.json().get("access_token")
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise OciError(f"token service {realm} answered without a token")
        return token

    def _no_credentials(self, detail: str) -> str:
        registry = self.session.ref.registry
        return (
            f"registry {registry} requires credentials to {self.session.purpose} {self.session.ref.repository} "
            f"and none were given for {registry} ({detail}); pass a docker config (--docker-config) with an "
            f"auths entry for {registry}"
        )

    def _refused(self, detail: str) -> str:
        return (
            f"registry {self.session.ref.registry} refused the credentials for {self.who()} ({detail}); "
            f"check the {self.session.purpose} secret"
        )


# --- helpers ------------------------------------------------------------------------------------------------------


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Scheme (lowercased) and parameters of a WWW-Authenticate header, e.g. Bearer realm="...",scope="..."."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _CHALLENGE_PARAM_RE.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = quoted if quoted is not None else bare
    return scheme.lower(), params


def registry_error(response: requests.Response) -> str:
    """'HTTP 401 UNAUTHORIZED: authentication required' from a registry's error body, or the status line."""
    status = f"HTTP {response.status_code}"
    try:
        errors = response.json().get("errors") if response.content else None
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return f"{status} {first.get('code', '')}: {first.get('message', '')}".strip().rstrip(":")
    text = (response.text or "").strip().replace("\n", " ")[:200] if response.content else ""
    return f"{status} {response.reason or ''}".strip() + (f": {text}" if text else "")


def _split_registry(name: str) -> tuple[str, str]:
    """Docker's rule: the first path component is a registry host when it has a '.' or ':' or is localhost."""
    first, sep, rest = name.partition("/")
    if not sep or not ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB, name
    return (DOCKER_HUB if registry_host(first) == DOCKER_HUB else first), rest


def _bad_reference(text: str, problem: str) -> OciError:
    return OciError(f"invalid image reference '{text}': {problem}; expected {REFERENCE_FORM}")


def _container(ref: Reference) -> Any:
    """oras-py's view of the reference (its own parser would take a dotted first path component for a host)."""
    container = oras.container.Container("placeholder", registry=ref.api_host)
    namespace, _, name = ref.repository.rpartition("/")
    container.namespace = namespace or None
    container.repository = name
    container.tag = ref.tag or "latest"
    container.digest = ref.digest
    return container


def _layer_for(path: Path, media_type: str) -> dict[str, Any]:
    if not path.is_file():
        raise OciError(f"cannot push {path}: not a file")
    with _as_oci_error(f"reading {path}"):
        layer = cast(dict[str, Any], oras.oci.NewLayer(str(path), media_type=media_type))
    layer["annotations"] = {ANNOTATION_TITLE: path.name}
    return layer


def _refuse_duplicate_titles(layers: list[dict[str, Any]]) -> None:
    titles = [layer["annotations"][ANNOTATION_TITLE] for layer in layers]
    duplicates = sorted({title for title in titles if titles.count(title) > 1})
    if duplicates:
        raise OciError(f"cannot push two files with the same name: {', '.join(duplicates)}")


def _platform_manifest(index: dict[str, Any], ref: str) -> str:
    manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict) and m.get("digest")]
    if not manifests:
        raise OciError(f"image index of {ref} lists no manifests")
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower(), "amd64")
    for manifest in manifests:
        plat = manifest.get("platform") or {}
        if plat.get("os") == "linux" and plat.get("architecture") == arch:
            return str(manifest["digest"])
    return str(manifests[0]["digest"])


def _check_manifest(document: dict[str, Any], ref: str) -> None:
    if document.get("schemaVersion") != 2 or not isinstance(document.get("layers"), list):
        raise OciError(f"manifest of {ref} is not an OCI or docker v2 image manifest (schemaVersion 2 with layers)")
    for layer in document["layers"]:
        if not isinstance(layer, dict) or not _DIGEST_RE.fullmatch(str(layer.get("digest", ""))):
            raise OciError(f"manifest of {ref} has a layer without a sha256/sha512 digest: {layer!r}")


def _pull_layer(session: _RegistrySession, layer: dict[str, Any], outdir: Path, tar_subdir: str | None) -> list[Path]:
    annotations = layer.get("annotations") or {}
    title = annotations.get(ANNOTATION_TITLE)
    media_type = str(layer.get("mediaType", ""))
    unpack = str(annotations.get(ANNOTATION_UNPACK, "")).lower() == "true"
    if title and not unpack:
        target = outdir / _safe_title(str(title), session.ref)
        session.download_blob(layer, target)
        return [target]
    if unpack or media_type in TAR_LAYER_MEDIA_TYPES:
        with _temporary_path_beside(outdir / ".kaito-layer") as archive:
            session.download_blob(layer, archive)
            return extract_tar(archive, outdir, subdir=tar_subdir, source=f"layer {layer['digest']} of {session.ref}")
    log.warning("skipping layer %s (%s) of %s: no title and not a tar layer", layer["digest"], media_type, session.ref)
    return []


def _safe_title(title: str, ref: Reference) -> str:
    if title in ("", ".", "..") or "/" in title or "\\" in title or "\x00" in title:
        raise OciError(f"{ref} has a layer titled {title!r}; refusing to write it (titles must be plain file names)")
    return title


def extract_tar(archive: Path, outdir: Path, *, subdir: str | None = None, source: str = "") -> list[Path]:
    """Unpack a (possibly gzipped) tar into outdir; refuses absolute paths, '..', links out of outdir, devices.

    With subdir, only entries under it are unpacked, relative to it. Whiteouts (.wh.*) are skipped.
    Returns the regular files written.
    """
    source = source or str(archive)
    root = Path(os.path.realpath(outdir))
    prefix = PurePosixPath(subdir.strip("/")) if subdir else None
    written: list[Path] = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                relative = _member_path(member.name, source)
                if relative.name.startswith(".wh."):
                    continue
                if prefix is not None:
                    stripped = _under(relative, prefix)
                    if stripped is None:
                        continue
                    relative = stripped
                if not relative.parts:
                    continue
                written.extend(_extract_member(tar, member, relative, root, prefix, source))
    except tarfile.TarError as exc:
        raise OciError(f"{source} is not a readable tar archive ({exc})") from exc
    except OSError as exc:
        raise OciError(f"cannot unpack {source} into {outdir}: {exc}") from exc
    return written


def _member_path(name: str, source: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise OciError(f"{source} holds an unsafe path {name!r} (absolute or with '..'); refusing to unpack it")
    return PurePosixPath(*[part for part in path.parts if part != "."])


def _under(path: PurePosixPath, prefix: PurePosixPath) -> PurePosixPath | None:
    if path.parts[: len(prefix.parts)] != prefix.parts:
        return None
    return PurePosixPath(*path.parts[len(prefix.parts) :])


def _inside(root: Path, path: str) -> bool:
    real = os.path.realpath(path)
    return real == str(root) or real.startswith(str(root) + os.sep)


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    relative: PurePosixPath,
    root: Path,
    prefix: PurePosixPath | None,
    source: str,
) -> list[Path]:
    target = root.joinpath(*relative.parts)
    if not _inside(root, str(target.parent)):
        raise OciError(f"{source}: {member.name!r} would be written through a link out of the output directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    if member.isdir():
        target.mkdir(exist_ok=True)
        return []
    if member.isreg():
        _replace_link(target)
        extracted = tar.extractfile(member)
        if extracted is None:
            raise OciError(f"{source}: cannot read {member.name!r}")
        with extracted, target.open("wb") as out:
            while chunk := extracted.read(_DOWNLOAD_CHUNK):
                out.write(chunk)
        target.chmod(0o755 if member.mode & 0o111 else 0o644)
        return [target]
    if member.issym():
        if member.linkname.startswith("/") or not _inside(root, os.path.join(target.parent, member.linkname)):
            raise OciError(
                f"{source}: symlink {member.name!r} -> {member.linkname!r} points out of the output directory"
            )
        _replace_link(target)
        target.symlink_to(member.linkname)
        return []
    if member.islnk():
        linked = _member_path(member.linkname, source)
        linked_relative = _under(linked, prefix) if prefix is not None else linked
        existing = root.joinpath(*linked_relative.parts) if linked_relative is not None else None
        if existing is None or not existing.is_file() or not _inside(root, str(existing)):
            raise OciError(
                f"{source}: hard link {member.name!r} -> {member.linkname!r} has no target inside the output"
            )
        _replace_link(target)
        os.link(existing, target)
        return [target]
    raise OciError(f"{source}: refusing {member.name!r}, a device, FIFO or other special file")


def _replace_link(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()


@contextlib.contextmanager
def _temporary_path_beside(target: Path) -> Iterator[Path]:
    """A fresh empty file in target's directory (so a rename lands it there), removed unless renamed away."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(descriptor)
    partial = Path(name)
    try:
        yield partial
    finally:
        partial.unlink(missing_ok=True)


def _hasher(digest: str) -> Any:
    algorithm = digest.partition(":")[0]
    if algorithm not in ("sha256", "sha512"):
        raise OciError(f"unsupported digest algorithm in {digest!r} (sha256 and sha512 are supported)")
    return hashlib.new(algorithm)


def _digest_of(body: bytes, like: str) -> str:
    hasher = _hasher(like if ":" in like else "sha256:")
    hasher.update(body)
    return f"{hasher.name}:{hasher.hexdigest()}"


@contextlib.contextmanager
def _as_oci_error(action: str) -> Iterator[None]:
    """oras-py signals failures with ValueError and friends; turn them into one OciError naming the action."""
    try:
        yield
    except OciError:
        raise
    except (ValueError, OSError, KeyError) as exc:
        raise OciError(f"{action} failed: {exc}") from exc


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error under requests' and urllib3's wrappers (an ssl or socket error, usually)."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        nested = getattr(current, "reason", None)
        if not isinstance(nested, BaseException):
            nested = next((arg for arg in current.args if isinstance(arg, BaseException)), None)
        nested = nested or current.__cause__ or current.__context__
        if nested is None:
            break
        current = nested
    return current


def _tls_failure(host: str, exc: BaseException) -> str:
    cause = _root_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"TLS to registry {host} failed: certificate verify failed: {cause.verify_message}; pass the CA that "
            "signed the registry's certificate (--ca-file)"
        )
    reason = getattr(cause, "reason", None) or str(cause)
    hint = "; if the registry serves plain HTTP, use --plain-http" if "WRONG_VERSION" in str(reason).upper() else ""
    return f"TLS to registry {host} failed: {reason}{hint}"


def _connection_failure(host: str, exc: BaseException) -> str:
    cause = _root_cause(exc)
    if isinstance(exc, requests.Timeout) or isinstance(cause, TimeoutError | socket.timeout):
        return f"registry {host} did not answer in time ({cause})"
    if isinstance(cause, ConnectionRefusedError):
        return f"cannot connect to registry {host}: connection refused"
    if isinstance(cause, socket.gaierror):
        return f"cannot connect to registry {host}: cannot resolve the host name ({cause.strerror})"
    return f"cannot connect to registry {host}: {cause}"
