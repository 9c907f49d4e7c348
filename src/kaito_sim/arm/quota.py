"""The simulated subscription's vCPU quotas and the region's free VMs per size, as the usages API and creates see them.

Usage is what the cluster's agent pools hold: every pool that is not Failed counts `count` VMs of its size against
its family and the regional total, from the PUT on (Azure charges quota when it accepts the write) until the pool
is gone. Capacity counts VMs actually allocated, per size: a pool's VMs are allocated when its create or
update runs, and freed when it is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kaito.presets.catalog import Catalog
from kaito_sim.arm.errors import ArmError, JsonObj, allocation_message, quota_message
from kaito_sim.arm.nodes import CPU_SIZES, VmSize
from kaito_sim.arm.pools import PoolRecord

# A subscription's defaults are generous here so that a simulated cloud without flags never refuses.
DEFAULT_FAMILY_VCPUS = 10_000
DEFAULT_REGIONAL_VCPUS = 100_000
REGIONAL = "cores"


@dataclass(frozen=True)
class Usage:
    family: str
    current: int
    limit: int

    def body(self) -> JsonObj:
        return {
            "unit": "Count",
            "currentValue": self.current,
            "limit": self.limit,
            "name": {"value": self.family, "localizedValue": localized(self.family)},
        }


class CloudLimits:
    """Per-family vCPU quotas and per-size capacity, settable from tests and `kaito sim` flags.

    Family names and sizes match ignoring case, as Azure's APIs spell them inconsistently.
    """

    def __init__(
        self,
        *,
        quotas: Mapping[str, int] | None = None,
        capacity: Mapping[str, int] | None = None,
        regional_vcpus: int = DEFAULT_REGIONAL_VCPUS,
    ) -> None:
        self._quotas: dict[str, tuple[str, int]] = {}
        self._capacity: dict[str, int] = {}
        self.regional_vcpus = regional_vcpus
        for family, vcpus in (quotas or {}).items():
            self.set_quota(family, vcpus)
        for size, count in (capacity or {}).items():
            self.set_capacity(size, count)

    def set_quota(self, family: str, vcpus: int) -> None:
        if vcpus < 0:
            raise ValueError(f"the quota of {family} must be 0 or more vCPUs, not {vcpus}")
        if family.lower() == REGIONAL:
            self.regional_vcpus = vcpus
        else:
            self._quotas[family.lower()] = (family, vcpus)

    def set_capacity(self, vm_size: str, count: int) -> None:
        """At most `count` VMs of `vm_size` can be allocated at once; beyond that creates fail AllocationFailed."""
        if count < 0:
            raise ValueError(f"the capacity of {vm_size} must be 0 or more VMs, not {count}")
        self._capacity[vm_size.lower()] = count

    def clear(self) -> None:
        self._quotas.clear()
        self._capacity.clear()
        self.regional_vcpus = DEFAULT_REGIONAL_VCPUS

    def limit(self, family: str) -> int:
        return self._quotas.get(family.lower(), (family, DEFAULT_FAMILY_VCPUS))[1]

    def capacity(self, vm_size: str) -> int | None:
        return self._capacity.get(vm_size.lower())

    def usages(self, pools: Iterable[PoolRecord], catalog: Catalog) -> list[Usage]:
        """The regional total first, then every known family (the catalog's, the CPU sizes', the ones set)."""
        used = family_usage(pools)
        families: dict[str, str] = {}
        for sku in catalog.skus.values():
            if sku.quota_family:
                families.setdefault(sku.quota_family.lower(), sku.quota_family)
        for _, _, family in CPU_SIZES.values():
            families.setdefault(family.lower(), family)
        for key, (family, _) in self._quotas.items():
            families.setdefault(key, family)
        total = Usage(REGIONAL, sum(used.values()), self.regional_vcpus)
        return [total] + [Usage(name, used.get(key, 0), self.limit(name)) for key, name in sorted(families.items())]

    def check_quota(self, pools: Iterable[PoolRecord], size: VmSize, *, required: int, location: str) -> None:
        """Refuse as Azure does when `required` more vCPUs of `size` exceed its family's quota or the region's."""
        if required <= 0:
            return
        used = family_usage(pools)
        family = size.family or size.name
        checks = (
            (family, used.get(family.lower(), 0), self.limit(family)),
            ("Total Regional", sum(used.values()), self.regional_vcpus),
        )
        for name, usage, limit in checks:
            if usage + required > limit:
                message = quota_message(family=name, location=location, limit=limit, usage=usage, required=required)
                raise ArmError(400, "QuotaExceeded", message)

    def allocation_error(self, pools: Iterable[PoolRecord], record: PoolRecord) -> JsonObj | None:
        """AllocationFailed when `record`'s VMs do not fit the VMs of its size still free, else None."""
        size = record.spec.vm_size
        capacity = self.capacity(size.name)
        if capacity is None:
            return None
        allocated = sum(p.allocated for p in pools if p is not record and p.spec.vm_size.name == size.name)
        if allocated + record.spec.count <= capacity:
            return None
        return {"code": "AllocationFailed", "message": allocation_message()}


def family_usage(pools: Iterable[PoolRecord]) -> dict[str, int]:
    """vCPUs held per family (lower-cased), by every pool that is not Failed."""
    used: dict[str, int] = {}
    for pool in pools:
        if pool.provisioning_state == "Failed":
            continue
        size = pool.spec.vm_size
        key = (size.family or size.name).lower()
        used[key] = used.get(key, 0) + pool.spec.count * size.quota_vcpus
    return used


def localized(family: str) -> str:
    """The usages API's display name: standardNCADSA100v4Family -> Standard NCADSA100v4 Family vCPUs."""
    if family == REGIONAL:
        return "Total Regional vCPUs"
    middle = family.removeprefix("standard").removeprefix("Standard").removesuffix("Family")
    return f"Standard {middle} Family vCPUs"
