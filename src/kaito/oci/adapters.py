"""LoRA adapters as OCI artifacts: their media types and annotations, and pulling one into a directory.

Here rather than beside `kaito push-adapter` (kaito.tuning) because two rooms pull adapters: the pull-adapter
command and `kaito serve`, which loads adapters into a running server.
"""

from __future__ import annotations

from pathlib import Path

from kaito.oci.client import Auth, Pulled, pull
from kaito.oci.errors import OciError
from kaito.oci.reference import Reference, parse_reference

ADAPTER_ARTIFACT_TYPE = "application/vnd.kaito.adapter.v1"
ADAPTER_CONFIG_MEDIA_TYPE = "application/vnd.kaito.adapter.config.v1+json"
ADAPTER_WEIGHTS_MEDIA_TYPE = "application/vnd.kaito.adapter.weights.v1+safetensors"
ANNOTATION_BASE_MODEL = "kaito.sh/base-model"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
# Upstream KAITO adapter and data images are container images with their files under /data.
IMAGE_DATA_DIR = "data"


def pull_adapter(
    reference: str | Reference,
    outdir: Path,
    *,
    auth: Auth,
    plain_http: bool = False,
    ca_file: Path | None = None,
    may_fall_back: bool = False,
) -> Pulled:
    """Pull a kaito adapter artifact, or an upstream-style adapter image (files under /data), into outdir.

    `may_fall_back`: HTTPS first, then plain HTTP if the registry answers the TLS handshake in plain HTTP."""
    pulled = pull(
        reference,
        outdir,
        auth=auth,
        plain_http=plain_http,
        ca_file=ca_file,
        tar_subdir=IMAGE_DATA_DIR,
        what="adapter image",
        may_fall_back=may_fall_back,
    )
    for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
        if not (outdir / name).is_file():
            raise OciError(f"image {parse_reference(reference)} holds no LoRA adapter (no {name})")
    return pulled
