"""LoRA adapters for the transformers engine: found on disk or added live, scaled by their strength, switched per
forward pass."""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kaito.inference.engine import AdapterRefused

log = logging.getLogger(__name__)


def discover_adapters(directory: Path | None) -> dict[str, Path]:
    """Every sub-directory holding adapter_config.json, named after the directory, in name order."""
    if directory is None or not directory.is_dir():
        return {}
    return {p.name: p for p in sorted(directory.iterdir()) if (p / "adapter_config.json").is_file()}


def adapter_strength(name: str, strengths: Mapping[str, float], environ: Mapping[str, str]) -> float:
    """Explicit strengths win; else the env var named after the adapter, as the upstream runtime reads it; else 1."""
    if name in strengths:
        value, origin = float(strengths[name]), "adapter_strengths"
    elif name in environ:
        try:
            value, origin = float(environ[name]), f"environment variable {name}"
        except ValueError:
            raise ValueError(f"adapter {name}: environment variable {name}={environ[name]!r} is not a number") from None
    else:
        return 1.0
    if not math.isfinite(value):
        raise ValueError(f"adapter {name}: strength from {origin} must be finite, got {value}")
    return value


def attach_adapters(model: Any, adapters: Mapping[str, Path], strengths: Mapping[str, float]) -> Any:
    """Wrap `model` in a PeftModel holding every adapter under its own name; returns it in eval mode."""
    from peft import PeftModel  # only deployments with adapters pay for importing peft

    wrapped: Any = None
    for name, path in adapters.items():
        with warnings.catch_warnings():  # peft asks transformers a deprecated question; not the operator's concern
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            if wrapped is None:
                wrapped = PeftModel.from_pretrained(model, str(path), adapter_name=name, is_trainable=False)
            else:
                wrapped.load_adapter(str(path), adapter_name=name, is_trainable=False)
        _scale(wrapped, name, strengths[name])
        log.info("loaded adapter %s from %s with strength %s", name, path, strengths[name])
    if wrapped is None:
        raise ValueError("attach_adapters needs at least one adapter")
    return wrapped.eval()


def add_adapter(model: Any, name: str, path: Path, strength: float) -> Any:
    """Load the adapter at `path` into `model` (a PeftModel, or the base model it then wraps) as `name`.

    Its weights are checked against the base model's layers first, so a mismatched adapter is refused (AdapterRefused)
    before anything changes; a load that fails later is undone. Returns the PeftModel."""
    from peft import PeftModel

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    check_shapes(base, path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        if not isinstance(model, PeftModel):
            try:
                wrapped = PeftModel.from_pretrained(model, str(path), adapter_name=name, is_trainable=False)
                _scale(wrapped, name, strength)
            except Exception as exc:
                raise AdapterRefused(f"{type(exc).__name__}: {exc}") from exc
            return wrapped.eval()
        try:
            model.load_adapter(str(path), adapter_name=name, is_trainable=False)
            _scale(model, name, strength)
        except Exception as exc:
            with contextlib.suppress(Exception):
                model.delete_adapter(name)
            raise AdapterRefused(f"{type(exc).__name__}: {exc}") from exc
    return model.eval()


def check_shapes(base: Any, path: Path) -> None:
    """Every LoRA matrix in the adapter fits the base model's layer it targets, else AdapterRefused saying which."""
    from safetensors import safe_open

    weights = path / "adapter_model.safetensors"
    try:
        with safe_open(str(weights), framework="pt") as tensors:
            shapes = {key: tuple(tensors.get_slice(key).get_shape()) for key in tensors.keys()}  # noqa: SIM118
    except Exception as exc:
        raise AdapterRefused(f"cannot read {weights.name}: {exc}") from exc
    for key, shape in shapes.items():
        for kind, axis, wanted_attr in ((".lora_A.", 1, "in_features"), (".lora_B.", 0, "out_features")):
            if kind not in key or len(shape) != 2:
                continue
            layer = key.split(kind)[0].removeprefix("base_model.model.")
            try:
                module = base.get_submodule(layer)
            except AttributeError:
                raise AdapterRefused(f"shape mismatch: the base model has no layer {layer}") from None
            size = getattr(module, wanted_attr, None)
            if isinstance(size, int) and shape[axis] != size:
                raise AdapterRefused(
                    f"shape mismatch: {key} is {list(shape)}, but the base model's {layer} has {wanted_attr}={size}"
                )


def remove_adapter(model: Any, name: str) -> Any:
    """`model` without the adapter `name`; without its last adapter, the plain base model again."""
    with warnings.catch_warnings():  # PEFT warns that the deleted adapter was the active one; the selector resets
        warnings.filterwarnings("ignore", message=".*was active which is now deleted", category=UserWarning)
        model.delete_adapter(name)
    if model.peft_config:
        return model
    return model.unload()  # PEFT keeps pointing at the deleted adapter; no LoRA layers is the true state


def _scale(model: Any, name: str, strength: float) -> None:
    # set_scale multiplies the adapter's own alpha/r (or alpha/sqrt(r)) scaling, so strength 0 adds exactly zero.
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and name in m.scaling]
    if not layers and strength != 1.0:
        raise ValueError(f"adapter {name}: strength {strength} needs a LoRA adapter, and this one has no LoRA layers")
    for layer in layers:
        layer.set_scale(name, strength)


class AdapterSelector:
    """Points the shared PeftModel at one adapter, or none; callers hold the model lock across select + forward."""

    def __init__(self, model: Any) -> None:
        self._model = model
        model.base_model.disable_adapter_layers()
        self._active: str | None = None

    @property
    def model(self) -> Any:
        return self._model

    def reset(self, model: Any) -> None:
        """After adapters were added or removed (PEFT may have switched layers): everything off again."""
        self._model = model
        model.base_model.disable_adapter_layers()
        self._active = None

    def select(self, name: str | None) -> None:
        # Switching walks every module, so skip it when consecutive steps use the same adapter.
        if name == self._active:
            return
        if name is None:
            self._model.base_model.disable_adapter_layers()
        else:
            if self._active is None:
                self._model.base_model.enable_adapter_layers()
            self._model.set_adapter(name, inference_mode=True)
        self._active = name
