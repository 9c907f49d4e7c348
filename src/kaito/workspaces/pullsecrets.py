"""Secrets read from the API server, for admission and the controller to read a model image's config (pull
secrets) or a gated Hugging Face model's (the modelAccessSecret's HF_TOKEN)."""

from __future__ import annotations

import base64

from kaito.oci.dockerconfig import DOCKER_CONFIG_KEY
from kaito.runtime.client import Client
from kaito.runtime.errors import ignore_not_found
from kaito.runtime.kinds import SECRET
from kaito.workspaces.hubmodels import TOKEN_KEY, TokenReader
from kaito.workspaces.imageconfigs import SecretReader


def api_secret_reader(client: Client) -> SecretReader:
    """Reads a docker-registry Secret's config from the API (the manager caches no Secrets): one GET a read."""

    async def read(namespace: str, name: str) -> bytes | None:
        secret = await ignore_not_found(client.get(SECRET, name, namespace=namespace))
        encoded = ((secret or {}).get("data") or {}).get(DOCKER_CONFIG_KEY)
        return base64.b64decode(encoded) if isinstance(encoded, str) else None

    return read


def api_token_reader(client: Client) -> TokenReader:
    """Reads the HF_TOKEN of a model access Secret from the API (one GET a read), as pull secrets are read."""

    async def read(namespace: str, name: str) -> str | None:
        secret = await ignore_not_found(client.get(SECRET, name, namespace=namespace))
        encoded = ((secret or {}).get("data") or {}).get(TOKEN_KEY)
        if not isinstance(encoded, str):
            return None
        return base64.b64decode(encoded).decode().strip() or None

    return read
