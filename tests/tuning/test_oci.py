"""Adapter and data artifacts against the real docker-registry: round trips, auth, errors, and unsafe images."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import re
import tarfile
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import torch
from safetensors.torch import save_file

from kaito.oci import client
from kaito.oci.adapters import (
    ADAPTER_ARTIFACT_TYPE,
    ADAPTER_CONFIG_MEDIA_TYPE,
    ADAPTER_WEIGHTS_MEDIA_TYPE,
    ANNOTATION_BASE_MODEL,
    pull_adapter,
)
from kaito.oci.client import pull, push_files
from kaito.oci.dockerconfig import Credentials, load
from kaito.oci.errors import OciError
from kaito.oci.reference import Reference
from kaito.tuning.artifacts import (
    DATASET_ARTIFACT_TYPE,
    add_pull_adapter_arguments,
    add_pull_data_arguments,
    add_push_adapter_arguments,
    pull_data,
    push_adapter,
    run_pull_adapter,
    run_pull_data,
    run_push_adapter,
)
from tests.registry import Registry, free_port, require_registry_binary, sha256_digest

BASE_MODEL = "microsoft/Phi-3-mini-4k-instruct"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"


# --- helpers ------------------------------------------------------------------------------------------------------


def make_adapter(directory: Path, base_model: str = BASE_MODEL) -> Path:
    """A small but real PEFT LoRA adapter directory: config plus safetensors weights."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": base_model,
    }
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    tensors = {f"{prefix}.lora_A.weight": torch.randn(8, 64), f"{prefix}.lora_B.weight": torch.randn(64, 8)}
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    return directory


def creds(registry: Registry, password: str | None = None) -> Credentials:
    return Credentials(username=registry.username, password=registry.password if password is None else password)


def image(registry: Registry, tag: str = "v1") -> str:
    return f"{registry.address}/adapters/{uuid.uuid4().hex[:10]}:{tag}"


class RawClient:
    """Talks the registry API directly, like a third-party client, to build images kaito did not push."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.http = requests.Session()
        self.http.auth = (registry.username, registry.password)
        self.http.verify = registry.verify
        self.http.trust_env = False  # REQUESTS_CA_BUNDLE would replace the session's CA

    def blob(self, repository: str, data: bytes, media_type: str, **annotations: str) -> dict[str, Any]:
        started = self.http.post(self.registry.url(f"/v2/{repository}/blobs/uploads/"))
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        separator = "&" if "?" in location else "?"
        digest = sha256_digest(data)
        done = self.http.put(f"{location}{separator}digest={digest}", data=data)
        assert done.status_code == 201, done.text
        descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data)}
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor

    def manifest(self, reference: Reference, document: dict[str, Any]) -> str:
        body = json.dumps(document).encode()
        url = self.registry.url(f"/v2/{reference.repository}/manifests/{reference.tag}")
        answer = self.http.put(url, data=body, headers={"Content-Type": document["mediaType"]})
        assert answer.status_code == 201, answer.text
        return sha256_digest(body)

    def docker_image(self, reference: Reference, layers: list[bytes]) -> str:
        """Push a docker v2 image (what `docker build` + `docker push` make) with these gzipped tar layers."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": client.DOCKER_MANIFEST,
            "config": self.blob(reference.repository, config, DOCKER_CONFIG),
            "layers": [self.blob(reference.repository, layer, DOCKER_LAYER) for layer in layers],
        }
        return self.manifest(reference, manifest)

    def artifact(self, reference: Reference, layers: list[dict[str, Any]]) -> str:
        manifest = {
            "schemaVersion": 2,
            "mediaType": client.OCI_MANIFEST,
            "artifactType": "application/vnd.test",
            "config": self.blob(reference.repository, b"{}", client.EMPTY_CONFIG_MEDIA_TYPE),
            "layers": layers,
        }
        return self.manifest(reference, manifest)

    def get_manifest(self, reference: Reference) -> requests.Response:
        url = self.registry.url(f"/v2/{reference.repository}/manifests/{reference.manifest_key}")
        return self.http.get(url, headers={"Accept": client.OCI_MANIFEST})


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(buffer.getvalue(), mtime=0)


@pytest.fixture
def raw(registry: Registry) -> Iterator[RawClient]:
    client = RawClient(registry)
    yield client
    client.http.close()


# --- round trips --------------------------------------------------------------------------------------------------


def test_push_then_pull_adapter_round_trip(registry: Registry, raw: RawClient, tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path / "trained")
    target = image(registry, "0.0.1")
    pushed = push_adapter(adapter, target, auth=creds(registry), ca_file=registry.ca_file)
    assert pushed.reference == target and pushed.digest.startswith("sha256:")

    pulled = pull_adapter(target, tmp_path / "served", auth=creds(registry), ca_file=registry.ca_file)
    assert pulled.digest == pushed.digest
    assert [path.name for path in pulled.files] == ["adapter_config.json", "adapter_model.safetensors"]
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (tmp_path / "served" / name).read_bytes() == (adapter / name).read_bytes()
    assert pulled.annotations[ANNOTATION_BASE_MODEL] == BASE_MODEL
    assert pulled.artifact_type == ADAPTER_ARTIFACT_TYPE

    answer = raw.get_manifest(Reference.parse(target))  # what any other registry client sees
    assert answer.status_code == 200
    assert answer.headers["Docker-Content-Digest"] == pushed.digest == sha256_digest(answer.content)
    manifest = answer.json()
    assert manifest["mediaType"] == client.OCI_MANIFEST
    assert manifest["artifactType"] == ADAPTER_ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == client.EMPTY_CONFIG_MEDIA_TYPE
    assert manifest["annotations"][ANNOTATION_BASE_MODEL] == BASE_MODEL
    assert manifest["annotations"][client.ANNOTATION_CREATED].endswith("Z")
    assert [(layer["mediaType"], layer["annotations"][client.ANNOTATION_TITLE]) for layer in manifest["layers"]] == [
        (ADAPTER_CONFIG_MEDIA_TYPE, "adapter_config.json"),
        (ADAPTER_WEIGHTS_MEDIA_TYPE, "adapter_model.safetensors"),
    ]
    blobs = sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]
    assert pushed.size == blobs + len(answer.content)


def test_pushing_the_same_adapter_again_reuses_blobs_and_gives_the_same_layers(
    registry: Registry, tmp_path: Path
) -> None:
    adapter = make_adapter(tmp_path / "a")
    first = push_adapter(adapter, image(registry), base_model="m", auth=creds(registry), ca_file=registry.ca_file)
    second = push_adapter(adapter, image(registry), base_model="m", auth=creds(registry), ca_file=registry.ca_file)
    assert first.size == second.size


def test_base_model_comes_from_the_adapter_config_or_must_be_given(registry: Registry, tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path / "a", base_model="")
    with pytest.raises(OciError, match="no base model"):
        push_adapter(adapter, image(registry), auth=creds(registry), ca_file=registry.ca_file)
    target = image(registry)
    push_adapter(adapter, target, base_model="org/model", auth=creds(registry), ca_file=registry.ca_file)
    pulled = pull_adapter(target, tmp_path / "out", auth=creds(registry), ca_file=registry.ca_file)
    assert pulled.annotations[ANNOTATION_BASE_MODEL] == "org/model"


def test_an_incomplete_adapter_dir_names_what_is_missing(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(OciError, match=r"missing adapter_model\.safetensors"):
        push_adapter(tmp_path, image(registry), auth=creds(registry), ca_file=registry.ca_file)


def test_chunked_upload_of_large_blobs(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "CHUNKED_UPLOAD_THRESHOLD", 1000)
    monkeypatch.setattr(client, "CHUNK_SIZE", 4096)
    payload = tmp_path / "big.bin"
    payload.write_bytes(bytes(range(256)) * 70)  # 17920 bytes: five chunks
    target = image(registry)
    pushed = push_files(
        target,
        [(payload, "application/octet-stream")],
        artifact_type="application/vnd.test",
        annotations={},
        auth=creds(registry),
        ca_file=registry.ca_file,
    )
    pulled = pull(target, tmp_path / "out", auth=creds(registry), ca_file=registry.ca_file)
    assert pulled.digest == pushed.digest
    assert (tmp_path / "out" / "big.bin").read_bytes() == payload.read_bytes()


# --- images built by others ---------------------------------------------------------------------------------------


def test_upstream_style_adapter_image_pulls_into_a_usable_adapter_dir(
    registry: Registry, raw: RawClient, tmp_path: Path
) -> None:
    adapter = make_adapter(tmp_path / "src")
    base_layer = tar_gz([special("bin", tarfile.DIRTYPE), regular("bin/sh", b"#!busybox")])
    data_layer = tar_gz(
        [
            special("data", tarfile.DIRTYPE),
            regular("data/adapter_config.json", (adapter / "adapter_config.json").read_bytes()),
            regular("./data/adapter_model.safetensors", (adapter / "adapter_model.safetensors").read_bytes()),
        ]
    )
    reference = Reference.parse(image(registry))
    digest = raw.docker_image(reference, [base_layer, data_layer])

    pulled = pull_adapter(reference, tmp_path / "served", auth=creds(registry), ca_file=registry.ca_file)
    assert pulled.digest == digest
    assert sorted(path.name for path in (tmp_path / "served").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert (tmp_path / "served/adapter_model.safetensors").read_bytes() == (
        adapter / "adapter_model.safetensors"
    ).read_bytes()


def test_an_image_without_an_adapter_is_named(registry: Registry, raw: RawClient, tmp_path: Path) -> None:
    reference = Reference.parse(image(registry))
    raw.docker_image(reference, [tar_gz([regular("data/notes.txt", b"hi")])])
    with pytest.raises(OciError, match=rf"image {reference} holds no LoRA adapter \(no adapter_config\.json\)"):
        pull_adapter(reference, tmp_path / "out", auth=creds(registry), ca_file=registry.ca_file)


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (regular("data/../../escape.txt", b"x"), "unsafe path"),
        (regular("/etc/escape.txt", b"x"), "unsafe path"),
        (special("data/link", tarfile.SYMTYPE, "/etc/passwd"), "points out of the output directory"),
        (special("data/link", tarfile.SYMTYPE, "../../etc"), "points out of the output directory"),
        (special("data/tty", tarfile.CHRTYPE), "device, FIFO or other special file"),
        (special("data/hard", tarfile.LNKTYPE, "etc/passwd"), "has no target inside the output"),
    ],
)
def test_unsafe_tar_entries_are_refused(
    registry: Registry,
    raw: RawClient,
    tmp_path: Path,
    member: tuple[tarfile.TarInfo, bytes | None],
    message: str,
) -> None:
    reference = Reference.parse(image(registry))
    raw.docker_image(reference, [tar_gz([regular("data/adapter_config.json", b"{}"), member])])
    outdir = tmp_path / "deep" / "out"
    with pytest.raises(OciError, match=message):
        pull_data(reference, outdir, auth=creds(registry), ca_file=registry.ca_file)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "deep" / "escape.txt").exists()
    assert not (outdir / "link").exists() and not (outdir / "tty").exists()


def test_symlinks_that_stay_inside_the_output_are_kept(registry: Registry, raw: RawClient, tmp_path: Path) -> None:
    reference = Reference.parse(image(registry))
    members = [special("data/up", tarfile.SYMTYPE, "."), regular("data/up/file.txt", b"inside is fine")]
    raw.docker_image(reference, [tar_gz(members)])
    pulled = pull_data(reference, tmp_path / "out", auth=creds(registry), ca_file=registry.ca_file)
    assert (tmp_path / "out" / "file.txt").read_bytes() == b"inside is fine"
    assert len(pulled.files) == 1


def test_titles_that_are_paths_are_refused(registry: Registry, raw: RawClient, tmp_path: Path) -> None:
    reference = Reference.parse(image(registry))
    layer = raw.blob(reference.repository, b"x", "text/plain", **{client.ANNOTATION_TITLE: "../x.txt"})
    raw.artifact(reference, [layer])
    with pytest.raises(OciError, match=r"titled '\.\./x\.txt'"):
        pull(reference, tmp_path / "out", auth=creds(registry), ca_file=registry.ca_file)
    assert not (tmp_path / "x.txt").exists()


def test_a_tampered_blob_fails_the_digest_check(registry: Registry, raw: RawClient, tmp_path: Path) -> None:
    reference = Reference.parse(image(registry))
    layer = raw.blob(reference.repository, b"original content", "text/plain", **{client.ANNOTATION_TITLE: "f.txt"})
    raw.artifact(reference, [layer])
    hex_digest = layer["digest"].removeprefix("sha256:")
    stored = registry.workdir / f"storage/docker/registry/v2/blobs/sha256/{hex_digest[:2]}/{hex_digest}/data"
    stored.write_bytes(b"tampered content")  # same length: only the digest can tell
    with pytest.raises(OciError, match=f"should have digest {layer['digest']} but the download has sha256:"):
        pull(reference, tmp_path / "out", auth=creds(registry), ca_file=registry.ca_file)
    assert not (tmp_path / "out" / "f.txt").exists()


def test_an_oras_packed_directory_is_unpacked(registry: Registry, raw: RawClient, tmp_path: Path) -> None:
    reference = Reference.parse(image(registry))
    packed = tar_gz([special("data", tarfile.DIRTYPE), regular("data/train.jsonl", b'{"text": "hi"}\n')])
    annotations = {client.ANNOTATION_TITLE: "data", client.ANNOTATION_UNPACK: "true"}
    raw.artifact(reference, [raw.blob(reference.repository, packed, client.OCI_TAR_GZIP_LAYER, **annotations)])
    pulled = pull_data(reference, tmp_path / "out", auth=creds(registry), ca_file=registry.ca_file)
    assert [path.name for path in pulled.files] == ["train.jsonl"]
    assert (tmp_path / "out" / "train.jsonl").read_text() == '{"text": "hi"}\n'


def test_a_data_artifact_and_an_index_pull(registry: Registry, raw: RawClient, tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"text": "a"}\n')
    target = Reference.parse(image(registry))
    pushed = push_files(
        target,
        [(tmp_path / "train.jsonl", "application/jsonl")],
        artifact_type=DATASET_ARTIFACT_TYPE,
        annotations={},
        auth=creds(registry),
        ca_file=registry.ca_file,
    )
    index_ref = Reference(registry=target.registry, repository=target.repository, tag="multi")
    platform = {"os": "linux", "architecture": "amd64"}
    size = len(raw.get_manifest(target).content)
    entry = {"mediaType": client.OCI_MANIFEST, "digest": pushed.digest, "size": size, "platform": platform}
    index_digest = raw.manifest(index_ref, {"schemaVersion": 2, "mediaType": client.OCI_INDEX, "manifests": [entry]})
    pulled = pull_data(index_ref, tmp_path / "out", auth=creds(registry), ca_file=registry.ca_file)
    assert pulled.digest == index_digest
    assert pulled.artifact_type == DATASET_ARTIFACT_TYPE
    assert (tmp_path / "out" / "train.jsonl").read_text() == '{"text": "a"}\n'
    by_digest = pull_data(
        target.with_digest(pushed.digest), tmp_path / "again", auth=creds(registry), ca_file=registry.ca_file
    )
    assert by_digest.digest == pushed.digest


# --- errors -------------------------------------------------------------------------------------------------------


def test_a_wrong_password_fails_fast_naming_the_host_user_and_401(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = make_adapter(tmp_path / "a")
    caplog.set_level(logging.WARNING, logger="kaito.tuning")
    with pytest.raises(OciError) as raised:
        push_adapter(adapter, image(registry), auth=creds(registry, "wrong"), ca_file=registry.ca_file)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()], "waited to retry a refusal"
    message = str(raised.value)
    assert f"registry {registry.address} refused the credentials for user '{registry.username}'" in message
    assert "HTTP 401" in message and "check the push secret" in message


def test_missing_credentials_are_named(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(OciError, match=rf"registry {registry.address} requires credentials to pull .* none were given"):
        pull_adapter(image(registry), tmp_path / "out", auth=None, ca_file=registry.ca_file)


def test_a_missing_tag_is_not_found(registry: Registry, tmp_path: Path) -> None:
    target = image(registry, "nope")
    with pytest.raises(OciError, match=rf"adapter image {re.escape(target)} not found in registry .*HTTP 404"):
        pull_adapter(target, tmp_path / "out", auth=creds(registry), ca_file=registry.ca_file)


def test_tls_problems_name_the_host_and_the_fix(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(OciError, match=rf"TLS to registry {registry.address} failed: certificate verify failed"):
        pull(image(registry), tmp_path, auth=creds(registry))
    with pytest.raises(OciError, match="leave out --plain-http"):
        pull(image(registry), tmp_path, auth=creds(registry), plain_http=True)


def test_connection_refused_is_retried_then_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "RETRY_DELAYS_S", (0.01, 0.01))
    port = free_port()
    with pytest.raises(OciError, match=rf"cannot connect to registry 127\.0\.0\.1:{port}: connection refused"):
        pull(f"127.0.0.1:{port}/a/b:1", tmp_path, auth=None)


class FakeRegistry:
    """An HTTP server answering every request with one status, counting requests: for the retry policy."""

    def __init__(self, status: int) -> None:
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests += 1
                body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "try later"}]}).encode()
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="fake"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("status", "tries"), [(503, 3), (500, 3), (429, 3), (404, 1), (401, 2), (403, 1)])
def test_only_transient_statuses_are_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int, tries: int
) -> None:
    monkeypatch.setattr(client, "RETRY_DELAYS_S", (0.01, 0.01))
    fake = FakeRegistry(status)
    try:
        with pytest.raises(OciError, match=f"HTTP {status}"):
            pull(f"{fake.address}/a/b:1", tmp_path, auth=Credentials("u", "p"), plain_http=True)
    finally:
        fake.close()
    assert fake.requests == tries  # 401: one try without, one with the credentials


def test_bearer_token_flow_with_password_and_identity_token(tmp_path: Path) -> None:
    require_registry_binary()
    with Registry(tmp_path / "registry", auth="token") as registry:
        adapter = make_adapter(tmp_path / "a")
        target = image(registry)
        pushed = push_adapter(adapter, target, auth=creds(registry), ca_file=registry.ca_file)
        assert set(registry.token_requests) == {"basic"}

        token = load(registry.docker_config(tmp_path / "acr.json", identity_token=registry.identity_token))
        pulled = pull_adapter(target, tmp_path / "out", auth=token, ca_file=registry.ca_file)
        assert pulled.digest == pushed.digest and registry.token_requests[-1] == "refresh_token"

        with pytest.raises(OciError, match=r"refused the credentials for user 'kaito' \(token service .* HTTP 401"):
            pull_adapter(target, tmp_path / "x", auth=creds(registry, "wrong"), ca_file=registry.ca_file)
        with pytest.raises(OciError, match="requires credentials to pull"):
            pull_adapter(target, tmp_path / "x", auth=None, ca_file=registry.ca_file)


def test_push_refuses_digest_references_and_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("1")
    (tmp_path / "f.txt").write_text("2")
    files = [(tmp_path / "f.txt", "text/plain"), (tmp_path / "a" / "f.txt", "text/plain")]
    with pytest.raises(OciError, match=r"same name: f\.txt"):
        push_files("r.io/x:1", files, artifact_type="t", annotations={}, auth=None)
    with pytest.raises(OciError, match="push to a tag"):
        push_files("r.io/x@sha256:" + "c" * 64, files[:1], artifact_type="t", annotations={}, auth=None)
    with pytest.raises(OciError, match="not a file"):
        push_files("r.io/x:1", [(tmp_path / "nope", "t")], artifact_type="t", annotations={}, auth=None)


def test_an_anonymous_plain_http_registry(tmp_path: Path) -> None:
    require_registry_binary()
    with Registry(tmp_path / "registry", auth="none", tls=False) as registry:
        target = image(registry)
        pushed = push_adapter(make_adapter(tmp_path / "a"), target, auth=None, plain_http=True)
        assert pull_adapter(target, tmp_path / "out", auth=None, plain_http=True).digest == pushed.digest
        with pytest.raises(OciError, match=rf"TLS to registry {registry.address} failed: .*use --plain-http"):
            pull_adapter(target, tmp_path / "out", auth=None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:5000/adapters/phi3:0.0.1", Reference("localhost:5000", "adapters/phi3", "0.0.1")),
        ("localhost/a", Reference("localhost", "a", "latest")),
        ("myacr.azurecr.io/x/y@sha256:" + "a" * 64, Reference("myacr.azurecr.io", "x/y", None, "sha256:" + "a" * 64)),
        ("r.io/x:1@sha256:" + "b" * 64, Reference("r.io", "x", "1", "sha256:" + "b" * 64)),
        ("docker.io/library/foo", Reference("docker.io", "library/foo", "latest")),
        ("foo", Reference("docker.io", "library/foo", "latest")),
        ("index.docker.io/foo:2", Reference("docker.io", "library/foo", "2")),
        ("org/foo", Reference("docker.io", "org/foo", "latest")),
        ("r.io/my.team/x-y__z", Reference("r.io", "my.team/x-y__z", "latest")),
    ],
)
def test_references_parse_like_docker(text: str, expected: Reference) -> None:
    assert Reference.parse(text) == expected
    assert Reference.parse(str(expected)) == expected


@pytest.mark.parametrize(
    "text", ["", "r.io/", "r.io/Upper", "r.io/x:bad tag", "r.io/x@sha256:short", "https://r.io/x", "r.io/x:"]
)
def test_bad_references_name_the_accepted_form(text: str) -> None:
    with pytest.raises(OciError) as raised:
        Reference.parse(text)
    assert f"invalid image reference '{text}'" in str(raised.value)
    assert "<registry>/<repository>[:<tag>]" in str(raised.value)


# --- commands -----------------------------------------------------------------------------------------------------


def parse(add: Any, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def test_commands_push_and_pull_end_to_end(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = make_adapter(tmp_path / "output")
    push_secret = registry.docker_config(tmp_path / "push-secret" / ".dockerconfigjson")
    target = image(registry)
    tls = ["--ca-file", str(registry.ca_file)]
    argv = ["--adapter-dir", str(adapter), "--image", target, "--docker-config", str(push_secret.parent)]
    argv += ["--digest-file", str(tmp_path / "digest"), *tls]
    assert run_push_adapter(parse(add_push_adapter_arguments, argv)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["image"] == target and summary["size"] > 0
    assert (tmp_path / "digest").read_text().strip() == f"{target}@{summary['digest']}"

    other = tmp_path / "other-secret.json"
    other.write_text(json.dumps({"auths": {"elsewhere.io": {"username": "x", "password": "y"}}}))
    argv = ["--image", target, "--output", str(tmp_path / "adapter"), "--docker-config", str(other)]
    argv += ["--docker-config", str(push_secret), *tls]
    assert run_pull_adapter(parse(add_pull_adapter_arguments, argv)) == 0
    pulled = json.loads(capsys.readouterr().out)
    assert pulled == {
        "image": target,
        "digest": summary["digest"],
        "files": ["adapter_config.json", "adapter_model.safetensors"],
    }
    argv = ["--image", target, "--output", str(tmp_path / "data"), "--docker-config", str(push_secret), *tls]
    assert run_pull_data(parse(add_pull_data_arguments, argv)) == 0
    assert json.loads(capsys.readouterr().out)["files"] == ["adapter_config.json", "adapter_model.safetensors"]


def test_command_errors_are_one_line_with_an_exit_code(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    adapter = make_adapter(tmp_path / "output")
    wrong = registry.docker_config(tmp_path / "wrong.json", password="wrong")
    base = ["--adapter-dir", str(adapter), "--ca-file", str(registry.ca_file)]
    assert run_push_adapter(parse(add_push_adapter_arguments, [*base, "--image", image(registry)])) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kaito push-adapter: registry {registry.address} requires credentials")
    assert err.count("\n") == 1

    args = parse(add_push_adapter_arguments, [*base, "--image", image(registry), "--docker-config", str(wrong)])
    assert run_push_adapter(args) == 1
    assert f"refused the credentials for user 'kaito' (from {wrong})" in capsys.readouterr().err

    assert run_push_adapter(parse(add_push_adapter_arguments, [*base, "--image", "Bad/Ref"])) == 2
    assert capsys.readouterr().err.startswith("kaito push-adapter: --image: invalid image reference 'Bad/Ref'")
    missing = tmp_path / "missing.json"
    assert run_pull_data(parse(add_pull_data_arguments, ["--image", "r.io/x", "--docker-config", str(missing)])) == 2
    assert "no such file or directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        parse(add_pull_adapter_arguments, ["--image", "r.io/x"])
    assert exited.value.code == 2


def test_a_docker_config_is_searched_for_the_registry_of_the_reference(registry: Registry, tmp_path: Path) -> None:
    secret = registry.docker_config(tmp_path / "s" / ".dockerconfigjson")
    config = load([secret.parent])
    target = image(registry)
    pushed = push_adapter(make_adapter(tmp_path / "a"), target, auth=config, ca_file=registry.ca_file)
    assert pull_adapter(target, tmp_path / "out", auth=config, ca_file=registry.ca_file).digest == pushed.digest
    with pytest.raises(OciError, match="none were given"):
        pull_adapter(target, tmp_path / "out", auth=load([]), ca_file=registry.ca_file)
