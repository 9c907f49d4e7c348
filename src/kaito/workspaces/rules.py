"""The Workspace rules as pure functions: upstream's checks plus ours, everything short of sizing.

Admission, the controller and `kaito render` all apply these rules, then the one planning call, through
`kaito.workspaces.plan.validate_and_plan`, so a cluster without the webhook still gets the same message,
as a status condition instead of a refused `kubectl apply`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from kaito.api.fielderrors import FieldError
from kaito.api.tuningconfig import CONFIG_KEY as TRAINING_CONFIG_KEY
from kaito.api.tuningconfig import ConfigError, parse_training_config
from kaito.api.workspace import AdapterSource, InferenceSpec, TuningSpec, Workspace
from kaito.presets.architectures import unserved
from kaito.presets.catalog import Catalog, ModelSpec, UnknownModel
from kaito.presets.choice import AUTO
from kaito.presets.overrides import CONFIG_KEY, OverrideError, Overrides
from kaito.workspaces.modelsource import (
    ModelImages,
    hub_id,
    model_from_hub,
    model_from_image,
    model_image,
    preset_of,
    uncatalogued_image,
)
from kaito.workspaces.urls import check_data_url, check_image_reference

MAX_ADAPTERS = 10
IMAGE_FIELD = "inference.preset.presetOptions.image"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
TUNING_METHODS = ("lora", "qlora")
ANNOTATION_CHOICES = {
    "kaito.sh/node-image-family": ("ubuntu", "azurelinux"),
    "kaito.sh/runtime": ("vllm", "transformers"),
}

ConfigLookup = Callable[[str, str], Mapping[str, str] | None]
"""(namespace, name) -> a ConfigMap's data, or None when it does not exist."""


def validate_workspace(
    raw: Mapping[str, Any],
    *,
    catalog: Catalog,
    old: Mapping[str, Any] | None = None,
    config_lookup: ConfigLookup | None = None,
    model_images: ModelImages | None = None,
) -> list[FieldError]:
    """Every problem with `raw` (and with the change from `old`, on update) short of sizing; empty when none."""
    try:
        ws = Workspace.parse(raw)
    except ValidationError as exc:
        return [_from_pydantic(error) for error in exc.errors()]
    errors = _validate_shape(ws)
    errors += _validate_annotations(ws)
    if ws.inference is not None and ws.tuning is None:
        errors += _validate_inference(ws, ws.inference, catalog, config_lookup, model_images or ModelImages())
    if ws.tuning is not None and ws.inference is None:
        errors += _validate_tuning(ws, ws.tuning, catalog, model_images or ModelImages())
        errors += _validate_training_config(ws, ws.tuning, config_lookup)
    if old is not None:
        errors += _validate_update(Workspace.parse(old), ws)
    return errors


def _from_pydantic(error: Any) -> FieldError:
    path = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in error["loc"]).replace(".[", "[")
    return FieldError(path, str(error["msg"]))


def _validate_shape(ws: Workspace) -> list[FieldError]:
    errors = []
    name = ws.name
    if name and (len(name) > 63 or not DNS_LABEL.match(name)):
        errors.append(FieldError("metadata.name", "must be a DNS-1123 label (a-z, 0-9, '-', at most 63 characters)"))
    if (ws.inference is None) == (ws.tuning is None):
        errors.append(FieldError("", "exactly one of inference or tuning must be set"))
    errors += _validate_instance_types(ws)
    selector = ws.resource.label_selector
    if not selector.match_labels and not selector.match_expressions:
        errors.append(FieldError("resource.labelSelector", "needs matchLabels (or matchExpressions with In)"))
    for i, expr in enumerate(selector.match_expressions or []):
        if expr.operator != "In":
            errors.append(FieldError(f"resource.labelSelector.matchExpressions[{i}].operator", "only In is supported"))
    return errors


def _validate_instance_types(ws: Workspace) -> list[FieldError]:
    listed = ws.resource.instance_types
    if listed is None:
        return []
    if ws.resource.instance_type is not None:
        return [FieldError("resource.instanceTypes", "set either resource.instanceType or resource.instanceTypes")]
    errors = []
    for i, name in enumerate(listed):
        if name.lower() == AUTO:
            errors.append(FieldError(f"resource.instanceTypes[{i}]", "auto is for resource.instanceType"))
    if len(set(listed)) != len(listed):
        errors.append(FieldError("resource.instanceTypes", "lists an instance type twice"))
    return errors


def _validate_annotations(ws: Workspace) -> list[FieldError]:
    errors = []
    for key, allowed in ANNOTATION_CHOICES.items():
        value = ws.annotations.get(key)
        if value is not None and value not in allowed:
            errors.append(FieldError(f"metadata.annotations[{key}]", f"{value!r} is not one of {', '.join(allowed)}"))
    return errors


def _resolve_model(name: str, catalog: Catalog, path: str) -> tuple[ModelSpec | None, list[FieldError]]:
    try:
        model = catalog.model(name)
    except UnknownModel as exc:
        hint = f"; did you mean {', '.join(exc.suggestions)}?" if exc.suggestions else ""
        return None, [FieldError(path, f"unknown model {name!r}{hint} (see `kaito render --list-models`)")]
    if model.deprecated:
        return None, [FieldError(path, f"model {model.name} is deprecated: {model.deprecated}")]
    return model, []


def _validate_inference(
    ws: Workspace, spec: InferenceSpec, catalog: Catalog, config_lookup: ConfigLookup | None, images: ModelImages
) -> list[FieldError]:
    if (spec.preset is None) == (spec.template is None):
        return [FieldError("inference", "exactly one of preset or template must be set")]
    errors = _validate_adapters(spec)
    if spec.preset is None:
        return errors
    options = spec.preset.preset_options
    if options is not None and options.image is not None and (reason := check_image_reference(options.image)):
        return [*errors, FieldError(IMAGE_FIELD, reason)]
    model, model_errors = preset_model(ws, catalog, images)
    if model is None:
        return errors + model_errors
    from_hub = model_image(ws, model, registry=images.registry) is None
    if from_hub and model.download_auth_required and not (options and options.model_access_secret):
        errors.append(
            FieldError(
                "inference.preset.presetOptions.modelAccessSecret",
                f"{model.name} is gated on Hugging Face: name a Secret holding HF_TOKEN",
            )
        )
    return errors + _check_overrides(ws, spec, config_lookup)


def preset_model(ws: Workspace, catalog: Catalog, images: ModelImages) -> tuple[ModelSpec | None, list[FieldError]]:
    """The preset's model: the catalog's, else one sized from its model image's config or read from the hub."""
    preset, spec = preset_of(ws)
    if preset is None:
        return None, []
    if (name := hub_id(ws, catalog)) is not None:
        return _hub_model(ws, name, images, f"{spec}.preset.name")
    image = uncatalogued_image(ws, catalog)
    if image is None:
        return _resolve_model(preset.name, catalog, f"{spec}.preset.name")
    config = images.configs.get(image)
    if config is None:
        unread = f"{preset.name!r} is not in the catalog and the config of {image} was not read"
        return None, [FieldError(IMAGE_FIELD, unread)]
    if isinstance(config, str):
        return None, [FieldError(IMAGE_FIELD, f"cannot size {preset.name!r} from model image {image}: {config}")]
    try:
        return model_from_image(preset.name, config), []
    except ValidationError as exc:
        return None, [FieldError(IMAGE_FIELD, f"model image {image}'s config does not size a model: {exc}")]


def _hub_model(ws: Workspace, name: str, images: ModelImages, path: str) -> tuple[ModelSpec | None, list[FieldError]]:
    """A Hugging Face model the catalog lacks, from what was read from the hub; refused when vLLM cannot serve it."""
    read = images.hub.get(name)
    if read is None:
        return None, [FieldError(path, f"{name!r} is not in the catalog and was not read from a Hugging Face hub")]
    if isinstance(read, FieldError):
        return None, [read]
    try:
        model = model_from_hub(name, read)
    except ValidationError as exc:
        return None, [FieldError(path, f"{name}'s config.json does not size a model: {exc}")]
    served_by_vllm = ws.inference is not None and ws.annotations.get("kaito.sh/runtime") != "transformers"
    if served_by_vllm and (why := unserved(model.architectures)):
        return None, [FieldError(path, f"{model.hf_repo}@{model.revision}: {why}")]
    return model, []


def _check_overrides(ws: Workspace, spec: InferenceSpec, config_lookup: ConfigLookup | None) -> list[FieldError]:
    if not spec.config or config_lookup is None:
        return []
    data = config_lookup(ws.namespace, spec.config)
    if data is None:
        return [FieldError("inference.config", f"ConfigMap {spec.config!r} not found in {ws.namespace}")]
    if CONFIG_KEY not in data:
        return [FieldError("inference.config", f"ConfigMap {spec.config!r} has no key {CONFIG_KEY}")]
    try:
        overrides_from(data, spec.config)
    except OverrideError as exc:
        return [FieldError("inference.config", str(exc))]
    return []


def overrides_from(data: Mapping[str, str] | None, config: str) -> Overrides:
    """The engine overrides in ConfigMap `config`'s data (none without the key); OverrideError names the setting."""
    if not data or CONFIG_KEY not in data:
        return Overrides()
    return Overrides.from_config_text(data[CONFIG_KEY], where=f"ConfigMap {config} {CONFIG_KEY}")


def _validate_adapters(spec: InferenceSpec) -> list[FieldError]:
    adapters = spec.adapters or []
    errors = []
    if len(adapters) > MAX_ADAPTERS:
        errors.append(FieldError("inference.adapters", f"at most {MAX_ADAPTERS} adapters, got {len(adapters)}"))
    seen: set[str] = set()
    for i, adapter in enumerate(adapters):
        path = f"inference.adapters[{i}]"
        name = adapter.source.name
        if not DNS_SUBDOMAIN.match(name) or len(name) > 253:
            errors.append(
                FieldError(f"{path}.source.name", f"{name!r} must be a DNS-1123 subdomain (a-z, 0-9, '-', '.')")
            )
        if name in seen:
            errors.append(FieldError(f"{path}.source.name", f"{name!r} is used by another adapter"))
        seen.add(name)
        errors += _check_source(f"{path}.source", adapter.source)
        if adapter.strength is not None:
            errors += _check_strength(f"{path}.strength", adapter.strength)
    return errors


def _check_source(path: str, source: AdapterSource) -> list[FieldError]:
    given = [s for s in (source.image, source.volume_source, source.workspace) if s is not None]
    if len(given) != 1:
        return [FieldError(path, "exactly one of image or volumeSource, or a tuning workspace, must be set")]
    if source.image is not None and (reason := check_image_reference(source.image)):
        return [FieldError(f"{path}.image", reason)]
    if source.workspace is not None and not (DNS_SUBDOMAIN.match(source.workspace) and len(source.workspace) <= 253):
        return [FieldError(f"{path}.workspace", f"{source.workspace!r} is not a Workspace name")]
    return []


def _check_strength(path: str, strength: str) -> list[FieldError]:
    try:
        value = float(strength)
    except ValueError:
        return [FieldError(path, f'{strength!r} is not a number; use a decimal between 0 and 1, e.g. "1.0"')]
    if not 0.0 <= value <= 1.0:
        return [FieldError(path, f"{strength} is outside [0, 1]")]
    return []


def _validate_tuning(ws: Workspace, spec: TuningSpec, catalog: Catalog, images: ModelImages) -> list[FieldError]:
    errors = []
    if spec.preset is None:
        errors.append(FieldError("tuning.preset", "required: the model to fine-tune"))
    else:
        model, model_errors = preset_model(ws, catalog, images)
        errors += model_errors
        if model is not None and not model.supports_tuning:
            errors.append(FieldError("tuning.preset.name", f"{model.name} has no tuning preset"))
        secret = spec.preset.preset_options.model_access_secret if spec.preset.preset_options else None
        if model is not None and model.source == "hub" and model.download_auth_required and not secret:
            field = "tuning.preset.presetOptions.modelAccessSecret"
            errors.append(FieldError(field, f"{model.hf_repo} is gated: name a Secret holding HF_TOKEN"))
        if spec.preset.preset_options is not None and spec.preset.preset_options.image:
            errors.append(FieldError("tuning.preset.presetOptions.image", "model images serve inference only"))
    if (spec.method or "").lower() not in TUNING_METHODS:
        errors.append(FieldError("tuning.method", f"{spec.method!r} is not one of lora, qlora"))
    if ws.resource.count is not None and ws.resource.count != 1:
        errors.append(FieldError("resource.count", "tuning runs on exactly one node"))
    errors += _validate_tuning_input(spec)
    errors += _validate_tuning_output(spec)
    return errors


def _validate_training_config(ws: Workspace, spec: TuningSpec, config_lookup: ConfigLookup | None) -> list[FieldError]:
    """The training config is checked where it is named, so a bad one fails at apply, not on a GPU node."""
    method = (spec.method or "").lower()
    if not spec.config or config_lookup is None or method not in TUNING_METHODS:
        return []
    data = config_lookup(ws.namespace, spec.config)
    if data is None:
        return [FieldError("tuning.config", f"ConfigMap {spec.config!r} not found in {ws.namespace}")]
    if TRAINING_CONFIG_KEY not in data:
        return [FieldError("tuning.config", f"ConfigMap {spec.config!r} has no key {TRAINING_CONFIG_KEY}")]
    try:
        parse_training_config(
            data[TRAINING_CONFIG_KEY], method, source=f"ConfigMap {spec.config} {TRAINING_CONFIG_KEY}"
        )
    except ConfigError as exc:
        return [FieldError("tuning.config", str(exc))]
    return []


def _validate_tuning_input(spec: TuningSpec) -> list[FieldError]:
    source = spec.input
    if source is None:
        return [FieldError("tuning.input", "required: urls, image or volumeSource with the training data")]
    given = [
        k for k, v in (("urls", source.urls), ("image", source.image), ("volumeSource", source.volume_source)) if v
    ]
    if len(given) != 1:
        return [
            FieldError("tuning.input", f"exactly one of urls, image or volumeSource must be set, got {given or 'none'}")
        ]
    errors = []
    for i, url in enumerate(source.urls or []):
        if reason := check_data_url(url):
            errors.append(FieldError(f"tuning.input.urls[{i}]", reason))
    if source.image and (reason := check_image_reference(source.image)):
        errors.append(FieldError("tuning.input.image", reason))
    return errors


def _validate_tuning_output(spec: TuningSpec) -> list[FieldError]:
    out = spec.output
    if out is None:
        return [FieldError("tuning.output", "required: image (with imagePushSecret) or volumeSource")]
    if (out.image is None) == (out.volume_source is None):
        return [FieldError("tuning.output", "exactly one of image or volumeSource must be set")]
    if out.image is not None:
        if reason := check_image_reference(out.image):
            return [FieldError("tuning.output.image", reason)]
        if not out.image_push_secret:
            return [FieldError("tuning.output.imagePushSecret", "required with output.image: a docker-registry Secret")]
    return []


def _validate_update(old: Workspace, new: Workspace) -> list[FieldError]:
    errors = []
    if (old.inference is None) != (new.inference is None):
        errors.append(FieldError("", "cannot switch a workspace between inference and tuning; create a new one"))
        return errors
    pairs = [
        ("resource.instanceType", old.resource.instance_type, new.resource.instance_type),
        ("resource.instanceTypes", old.resource.instance_types, new.resource.instance_types),
        ("resource.labelSelector", old.resource.label_selector.to_wire(), new.resource.label_selector.to_wire()),
        ("resource.count", old.resource.count, new.resource.count),
    ]
    if old.inference and new.inference:
        pairs.append(("inference.preset.name", _preset(old.inference), _preset(new.inference)))
        if (old.inference.template is None) != (new.inference.template is None):
            errors.append(FieldError("inference.template", "cannot be added or removed after creation"))
    if old.tuning and new.tuning:
        pairs += [
            ("tuning.preset.name", _preset(old.tuning), _preset(new.tuning)),
            ("tuning.method", (old.tuning.method or "").lower(), (new.tuning.method or "").lower()),
            ("tuning.input.name", _input_name(old.tuning), _input_name(new.tuning)),
        ]
    for path, before, after in pairs:
        if before != after:
            errors.append(FieldError(path, f"field is immutable (was {before!r}); create a new workspace to change it"))
    return errors


def _preset(spec: InferenceSpec | TuningSpec) -> str | None:
    return spec.preset.name if spec.preset else None


def _input_name(spec: TuningSpec) -> str | None:
    return spec.input.name if spec.input else None
