"""Where a workspace's weights come from: a model image (named, or the catalog's in the model registry) or the hub."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kaito.api.modelimage import ModelImageConfig, catalog_image
from kaito.api.workspace import Workspace
from kaito.presets.catalog import Catalog, ModelSpec


def model_image(ws: Workspace, model: ModelSpec | None, *, registry: str | None) -> str | None:
    """The image an inference workspace's pods pull its weights from; None: they download from Hugging Face.

    `inference.preset.presetOptions.image` wins; else, with a model registry set, the catalog model's image
    under it (`kaito.api.modelimage.catalog_image`). Tuning and pod-template workspaces load their own.
    """
    preset = ws.inference.preset if ws.inference else None
    if preset is None:
        return None
    options = preset.preset_options
    if options is not None and options.image:
        return options.image
    if registry and model is not None:
        return catalog_image(registry, model.name, model.revision)
    return None


def image_pull_secrets(ws: Workspace) -> list[str]:
    """The Secrets named to pull the model image with (`presetOptions.imagePullSecrets`)."""
    preset = ws.inference.preset if ws.inference else None
    options = preset.preset_options if preset else None
    return list((options.image_pull_secrets if options else None) or [])


ImageConfig = ModelImageConfig | str
"""A model image's config blob, or the words (the registry's, or ours) saying why it could not be read."""


@dataclass(frozen=True)
class ModelImages:
    """What planning knows of model images: the manager's model registry, and the configs fetched for this call."""

    registry: str | None = None
    configs: Mapping[str, ImageConfig] = field(default_factory=dict)


def uncatalogued_image(ws: Workspace, catalog: Catalog) -> str | None:
    """The model image whose config sizes this workspace: one named for a preset the catalog does not hold."""
    preset = ws.inference.preset if ws.inference else None
    options = preset.preset_options if preset else None
    if preset is None or options is None or not options.image or catalog.find_model(preset.name) is not None:
        return None
    return options.image


def model_from_image(name: str, config: ModelImageConfig) -> ModelSpec:
    """A model the catalog lacks, as a preset built from its image's config (the numbers a preset carries)."""
    repository = config.source_repository.removeprefix("https://huggingface.co/") or name
    return ModelSpec(name=name, hf_repo=repository, revision=config.revision or "main", **config.sizing_fields())
