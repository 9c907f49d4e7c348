"""LoRA adapters on disk: finding them under the adapters directory, and baking a strength into their weights.

vLLM has no per-adapter strength, so a strength other than 1 is applied by writing a copy of the adapter
whose B matrices are multiplied by it: the adapter's contribution (B·A) scales exactly by the strength.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class AdapterDir:
    name: str
    path: Path
    strength: float


def find_adapters(root: Path, strengths: Mapping[str, float] | None = None) -> list[AdapterDir]:
    """Every sub-directory with an adapter_config.json; strength from `strengths`, else env `<name>`, else 1."""
    if not root.is_dir():
        return []
    found = []
    for path in sorted(p for p in root.iterdir() if (p / "adapter_config.json").is_file()):
        strength = (strengths or {}).get(path.name)
        if strength is None:
            strength = float(os.environ.get(path.name, "1.0"))
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"adapter {path.name}: strength {strength} is outside [0, 1]")
        found.append(AdapterDir(path.name, path, strength))
    return found


def with_strength(adapter: AdapterDir, scratch: Path) -> Path:
    """The adapter's directory if strength is 1, else a scaled copy under `scratch`."""
    if adapter.strength == 1.0:
        return adapter.path
    from safetensors.torch import load_file, save_file

    target = scratch / f"{adapter.name}-x{adapter.strength:g}"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(adapter.path, target)
    tensors = load_file(str(adapter.path / WEIGHTS))
    scaled = {key: (t * adapter.strength if ".lora_B." in key else t) for key, t in tensors.items()}
    save_file(scaled, str(target / WEIGHTS))
    return target
