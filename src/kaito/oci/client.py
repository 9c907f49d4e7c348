"""Push and pull ORAS-style OCI artifacts (and pull images): the manifests and layers, and where files go."""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import oras.oci  # type: ignore[import-untyped, unused-ignore]

from kaito.oci.dockerconfig import Credentials, DockerConfig
from kaito.oci.errors import OciError as OciError  # what push_files and pull raise
from kaito.oci.errors import as_oci_error
from kaito.oci.reference import DIGEST_RE, Reference, parse_reference
from kaito.oci.scheme import Scheme
from kaito.oci.session import RegistrySession, temporary_path_beside
from kaito.oci.tar import extract_tar

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

# Transient failures (connection errors, 429, 5xx) are retried after these pauses; auth and 404 never are.
RETRY_DELAYS_S: tuple[float, ...] = (0.5, 1.0)
# Blobs above this size go up in chunks (POST, PATCH..., PUT) instead of one PUT that holds the file in memory.
CHUNKED_UPLOAD_THRESHOLD = 256 * 1024 * 1024
CHUNK_SIZE = 32 * 1024 * 1024


# What push and pull accept as credentials: those for the registry, or docker config(s) to look them up in.
Auth = Credentials | DockerConfig | None


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
    with _session(ref, auth, scheme=Scheme(plain_http=plain_http), ca_file=ca_file, purpose="push") as session:
        for (path, _), layer in zip(files, layers, strict=True):
            chunked = int(layer["size"]) > CHUNKED_UPLOAD_THRESHOLD
            session.upload_file(path, layer, chunked=chunked, chunk_size=CHUNK_SIZE)
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
    may_fall_back: bool = False,
) -> Pulled:
    """Pull an artifact or image into outdir, verifying every blob's digest.

    Layers titled by ORAS are written under their title; tar layers (docker image layers, ORAS packed directories)
    are unpacked, refusing entries that would land outside outdir. With tar_subdir (e.g. "data"), only the tar
    entries under that directory are unpacked, directly into outdir. With may_fall_back, a registry that answers the
    TLS handshake in plain HTTP is then spoken to in plain HTTP (Docker's rule for loopback and insecure registries).
    """
    ref = parse_reference(reference)
    scheme = Scheme(plain_http=plain_http, may_fall_back=may_fall_back)
    with _session(ref, auth, scheme=scheme, ca_file=ca_file, purpose="pull") as session:
        digest, manifest = _get_manifest(session, what)
        outdir.mkdir(parents=True, exist_ok=True)
        outdir = Path(os.path.realpath(outdir))
        written: list[Path] = []
        for layer in manifest["layers"]:
            written.extend(_pull_layer(session, layer, outdir, tar_subdir))
    annotations = {str(k): str(v) for k, v in (manifest.get("annotations") or {}).items()}
    artifact_type = str(manifest.get("artifactType") or manifest.get("config", {}).get("mediaType", ""))
    log.info("pulled %s (%s): %d files into %s", ref, digest, len(written), outdir)
    return Pulled(digest=digest, files=sorted(set(written)), annotations=annotations, artifact_type=artifact_type)


def _session(ref: Reference, auth: Auth, *, scheme: Scheme, ca_file: Path | None, purpose: str) -> RegistrySession:
    return RegistrySession(
        ref,
        credentials_for(auth, ref.registry),
        scheme=scheme,
        ca_file=ca_file,
        purpose=purpose,
        retry_delays=RETRY_DELAYS_S,
    )


def _layer_for(path: Path, media_type: str) -> dict[str, Any]:
    if not path.is_file():
        raise OciError(f"cannot push {path}: not a file")
    with as_oci_error(f"reading {path}"):
        layer = cast(dict[str, Any], oras.oci.NewLayer(str(path), media_type=media_type))
    layer["annotations"] = {ANNOTATION_TITLE: path.name}
    return layer


def _refuse_duplicate_titles(layers: list[dict[str, Any]]) -> None:
    titles = [layer["annotations"][ANNOTATION_TITLE] for layer in layers]
    duplicates = sorted({title for title in titles if titles.count(title) > 1})
    if duplicates:
        raise OciError(f"cannot push two files with the same name: {', '.join(duplicates)}")


def _get_manifest(session: RegistrySession, what: str) -> tuple[str, dict[str, Any]]:
    """The reference's manifest digest and its image manifest: for an image index, this platform's manifest."""
    ref = session.ref
    accept = ", ".join((*_MANIFEST_MEDIA_TYPES, *_INDEX_MEDIA_TYPES))
    digest, document = session.get_manifest_document(ref.manifest_key, ref.digest, what, accept)
    if document.get("mediaType") in _INDEX_MEDIA_TYPES or "manifests" in document:
        chosen = _platform_manifest(document, str(ref))
        _, document = session.get_manifest_document(chosen, chosen, what, accept)
    _check_manifest(document, str(ref))
    return digest, document


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
        if not isinstance(layer, dict) or not DIGEST_RE.fullmatch(str(layer.get("digest", ""))):
            raise OciError(f"manifest of {ref} has a layer without a sha256/sha512 digest: {layer!r}")


def _pull_layer(session: RegistrySession, layer: dict[str, Any], outdir: Path, tar_subdir: str | None) -> list[Path]:
    annotations = layer.get("annotations") or {}
    title = annotations.get(ANNOTATION_TITLE)
    media_type = str(layer.get("mediaType", ""))
    unpack = str(annotations.get(ANNOTATION_UNPACK, "")).lower() == "true"
    if title and not unpack:
        target = outdir / _safe_title(str(title), session.ref)
        session.download_blob(layer, target)
        return [target]
    if unpack or media_type in TAR_LAYER_MEDIA_TYPES:
        with temporary_path_beside(outdir / ".kaito-layer") as archive:
            session.download_blob(layer, archive)
            return extract_tar(archive, outdir, subdir=tar_subdir, source=f"layer {layer['digest']} of {session.ref}")
    log.warning("skipping layer %s (%s) of %s: no title and not a tar layer", layer["digest"], media_type, session.ref)
    return []


def _safe_title(title: str, ref: Reference) -> str:
    if title in ("", ".", "..") or "/" in title or "\\" in title or "\x00" in title:
        raise OciError(f"{ref} has a layer titled {title!r}; refusing to write it (titles must be plain file names)")
    return title
