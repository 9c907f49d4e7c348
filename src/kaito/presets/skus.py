"""The facts of one GPU instance type: how many GPUs, how much memory CUDA really sees, what they can compute."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Cloud = Literal["azure", "aws", "arc"]


class SkuSpec(BaseModel):
    """One instance type. `gpu_memory_gib` is per GPU and CUDA-visible, not the advertised figure."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    cloud: Cloud
    gpu_model: str = Field(min_length=1)
    gpu_vendor: Literal["nvidia", "amd", "other"] = "nvidia"
    gpu_count: int = Field(gt=0)
    gpu_memory_gib: float = Field(gt=0)
    marketing_memory_gib: float = Field(gt=0)
    compute_capability: float | None
    nvlink: bool = False
    nvme: bool = False
    vcpus: int | None = Field(default=None, gt=0)
    memory_gib: float | None = Field(default=None, gt=0)
    retired: str | None = None
    quota_family: str | None = None  # Azure: the vCPU quota family the usages API reports the size under
    hourly_price_usd: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> SkuSpec:
        if self.gpu_memory_gib > self.marketing_memory_gib:
            raise ValueError(
                f"gpu_memory_gib ({self.gpu_memory_gib}) exceeds marketing_memory_gib ({self.marketing_memory_gib});"
                " the visible figure is what CUDA reports and is always smaller"
            )
        if self.gpu_vendor == "nvidia" and self.compute_capability is None:
            raise ValueError("an NVIDIA GPU needs a compute_capability")
        if self.gpu_vendor != "nvidia" and self.compute_capability is not None:
            raise ValueError("compute_capability is a CUDA notion; leave it null for non-NVIDIA GPUs")
        return self

    @property
    def supports_bfloat16(self) -> bool:
        """bf16 needs compute capability 8.0 on NVIDIA (V100/T4 must run float16); MI300X has it natively."""
        if self.gpu_vendor == "nvidia":
            return self.compute_capability is not None and self.compute_capability >= 8.0
        return self.gpu_vendor == "amd"
