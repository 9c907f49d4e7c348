"""Registry credentials from docker config files: Kubernetes image pull/push secrets and docker's config.json."""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOCKER_CONFIG_KEY = ".dockerconfigjson"  # the key of kubernetes.io/dockerconfigjson Secrets
CONFIG_JSON = "config.json"
DOCKER_HUB = "docker.io"
# Names docker itself uses for Docker Hub in config files; all of them mean the same registry.
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


class DockerConfigError(Exception):
    """A docker config file that cannot be used; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class Credentials:
    """What a client presents to one registry: a username and password, or an identity (refresh) token."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    source: str = field(default="", compare=False)

    @property
    def is_empty(self) -> bool:
        return not (self.username or self.password or self.identity_token)

    def describe(self) -> str:
        """How error messages name these credentials, without revealing the secret."""
        if self.identity_token:
            return "an identity token" + (f" for user '{self.username}'" if self.username else "")
        return f"user '{self.username}'"


@dataclass(frozen=True)
class DockerConfig:
    """Credentials by registry host, from one or more config files (the first file naming a host wins)."""

    auths: dict[str, Credentials] = field(default_factory=dict)
    sources: tuple[Path, ...] = ()

    def credentials_for(self, registry: str) -> Credentials | None:
        return self.auths.get(registry_host(registry))

    def merged_with(self, other: DockerConfig) -> DockerConfig:
        auths = dict(other.auths)
        auths.update(self.auths)
        return DockerConfig(auths=auths, sources=self.sources + other.sources)


def registry_host(server: str) -> str:
    """The registry host an auths key or a reference names, the way docker matches them.

    `https://host/v2/`, `host/v1/` and `host` all mean `host`; every Docker Hub alias means `docker.io`.
    """
    host = server.strip()
    for scheme in ("https://", "http://"):
        if host.lower().startswith(scheme):
            host = host[len(scheme) :]
            break
    host = host.split("/", 1)[0].lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def resolve_config_file(path: Path) -> Path:
    """The config file a path names: the file itself, or a mounted secret directory's .dockerconfigjson/config.json."""
    if path.is_dir():
        for name in (DOCKER_CONFIG_KEY, CONFIG_JSON):
            if (path / name).is_file():
                return path / name
        raise DockerConfigError(f"{path}: directory holds neither {DOCKER_CONFIG_KEY} nor {CONFIG_JSON}")
    if not path.exists():
        raise DockerConfigError(f"{path}: no such file or directory")
    return path


def load_docker_config(path: Path) -> DockerConfig:
    """Parse one config file (or secret directory); raises DockerConfigError naming the file and the problem."""
    file = resolve_config_file(path)
    try:
        body = file.read_bytes()
    except OSError as exc:
        raise DockerConfigError(f"{file}: not a readable JSON docker config ({exc})") from exc
    return parse_docker_config(body, file)


def parse_docker_config(body: bytes, file: Path) -> DockerConfig:
    """Parse a config's bytes (e.g. a Secret's .dockerconfigjson); `file` names where they came from in errors."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DockerConfigError(f"{file}: not a readable JSON docker config ({exc})") from exc
    if not isinstance(document, dict):
        raise DockerConfigError(f'{file}: expected a JSON object with an "auths" object, got {_kind(document)}')
    auths = document.get("auths")
    if not isinstance(auths, dict):
        problem = 'has no "auths" object' if auths is None else f'"auths" is {_kind(auths)}, not an object'
        raise DockerConfigError(f'{file}: {problem} (expected {{"auths": {{"<registry>": {{"auth": ...}}}}}})')
    credentials: dict[str, Credentials] = {}
    for server, entry in auths.items():
        parsed = _parse_entry(file, server, entry)
        host = registry_host(server)
        if not parsed.is_empty and host not in credentials:
            credentials[host] = parsed
    return DockerConfig(auths=credentials, sources=(file,))


def load(paths: Path | Iterable[Path]) -> DockerConfig:
    """Parse and merge config files, e.g. several pull secrets; for a host named twice, the earlier file wins."""
    merged = DockerConfig()
    for path in [paths] if isinstance(paths, Path) else paths:
        merged = merged.merged_with(load_docker_config(path))
    return merged


def load_given_or_default(paths: Iterable[Path] | None) -> DockerConfig | None:
    """What a command's repeatable `--docker-config` names, else $DOCKER_CONFIG/config.json, else None (anonymous)."""
    given = list(paths or [])
    if not given and (default := default_docker_config_path()) is not None:
        given = [default]
    return load(given) if given else None


def default_docker_config_path() -> Path | None:
    """$DOCKER_CONFIG/config.json when DOCKER_CONFIG is set and the file exists, else None."""
    directory = os.environ.get("DOCKER_CONFIG")
    if not directory:
        return None
    candidate = Path(directory) / CONFIG_JSON
    return candidate if candidate.is_file() else None


def encode_auth(username: str, password: str) -> str:
    """The `auth` field docker writes for a username and password."""
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _parse_entry(file: Path, server: str, entry: Any) -> Credentials:
    where = f"{file}: auths[{server!r}]"
    if not isinstance(entry, dict):
        raise DockerConfigError(f"{where} is {_kind(entry)}, not an object")
    for key in ("auth", "username", "password", "identitytoken"):
        if key in entry and not isinstance(entry[key], str):
            raise DockerConfigError(f"{where}.{key} is {_kind(entry[key])}, not a string")
    username, password = entry.get("username", ""), entry.get("password", "")
    if entry.get("auth"):
        username, password = _decode_auth(where, entry["auth"])
    return Credentials(
        username=username, password=password, identity_token=entry.get("identitytoken", ""), source=str(file)
    )


def _decode_auth(where: str, auth: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(auth.strip() + "=" * (-len(auth.strip()) % 4), validate=True).decode()
    except (binascii.Error, ValueError) as exc:
        raise DockerConfigError(f"{where}.auth is not base64 of 'username:password' ({exc})") from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise DockerConfigError(f"{where}.auth decodes to text without ':' (expected base64 of 'username:password')")
    return username, password


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
