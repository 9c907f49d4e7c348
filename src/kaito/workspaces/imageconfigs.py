"""Reading a model image's config for planning: its manifest and config blob, within a short time, kept by reference.

Admission, the controller and `kaito render` size a preset the catalog lacks from its model image's config. The
fetch happens before the one planning call (which reads nothing over the network) and is kept here by image
reference, so the controller reuses what admission read in the same manager and plans from the same numbers;
a failure is not kept (the user may fix the secret or push the image), and its words are the registry's.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kaito.api.modelimage import CONFIG_MEDIA_TYPE, ModelDescriptionError, ModelImageConfig
from kaito.api.workspace import Workspace
from kaito.oci import dockerconfig
from kaito.oci.blobs import BlobSession
from kaito.oci.client import OCI_MANIFEST, credentials_for
from kaito.oci.dockerconfig import DOCKER_CONFIG_KEY
from kaito.oci.errors import OciError
from kaito.oci.reference import Reference
from kaito.oci.scheme import Scheme
from kaito.presets.catalog import Catalog
from kaito.workspaces.hubmodels import HubModels, TokenReader, hub_models_for
from kaito.workspaces.modelsource import ImageConfig, ModelImages, image_pull_secrets, uncatalogued_image

FETCH_TIMEOUT_S = 5.0  # admission answers within the API server's 10 s webhook timeout
MAX_CONFIG_BYTES = 1024 * 1024
KEPT = 256


class ImageConfigs:
    """Fetched model image configs by reference (the last `KEPT`), and the fetch itself (blocking: run it off-loop)."""

    def __init__(self, *, ca_file: Path | None = None, insecure: frozenset[str] = frozenset()) -> None:
        self.ca_file = ca_file
        self.insecure = insecure
        self.fetches = 0  # registry reads made (a manifest and a blob each), for tests and metrics
        self._kept: OrderedDict[str, ModelImageConfig] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, image: str) -> ModelImageConfig | None:
        with self._lock:
            config = self._kept.get(image)
            if config is not None:
                self._kept.move_to_end(image)
            return config

    def fetch(self, image: str, secrets: Sequence[tuple[str, bytes]] = ()) -> ImageConfig:
        """The config of `image` (kept), or why it cannot be read; `secrets` are (name, .dockerconfigjson bytes)."""
        if (config := self.known(image)) is not None:
            return config
        try:
            config = self._read(image, secrets)
        except (OciError, ModelDescriptionError, dockerconfig.DockerConfigError) as exc:
            return " ".join(str(exc).split())
        with self._lock:
            self._kept[image] = config
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)
        return config

    def _read(self, image: str, secrets: Sequence[tuple[str, bytes]]) -> ModelImageConfig:
        ref = Reference.parse(image)
        auth = dockerconfig.DockerConfig()
        for name, body in secrets:
            auth = auth.merged_with(dockerconfig.parse_docker_config(body, Path(f"secret/{name}")))
        self.fetches += 1
        with BlobSession(
            ref,
            credentials_for(auth, ref.registry),
            scheme=Scheme.docker_rule(ref.registry, insecure=self.insecure),
            ca_file=self.ca_file,
            purpose="pull",
            retry_delays=(),
        ) as session:
            _, manifest = session.get_manifest_document(ref.manifest_key, ref.digest, "model image", OCI_MANIFEST)
            config = manifest.get("config") or {}
            if config.get("mediaType") != CONFIG_MEDIA_TYPE:
                raise OciError(f"{image} is not a kaito model image (config media type {config.get('mediaType')!r})")
            digest, size = str(config.get("digest", "")), int(config.get("size", -1))
            if not 0 < size <= MAX_CONFIG_BYTES:
                raise OciError(f"{image}: config blob of {size} bytes is not a model config")
            sink = io.BytesIO()
            session.fetch(digest, sink)
        body = sink.getvalue()
        algorithm, _, expected = digest.partition(":")
        if algorithm not in ("sha256", "sha512") or hashlib.new(algorithm, body).hexdigest() != expected:
            raise OciError(f"config blob of {image} does not match its digest {digest}")
        return ModelImageConfig.from_blob(body)


SecretReader = Callable[[str, str], Awaitable[bytes | None]]
"""(namespace, name) -> a docker-registry Secret's .dockerconfigjson bytes, or None when there is no such Secret."""


async def model_images_for(
    raw: Mapping[str, Any],
    *,
    catalog: Catalog,
    configs: ImageConfigs | None,
    registry: str | None,
    read_secret: SecretReader,
    hub: HubModels | None = None,
    read_token: TokenReader | None = None,
) -> ModelImages:
    """What planning `raw` needs to know of where its weights come from: the model image config it is sized from,
    or the Hugging Face model (see `kaito.workspaces.hubmodels`), fetched if not kept."""
    try:
        ws = Workspace.parse(raw)
    except ValidationError:
        return ModelImages(registry=registry)  # the rules say what is wrong with it
    if hub is not None and read_token is not None:
        models = await hub_models_for(raw, catalog=catalog, hub=hub, read_token=read_token)
        if models:
            return ModelImages(registry=registry, hub=models)
    image = uncatalogued_image(ws, catalog)
    if image is None or configs is None:
        return ModelImages(registry=registry)
    if (kept := configs.known(image)) is not None:
        return ModelImages(registry=registry, configs={image: kept})
    secrets: list[tuple[str, bytes]] = []
    for name in image_pull_secrets(ws):
        body = await read_secret(ws.namespace, name)
        if body is None:
            missing = f"imagePullSecrets: Secret {name!r} in {ws.namespace} not found or has no {DOCKER_CONFIG_KEY}"
            return ModelImages(registry=registry, configs={image: missing})
        secrets.append((name, body))
    try:
        found = await asyncio.wait_for(asyncio.to_thread(configs.fetch, image, secrets), FETCH_TIMEOUT_S)
    except TimeoutError:
        found = f"no answer from the registry within {FETCH_TIMEOUT_S:.0f}s"
    return ModelImages(registry=registry, configs={image: found})
