"""Model images: the OCI artifact kaito packs a model directory into, and the sizing facts its config blob carries.

A model image is an OCI image manifest with kaito's artifact type, one layer per file of the model directory
(stored as is: weights do not compress, so no tar and no gzip; the file's path relative to the directory in
the standard `org.opencontainers.image.title` annotation), and a config blob holding the architecture numbers
the planner sizes a model from (the same numbers and names as a catalog preset), so an image sizes without a
model hub. `describe_model` reads them from a model directory's config.json and safetensors headers.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from kaito.api.modelconfig import Dtype, Quantization, config_facts
from kaito.api.modelconfig import ModelDescriptionError as ModelDescriptionError

ARTIFACT_TYPE = "application/vnd.kaito.model.v1"
CONFIG_MEDIA_TYPE = "application/vnd.kaito.model.config.v1+json"
LAYER_SAFETENSORS = "application/vnd.kaito.model.layer.v1.safetensors"
LAYER_JSON = "application/vnd.kaito.model.layer.v1+json"
LAYER_FILE = "application/vnd.kaito.model.layer.v1"  # any other file (tokenizer.model, merges.txt, ...)
LAYER_MEDIA_TYPES = frozenset({LAYER_SAFETENSORS, LAYER_JSON, LAYER_FILE})

ANNOTATION_TITLE = "org.opencontainers.image.title"  # the file's path inside the model directory
ANNOTATION_SOURCE = "org.opencontainers.image.source"  # where the model came from, e.g. https://huggingface.co/org/m
ANNOTATION_REVISION = "org.opencontainers.image.revision"  # the source's revision (a commit) the files are from
ANNOTATION_MODEL = "ai.kaito.model.repository"  # the model's hub id, e.g. microsoft/phi-4

NODE_CACHE_DIR = "/var/lib/kaito/models"  # the node-local model cache inference pods share (a hostPath)
CATALOG_REPOSITORY = "kaito-models"  # under a bare --model-registry host, the catalog's models live here

_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


class ModelImageConfig(BaseModel):
    """The config blob: the numbers a preset carries (same names as the catalog's), plus where the files came from."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    schema_version: Literal[1] = 1
    architectures: tuple[str, ...] = ()
    model_type: str = ""
    parameters_b: float = Field(gt=0)
    weight_bytes: int = Field(gt=0)
    layers: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int | None = Field(default=None, gt=0)
    vocab_size: int | None = Field(default=None, gt=0)
    max_position_embeddings: int = Field(gt=0)
    dtype: Dtype = "bfloat16"
    quantization: Quantization | None = None
    kv_layout: Literal["standard", "mla"] = "standard"
    kv_lora_rank: int | None = Field(default=None, gt=0)
    qk_rope_head_dim: int | None = Field(default=None, gt=0)
    sliding_window: int | None = Field(default=None, gt=0)
    sliding_window_pattern: int | None = Field(default=None, ge=2)
    full_attention_layers: int | None = Field(default=None, gt=0)
    state_bytes_per_sequence: int | None = Field(default=None, gt=0)
    experts: int | None = Field(default=None, gt=0)
    experts_per_token: int | None = Field(default=None, gt=0)
    source_repository: str = ""
    revision: str = ""

    def to_blob(self) -> bytes:
        """The config blob's bytes: camelCase JSON, keys sorted, so one description always has one digest.

        A model without recurrent state leaves `stateBytesPerSequence` out, so its blob (and digest) stays as it was.
        """
        body = self.model_dump(by_alias=True, mode="json")
        if body.get("stateBytesPerSequence") is None:
            body.pop("stateBytesPerSequence", None)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_blob(cls, body: bytes) -> ModelImageConfig:
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            raise ModelDescriptionError(f"not a kaito model config ({exc.error_count()} problems: {exc})") from exc

    def sizing_fields(self) -> dict[str, Any]:
        """The fields a catalog preset (kaito.presets.models.ModelSpec) takes, by its names."""
        skip = {"schema_version", "model_type", "source_repository", "revision"}
        return {key: value for key, value in self.model_dump().items() if key not in skip}


def layer_media_type(title: str) -> str:
    """The media type of the layer holding the file at `title`."""
    name = PurePosixPath(title).name
    if name.endswith(".safetensors"):
        return LAYER_SAFETENSORS
    return LAYER_JSON if name.endswith(".json") else LAYER_FILE


def describe_model(directory: Path, *, source_repository: str = "", revision: str = "") -> ModelImageConfig:
    """The sizing facts of a model directory: config.json's architecture numbers, the safetensors' bytes and dtype."""
    config_file = directory / "config.json"
    try:
        raw = json.loads(config_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise ModelDescriptionError(f"{config_file}: cannot read the model's config ({exc})") from exc
    if not isinstance(raw, dict):
        raise ModelDescriptionError(f"{config_file}: not a JSON object")
    shards = sorted(directory.rglob("*.safetensors"))
    if not shards:
        raise ModelDescriptionError(f"{directory}: no *.safetensors files (kaito packs safetensors checkpoints)")
    elements, dtypes = 0, set()
    for shard in shards:
        count, kinds = _safetensors_elements(shard)
        elements += count
        dtypes |= kinds
    facts = config_facts(raw, source=str(config_file), stored_dtypes=dtypes)
    facts.update(
        parameters_b=max(round(elements / 1e9, 3), 0.001),
        weight_bytes=sum(shard.stat().st_size for shard in shards),
        source_repository=source_repository,
        revision=revision,
    )
    try:
        return ModelImageConfig.model_validate(facts)
    except ValidationError as exc:
        raise ModelDescriptionError(f"{config_file}: {exc}") from exc


def _safetensors_elements(path: Path) -> tuple[int, set[str]]:
    """How many elements a safetensors file's tensors hold, and their dtypes, from its JSON header."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _MAX_SAFETENSORS_HEADER:
                raise ModelDescriptionError(f"{path}: safetensors header of {length} bytes is not believable")
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise ModelDescriptionError(f"{path}: not a safetensors file ({exc})") from exc
    count, kinds = 0, set()
    for name, tensor in header.items():
        if name == "__metadata__" or not isinstance(tensor, dict):
            continue
        elements = 1
        for dim in tensor.get("shape", []):
            elements *= int(dim)
        count += elements
        kinds.add(str(tensor.get("dtype", "")))
    return count, kinds


def catalog_image(registry: str, preset: str, revision: str) -> str:
    """Where a catalog preset's model image lives under a model registry: one rule, for pushing and for pulling.

    `REGISTRY` alone gives `REGISTRY/kaito-models/<preset>:<revision>`; `REGISTRY/PREFIX` gives
    `REGISTRY/PREFIX/<preset>:<revision>`. The tag is the catalog's revision of the model (a Hugging Face
    commit, or `main` where the catalog pins none), so a catalog that moves to new weights names a new image.
    """
    base = registry.strip().rstrip("/")
    if "/" not in base:
        base = f"{base}/{CATALOG_REPOSITORY}"
    return f"{base}/{preset.lower()}:{revision or 'main'}"
