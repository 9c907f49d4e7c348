"""Model images against the real docker-registry: round trips, the cache's reuse and sharing, failures, resumption."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry

from kaito.api.modelimage import ANNOTATION_TITLE, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, LAYER_SAFETENSORS
from kaito.cli import main
from kaito.modelimages.cache import MARKER, ModelCache
from kaito.modelimages.progress import TransferMetrics
from kaito.modelimages.pull import pull_model
from kaito.modelimages.push import push_model
from kaito.oci.dockerconfig import Credentials
from kaito.oci.errors import OciError
from kaito.oci.reference import Reference
from tests.modelimages.models import files_of, make_model
from tests.modelimages.proxy import CuttingProxy
from tests.registry import Registry


def creds(registry: Registry, password: str | None = None) -> Credentials:
    return Credentials(username=registry.username, password=registry.password if password is None else password)


def image(registry: Registry, address: str | None = None) -> str:
    return f"{address or registry.address}/models/m{uuid.uuid4().hex[:10]}:rev1"


def blob_gets(registry: Registry, ref: str) -> int:
    return registry.requests_logged("GET", f"/v2/{Reference.parse(ref).repository}/blobs/")


def cache_leftovers(cache: Path) -> dict[str, list[str]]:
    """What a failed pull may not leave: partial files, and model records."""
    return {sub: sorted(p.name for p in (cache / sub).iterdir()) for sub in ("tmp", "models")}


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model")


def pushed(registry: Registry, model: Path, **options: object) -> str:
    target = image(registry)
    push_model(model, target, auth=creds(registry), ca_file=registry.ca_file, chunk_size=100_000, **options)  # type: ignore[arg-type]
    return target


def test_push_then_pull_gives_the_same_files_as_a_model_image(registry: Registry, model: Path, tmp_path: Path) -> None:
    target = image(registry)
    result = push_model(
        model,
        target,
        auth=creds(registry),
        ca_file=registry.ca_file,
        chunk_size=100_000,
        source_repository="org/tiny",
        revision="abc123",
    )
    assert result.uploaded_blobs == len(files_of(model)) and result.skipped_blobs == 0
    assert registry.requests_logged("PATCH", "/blobs/uploads/") >= 3 * 3  # each 300 kB shard in 100 kB chunks

    cache = ModelCache(tmp_path / "cache")
    pulled = pull_model(target, tmp_path / "out", cache=cache, auth=creds(registry), ca_file=registry.ca_file)
    assert files_of(tmp_path / "out") == files_of(model)
    assert pulled.digest == result.digest
    assert pulled.config.kv_heads == 2 and pulled.config.source_repository == "org/tiny"
    assert json.loads((tmp_path / "out" / MARKER).read_bytes()) == {"image": target, "digest": result.digest}

    answer = requests.get(  # what any other registry client sees
        registry.url(f"/v2/{Reference.parse(target).repository}/manifests/rev1"),
        auth=(registry.username, registry.password),
        verify=registry.verify,
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    ).json()
    assert answer["artifactType"] == ARTIFACT_TYPE and answer["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    titles = {layer["annotations"][ANNOTATION_TITLE]: layer["mediaType"] for layer in answer["layers"]}
    assert set(titles) == set(files_of(model)) and titles["original/params.json"].endswith("+json")
    assert titles["model-00001-of-00003.safetensors"] == LAYER_SAFETENSORS
    assert answer["annotations"]["org.opencontainers.image.revision"] == "abc123"


def test_a_second_pull_on_the_same_cache_downloads_nothing(registry: Registry, model: Path, tmp_path: Path) -> None:
    target = pushed(registry, model)
    cache = ModelCache(tmp_path / "cache")
    first = pull_model(target, tmp_path / "a", cache=cache, auth=creds(registry), ca_file=registry.ca_file)
    gets = blob_gets(registry, target)
    assert first.downloaded_blobs == gets == len(files_of(model)) + 1  # every file and the config

    second = pull_model(target, tmp_path / "b", cache=cache, auth=creds(registry), ca_file=registry.ca_file)
    assert second.downloaded_blobs == 0 and second.downloaded_bytes == 0
    assert blob_gets(registry, target) == gets
    assert files_of(tmp_path / "b") == files_of(model)
    shard = "model-00001-of-00003.safetensors"
    assert os.path.samefile(tmp_path / "a" / shard, tmp_path / "b" / shard)  # both link the one cached blob


def test_concurrent_pulls_of_one_model_download_each_blob_once(registry: Registry, model: Path, tmp_path: Path) -> None:
    target = pushed(registry, model)
    results: dict[str, int] = {}

    def pull(name: str) -> None:
        cache = ModelCache(tmp_path / "cache")  # each its own handle, as two pods' init steps would have
        pulled = pull_model(target, tmp_path / name, cache=cache, auth=creds(registry), ca_file=registry.ca_file)
        results[name] = pulled.downloaded_blobs

    threads = [threading.Thread(target=pull, args=(name,)) for name in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert blob_gets(registry, target) == len(files_of(model)) + 1
    assert sum(results.values()) == len(files_of(model)) + 1
    for name in ("a", "b", "c"):
        assert files_of(tmp_path / name) == files_of(model)


def test_a_large_blob_comes_in_byte_ranges_and_is_verified(registry: Registry, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", shards=1, shard_bytes=1_000_000)
    target = pushed(registry, model)
    cache = ModelCache(tmp_path / "cache")
    pull_model(
        target, tmp_path / "out", cache=cache, auth=creds(registry), ca_file=registry.ca_file, range_part=200_000
    )
    assert files_of(tmp_path / "out") == files_of(model)
    assert blob_gets(registry, target) == len(files_of(model)) + 1 + 3  # the shard in 4 ranges


def test_progress_is_exported_on_the_callers_metrics_registry(registry: Registry, model: Path, tmp_path: Path) -> None:
    target = pushed(registry, model)
    metrics_registry = CollectorRegistry()
    ticks = iter(range(10_000))
    pull_model(
        target,
        tmp_path / "out",
        cache=ModelCache(tmp_path / "cache"),
        auth=creds(registry),
        ca_file=registry.ca_file,
        metrics=TransferMetrics(metrics_registry),
        clock=lambda: float(next(ticks)),
    )
    labels = {"direction": "pull", "image": target}
    total = sum(len(data) for data in files_of(model).values())
    assert (metrics_registry.get_sample_value("kaito_model_transfer_total_bytes", labels) or 0) > total
    done = metrics_registry.get_sample_value("kaito_model_transfer_bytes", labels)
    assert done == metrics_registry.get_sample_value("kaito_model_transfer_total_bytes", labels)
    assert metrics_registry.get_sample_value("kaito_model_transfer_eta_seconds", labels) == 0
    downloaded = metrics_registry.get_sample_value(
        "kaito_model_transfer_blobs_total", {**labels, "outcome": "downloaded"}
    )
    assert downloaded == len(files_of(model)) + 1


def test_push_skips_the_blobs_the_registry_has(registry: Registry, model: Path, tmp_path: Path) -> None:
    target = pushed(registry, model)
    uploads = registry.requests_logged("POST", "/blobs/uploads/")
    retagged = target.replace(":rev1", ":rev2")  # blobs belong to a repository: the same one, another tag
    again = push_model(model, retagged, auth=creds(registry), ca_file=registry.ca_file)
    assert again.uploaded_blobs == 0 and again.skipped_blobs == len(files_of(model))
    assert registry.requests_logged("POST", "/blobs/uploads/") == uploads  # not even the config went up again
    assert again.digest == push_model(model, target, auth=creds(registry), ca_file=registry.ca_file).digest


@pytest.fixture
def proxy(registry: Registry) -> Iterator[CuttingProxy]:
    running = CuttingProxy(registry.port)
    yield running
    running.close()


def test_an_interrupted_chunked_upload_resumes(registry: Registry, proxy: CuttingProxy, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model", shards=1, shard_bytes=2_000_000, seed=7)
    target = image(registry, proxy.address)
    auth = creds(registry)
    proxy.cut_after(1_200_000)  # in the middle of the shard's chunks
    push_model(model, target, auth=auth, ca_file=registry.ca_file, chunk_size=256_000, parallel=1)
    assert proxy.cuts == 1
    pulled = pull_model(target, tmp_path / "out", cache=ModelCache(tmp_path / "c"), auth=auth, ca_file=registry.ca_file)
    assert files_of(pulled.output) == files_of(model)


def test_a_push_that_broke_off_skips_what_arrived_when_run_again(
    registry: Registry, proxy: CuttingProxy, tmp_path: Path
) -> None:
    model = make_model(tmp_path / "model", shards=4, shard_bytes=200_000, seed=11)
    target = image(registry, proxy.address)
    proxy.cut_after(500_000, forever=True)  # the network goes away for good after two shards or so
    with pytest.raises(OciError, match=proxy.address):
        push_model(model, target, auth=creds(registry), ca_file=registry.ca_file, parallel=1)
    proxy.disarm()
    again = push_model(model, target, auth=creds(registry), ca_file=registry.ca_file, parallel=1)
    assert again.skipped_blobs >= 2 and again.uploaded_blobs + again.skipped_blobs == len(files_of(model))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def pull_args(registry: Registry, target: str, tmp_path: Path, config: Path) -> list[str]:
    assert registry.ca_file is not None
    return [
        "pull-model",
        "--image",
        target,
        "--output",
        str(tmp_path / "out"),
        "--cache",
        str(tmp_path / "cache"),
        "--docker-config",
        str(config),
        "--ca-file",
        str(registry.ca_file),
    ]


def test_a_tampered_blob_fails_with_a_digest_mismatch_and_leaves_nothing_half_written(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "model", shards=2, seed=21)
    target = pushed(registry, model)
    shard = (model / "model-00002-of-00002.safetensors").read_bytes()
    hexdigest = hashlib.sha256(shard).hexdigest()
    stored = registry.workdir / "storage/docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    stored.write_bytes(b"\x00" * len(shard))  # same size, other bytes
    config = registry.docker_config(tmp_path / "secret" / ".dockerconfigjson")
    code, err = run_cli(capsys, *pull_args(registry, target, tmp_path, config))
    assert code == 1
    assert f"cannot pull {target}" in err and "digest mismatch" in err and hexdigest in err
    assert cache_leftovers(tmp_path / "cache") == {"tmp": [], "models": []}
    assert not (tmp_path / "cache" / "blobs" / "sha256" / hexdigest).exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_a_missing_tag_fails_with_the_registrys_words(
    registry: Registry, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = pushed(registry, model).replace(":rev1", ":nope")
    config = registry.docker_config(tmp_path / "secret" / ".dockerconfigjson")
    code, err = run_cli(capsys, *pull_args(registry, target, tmp_path, config))
    assert code == 1 and f"cannot pull {target}" in err and "MANIFEST_UNKNOWN" in err
    assert cache_leftovers(tmp_path / "cache") == {"tmp": [], "models": []}


def test_a_wrong_password_fails_with_the_registrys_words(
    registry: Registry, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = pushed(registry, model)
    config = registry.docker_config(tmp_path / "secret" / ".dockerconfigjson", password="wrong")
    code, err = run_cli(capsys, *pull_args(registry, target, tmp_path, config))
    assert code == 1 and f"cannot pull {target}" in err and "UNAUTHORIZED" in err
    assert cache_leftovers(tmp_path / "cache") == {"tmp": [], "models": []}


def test_the_cli_pushes_and_pulls_and_refuses_plain_http_off_loopback(
    registry: Registry, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert registry.ca_file is not None
    config = registry.docker_config(tmp_path / "secret" / ".dockerconfigjson")
    target = image(registry)
    code, _ = run_cli(
        capsys,
        "push-model",
        "--model",
        str(model),
        "--image",
        target,
        "--docker-config",
        str(config),
        "--ca-file",
        str(registry.ca_file),
    )
    assert code == 0
    code, _ = run_cli(capsys, *pull_args(registry, target, tmp_path, config))
    assert code == 0 and files_of(tmp_path / "out") == files_of(model)
    code, err = run_cli(capsys, "pull-model", "--image", "registry.example.com/m:1", "--output", "x", "--plain-http")
    assert code == 2 and "loopback" in err


def test_in_a_pod_the_pull_prints_progress_lines_and_leaves_its_failure_in_the_termination_message(
    registry: Registry, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = pushed(registry, model)
    config = registry.docker_config(tmp_path / "secret" / ".dockerconfigjson")
    assert main([*pull_args(registry, target, tmp_path, config), "--progress-lines"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    progress = [line["progress"] for line in lines if "progress" in line]
    assert progress[0]["bytes"] == 0 and progress[-1]["bytes"] == progress[-1]["totalBytes"] > 0
    assert set(progress[-1]) == {"bytes", "totalBytes", "bytesPerSecond", "etaSeconds"}
    assert "digest" in lines[-1]  # the summary stays last
    message = tmp_path / "termination-log"
    missing = target.replace(":rev1", ":gone")
    argv = [*pull_args(registry, missing, tmp_path, config), "--termination-message-path", str(message)]
    assert main(argv) == 1
    assert message.read_text() == capsys.readouterr().err.strip()
    assert f"cannot pull {missing}" in message.read_text() and "MANIFEST_UNKNOWN" in message.read_text()
