"""Docker config parsing: the shapes Kubernetes secrets and docker write, host matching, merging, clear errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from kaito.oci.dockerconfig import (
    Credentials,
    DockerConfigError,
    default_docker_config_path,
    encode_auth,
    load,
    load_docker_config,
    registry_host,
)


def write(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_auth_field_username_password_fields_and_identity_token(tmp_path: Path) -> None:
    config = load_docker_config(
        write(
            tmp_path / "config.json",
            {
                "auths": {
                    "myacr.azurecr.io": {"auth": encode_auth("bob", "p:a:ss")},
                    "ghcr.io": {"username": "alice", "password": "s3cret"},
                    "other.azurecr.io": {
                        "username": "00000000-0000-0000-0000-000000000000",
                        "identitytoken": "refresh-me",
                    },
                }
            },
        )
    )
    assert config.credentials_for("myacr.azurecr.io") == Credentials(username="bob", password="p:a:ss")
    assert config.credentials_for("ghcr.io") == Credentials(username="alice", password="s3cret")
    token = config.credentials_for("other.azurecr.io")
    assert token is not None and token.identity_token == "refresh-me"
    assert config.credentials_for("unknown.example.com") is None


@pytest.mark.parametrize(
    "key",
    [
        "localhost:5000",
        "https://localhost:5000",
        "http://localhost:5000/",
        "https://localhost:5000/v2/",
        "LOCALHOST:5000",
    ],
)
def test_registry_keys_match_the_way_docker_matches_them(tmp_path: Path, key: str) -> None:
    config = load_docker_config(write(tmp_path / "c.json", {"auths": {key: {"auth": encode_auth("u", "p")}}}))
    assert config.credentials_for("localhost:5000") == Credentials(username="u", password="p")


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io", "docker.io"])
def test_every_docker_hub_alias_means_docker_io(tmp_path: Path, key: str) -> None:
    config = load_docker_config(write(tmp_path / "c.json", {"auths": {key: {"auth": encode_auth("u", "p")}}}))
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert config.credentials_for(name) == Credentials(username="u", password="p")
    assert registry_host(key) == "docker.io"


def test_several_pull_secrets_merge_and_the_first_naming_a_host_wins(tmp_path: Path) -> None:
    first = write(tmp_path / "secret-a" / ".dockerconfigjson", {"auths": {"a.io": {"auth": encode_auth("a1", "x")}}})
    write(
        tmp_path / "secret-b" / ".dockerconfigjson",
        {"auths": {"a.io": {"auth": encode_auth("a2", "y")}, "b.io": {"auth": encode_auth("b", "z")}}},
    )
    config = load([first.parent, tmp_path / "secret-b"])
    assert config.credentials_for("a.io") == Credentials(username="a1", password="x")
    assert config.credentials_for("b.io") == Credentials(username="b", password="z")
    assert config.sources == (first, tmp_path / "secret-b" / ".dockerconfigjson")


def test_a_directory_may_hold_config_json_instead(tmp_path: Path) -> None:
    write(tmp_path / "docker" / "config.json", {"auths": {"a.io": {"auth": encode_auth("u", "p")}}})
    assert load(tmp_path / "docker").credentials_for("a.io") == Credentials(username="u", password="p")


def test_entries_without_credentials_are_ignored(tmp_path: Path) -> None:
    config = load_docker_config(write(tmp_path / "c.json", {"auths": {"a.io": {}, "b.io": {"auth": ""}}}))
    assert config.auths == {}


def test_credentials_never_show_their_secret() -> None:
    shown = repr(Credentials(username="bob", password="hunter2", identity_token="tok"))
    assert "hunter2" not in shown and "tok'" not in shown and "bob" in shown
    assert Credentials(username="bob", password="x").describe() == "user 'bob'"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "not a readable JSON docker config"),
        ([], "expected a JSON object"),
        ({"a.io": {"auth": "eA=="}}, 'has no "auths" object'),
        ({"auths": []}, '"auths" is an array, not an object'),
        ({"auths": {"a.io": "x"}}, "auths['a.io'] is a string, not an object"),
        ({"auths": {"a.io": {"auth": "!!!not base64"}}}, "auths['a.io'].auth is not base64"),
        ({"auths": {"a.io": {"auth": base64.b64encode(b"nocolon").decode()}}}, "without ':'"),
        ({"auths": {"a.io": {"username": 7}}}, "auths['a.io'].username is a number, not a string"),
    ],
)
def test_broken_configs_name_the_file_and_the_problem(tmp_path: Path, document: Any, message: str) -> None:
    path = write(tmp_path / "secret.json", document)
    with pytest.raises(DockerConfigError) as raised:
        load_docker_config(path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_missing_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(DockerConfigError, match="no such file or directory"):
        load(tmp_path / "nope.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DockerConfigError, match=r"holds neither \.dockerconfigjson nor config\.json"):
        load(tmp_path / "empty")


def test_default_config_comes_from_docker_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    assert default_docker_config_path() is None
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert default_docker_config_path() is None
    config = write(tmp_path / "config.json", {"auths": {}})
    assert default_docker_config_path() == config
