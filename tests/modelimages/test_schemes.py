"""Docker's rule for model transfers: HTTPS first; plain HTTP only for loopback or insecure registries that speak it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaito.oci.scheme import Scheme
from tests.modelimages.models import files_of, make_model
from tests.modelimages.test_push_pull import image, run_cli
from tests.registry import Registry, free_port, require_registry_binary


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous docker-registry on loopback that speaks plain HTTP, as the demos run one."""
    require_registry_binary()
    with Registry(tmp_path_factory.mktemp("plain"), auth="none", tls=False, access_log=True) as running:
        yield running


def address_off_loopback() -> str:
    """An address of this machine that is not on loopback (the one its default route leaves from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route's source address
        except OSError:
            pytest.skip("this machine has no network route, so no address off loopback")
        address: str = sock.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this machine has no address off loopback")
    return address


def cli(capsys: pytest.CaptureFixture[str], verb: str, target: str, tmp_path: Path, *flags: str) -> tuple[int, str]:
    if verb == "push-model":
        return run_cli(capsys, verb, "--model", str(tmp_path / "model"), "--image", target, *flags)
    where = ["--output", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    return run_cli(capsys, verb, "--image", target, *where, *flags)


def test_the_rule_lets_only_loopback_and_named_registries_fall_back_and_plain_http_is_plain_from_the_start() -> None:
    assert [Scheme.docker_rule(r).may_fall_back for r in ("localhost:5000", "127.0.0.9:80", "LOCALHOST")] == [True] * 3
    assert not Scheme.docker_rule("myregistry.azurecr.io").may_fall_back
    assert not Scheme.docker_rule("10.0.0.5:5000").may_fall_back
    assert Scheme.docker_rule("10.0.0.5:5000", insecure={"10.0.0.5:5000"}).may_fall_back
    assert not Scheme.docker_rule("10.0.0.5:5000", insecure={"10.0.0.5"}).may_fall_back  # host and port, as named
    explicit = Scheme.docker_rule("127.0.0.1:5000", plain_http=True)
    assert (explicit.name, explicit.may_fall_back) == ("http", False)
    assert Scheme.docker_rule("127.0.0.1:5000").name == "https"


def test_a_scheme_falls_back_only_when_allowed_and_the_registry_answers_tls_in_plain_http(
    plain: Registry, registry: Registry
) -> None:
    kept = Scheme(may_fall_back=False)
    assert not kept.falls_back(plain.address) and kept.name == "https"
    tls = Scheme(may_fall_back=True)
    assert not tls.falls_back(registry.address) and tls.name == "https"  # a TLS registry whose CA we lack stays TLS
    assert not tls.falls_back(f"127.0.0.1:{free_port()}") and tls.name == "https"  # nothing answers there
    downgraded = Scheme(may_fall_back=True)
    assert downgraded.falls_back(plain.address) and downgraded.name == "http"


def test_a_loopback_registry_in_plain_http_is_pushed_to_and_pulled_from_without_plain_http(
    plain: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "model", shards=2, seed=31)
    target = image(plain)
    code, err = cli(capsys, "push-model", target, tmp_path)
    assert code == 0, err
    code, err = cli(capsys, "pull-model", target, tmp_path)
    assert code == 0, err
    assert files_of(tmp_path / "out") == files_of(model)
    assert plain.requests_logged("GET", "/manifests/rev1") >= 1


def test_a_tls_registry_on_loopback_is_never_downgraded_when_its_certificate_fails(
    registry: Registry, plain: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = image(registry)
    code, err = cli(capsys, "pull-model", target, tmp_path)  # no --ca-file: the certificate is not trusted
    assert code == 1 and "certificate verify failed" in err, err
    assert not (tmp_path / "out").exists()


def test_a_registry_off_loopback_is_never_spoken_to_in_plain_http_unless_named_insecure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_registry_binary()
    outside = Registry(tmp_path / "registry", auth="none", tls=False, access_log=True)
    outside.host = address_off_loopback()
    with outside:
        model = make_model(tmp_path / "model", shards=1, seed=32)
        target = image(outside)
        code, err = cli(capsys, "push-model", target, tmp_path)
        assert code == 1 and f"TLS to registry {outside.address} failed" in err, err
        code, err = cli(capsys, "pull-model", target, tmp_path, "--plain-http")
        assert code == 2 and "not a loopback address" in err
        assert outside.requests_logged("POST", "/blobs/uploads/") == 0  # nothing went to it in plain HTTP

        named = ("--insecure-registry", outside.address)
        code, err = cli(capsys, "push-model", target, tmp_path, "--plain-http", *named)
        assert code == 0, err
        code, err = cli(capsys, "pull-model", target, tmp_path)
        assert code == 1 and f"TLS to registry {outside.address} failed" in err, err
        assert outside.requests_logged("GET", "/manifests/") == 0
        code, err = cli(capsys, "pull-model", target, tmp_path, *named)  # HTTPS first, then plain HTTP
        assert code == 0, err
        assert files_of(tmp_path / "out") == files_of(model)
