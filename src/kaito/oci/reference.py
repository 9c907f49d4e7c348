"""Image references (registry/repository:tag@digest): parsing them the way docker does, and formatting them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kaito.oci.dockerconfig import DOCKER_HUB, registry_host
from kaito.oci.errors import OciError

REFERENCE_FORM = "<registry>/<repository>[:<tag>][@sha256:<digest>], e.g. myregistry.azurecr.io/adapters/phi-3:0.0.1"
DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")

_HOST_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::\d+)?"
)
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


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
            if not DIGEST_RE.fullmatch(digest):
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


def parse_reference(reference: str | Reference) -> Reference:
    return reference if isinstance(reference, Reference) else Reference.parse(reference)


def _split_registry(name: str) -> tuple[str, str]:
    """Docker's rule: the first path component is a registry host when it has a '.' or ':' or is localhost."""
    first, sep, rest = name.partition("/")
    if not sep or not ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB, name
    return (DOCKER_HUB if registry_host(first) == DOCKER_HUB else first), rest


def _bad_reference(text: str, problem: str) -> OciError:
    return OciError(f"invalid image reference '{text}': {problem}; expected {REFERENCE_FORM}")
