"""Where a workspace's weights come from: a model image (named, or the catalog's in the model registry) or the hub.

A preset the catalog lacks is sized from the config its weights come with: a model image's config blob, or a
Hugging Face model's config.json and file list, read from the hub at a revision then pinned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kaito.api.fielderrors import FieldError
from kaito.api.modelimage import ModelImageConfig, catalog_image
from kaito.api.workspace import HubModelStatus, PresetSpec, Workspace
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
    if registry and model is not None and model.source == "catalog":
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
class HubModel:
    """A Hugging Face model as read from the hub: its config's numbers at the revision read (the commit)."""

    config: ModelImageConfig  # source_repository: the id on the hub; revision: the commit read
    gated: bool = False  # a token is needed to download it (gated or private)

    def to_status(self) -> HubModelStatus:
        blob = self.config.model_dump(by_alias=True, mode="json", exclude={"source_repository", "revision"})
        return HubModelStatus(
            repository=self.config.source_repository, revision=self.config.revision, gated=self.gated, config=blob
        )

    @classmethod
    def from_status(cls, status: HubModelStatus) -> HubModel:
        """The model a plan in status was sized from; ValueError when its numbers no longer read."""
        where = {"sourceRepository": status.repository, "revision": status.revision}
        return cls(config=ModelImageConfig.model_validate({**status.config, **where}), gated=bool(status.gated))


HubRead = HubModel | FieldError
"""A hub model, or the field to change and the hub's words saying why it could not be read."""


@dataclass(frozen=True)
class ModelImages:
    """What planning knows of where weights come from: the model registry, and the image configs and hub models
    read for this call (by image reference; by preset name)."""

    registry: str | None = None
    configs: Mapping[str, ImageConfig] = field(default_factory=dict)
    hub: Mapping[str, HubRead] = field(default_factory=dict)


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
    fields = config.sizing_fields()
    return ModelSpec(name=name, hf_repo=repository, revision=config.revision or "main", source="image", **fields)


def preset_of(ws: Workspace) -> tuple[PresetSpec | None, str]:
    """The workspace's preset and the path of its spec (`inference` or `tuning`)."""
    if ws.inference is not None:
        return ws.inference.preset, "inference"
    return (ws.tuning.preset if ws.tuning else None), "tuning"


def split_hub_id(name: str) -> tuple[str, str | None]:
    """`org/model` or `org/model@revision` as (repository, revision or None)."""
    repository, _, revision = name.strip().partition("@")
    return repository, revision or None


def hub_id(ws: Workspace, catalog: Catalog) -> str | None:
    """The Hugging Face id this workspace's preset names, when the catalog lacks it and no model image sizes it."""
    preset, _ = preset_of(ws)
    if preset is None or "/" not in preset.name or catalog.find_model(preset.name) is not None:
        return None
    if uncatalogued_image(ws, catalog) is not None:
        return None
    return preset.name.strip()


def model_from_hub(name: str, model: HubModel) -> ModelSpec:
    """A Hugging Face model the catalog lacks, as a preset: its numbers, at the revision read."""
    return ModelSpec(
        name=name,
        hf_repo=model.config.source_repository,
        revision=model.config.revision,
        source="hub",
        download_auth_required=model.gated,
        supports_tuning=True,
        **model.config.sizing_fields(),
    )
