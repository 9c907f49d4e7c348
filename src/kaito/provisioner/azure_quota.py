"""Ask before creating: the region's vCPU quota per VM family, read so a size that cannot fit is refused at once.

AKS takes an agent pool create that exceeds a quota and fails it (or the PUT) with QuotaExceeded; asking the
Compute usages API first turns that into an immediate `QuotaExceeded` in Azure's own words, without a pool to
clean up. The answer is advisory: a size or family we do not know, or a usages call that fails, means "unknown:
try the create", and Azure still refuses what our read let through.

One read serves a launch burst: the usages are cached for `ttl` seconds (30 by default). A workspace's claims,
or every workspace's after an operator restart, are launched within a few seconds, and each create we make is
counted into the cached figures as it is checked, so one ARM read counts the whole burst exactly. Quota used
elsewhere in the subscription (other clusters, people) can move meanwhile, so the cache is kept short, and a
delete of ours drops it at once rather than refusing a size whose vCPUs are being given back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kaito.provisioner.cloud import QuotaExceeded
from kaito.runtime.clock import Clock

log = logging.getLogger(__name__)

DEFAULT_TTL = 30.0
REGIONAL = "cores"
QUOTA_CODE = "QuotaExceeded"


@dataclass
class FamilyUsage:
    """One line of the usages API: `name` as Azure spells it, vCPUs used and allowed."""

    name: str
    current: int
    limit: int


@dataclass(frozen=True)
class SizeQuota:
    """What one VM of a size takes: its quota family and vCPUs."""

    family: str
    vcpus: int


Usages = list[FamilyUsage]
Fetch = Callable[[], Awaitable[Usages]]


class QuotaCheck:
    """Refuses a size whose family (or the region) has too few vCPUs left; `fetch` reads the usages API."""

    def __init__(
        self,
        *,
        fetch: Fetch,
        size_quota: Callable[[str], Awaitable[SizeQuota | None]],
        location: Callable[[], Awaitable[str | None]],
        clock: Clock,
        ttl: float = DEFAULT_TTL,
    ) -> None:
        self._fetch = fetch
        self._size_quota = size_quota
        self._location = location
        self.clock = clock
        self.ttl = ttl
        self._usages: dict[str, FamilyUsage] | None = None  # lower-cased name -> usage; None: unknown
        self._read_at: float | None = None
        self._lock = asyncio.Lock()
        self.reads = 0  # usages calls made (for tests and the curious)

    async def reserve(self, vm_size: str) -> None:
        """Raise QuotaExceeded when one more VM of `vm_size` cannot fit; else count it in the cached figures.

        Counting it at once (not after the PUT) lets claims launched together see each other; `release`
        takes it back when the create is not made after all.
        """
        size = await self._size_quota(vm_size)
        if size is None:
            return
        usages = await self._current()
        if usages is None:
            return
        lines = [(usages.get(size.family.lower()), None), (usages.get(REGIONAL), "Total Regional")]
        for usage, label in lines:
            if usage is not None and usage.current + size.vcpus > usage.limit:
                location = await self._location() or ""
                raise QuotaExceeded(
                    quota_message(label or usage.name, location=location, usage=usage, required=size.vcpus),
                    code=QUOTA_CODE,
                )
        self._add(lines, size.vcpus)

    async def release(self, vm_size: str) -> None:
        """Take back a reservation whose create failed."""
        size = await self._size_quota(vm_size)
        if size is None or self._usages is None:
            return
        self._add([(self._usages.get(size.family.lower()), ""), (self._usages.get(REGIONAL), "")], -size.vcpus)

    @staticmethod
    def _add(lines: list[tuple[FamilyUsage | None, str | None]], vcpus: int) -> None:
        for usage, _ in lines:
            if usage is not None:
                usage.current = max(0, usage.current + vcpus)

    def forget(self) -> None:
        """Drop the cached figures (after a delete: its vCPUs are being given back)."""
        self._read_at = None
        self._usages = None

    async def _current(self) -> dict[str, FamilyUsage] | None:
        async with self._lock:  # a burst of claims waits for one read instead of making one each
            if self._read_at is not None and self.clock.now() - self._read_at < self.ttl:
                return self._usages
            self.reads += 1
            try:
                lines = await self._fetch()
            except Exception as err:  # never block provisioning on the quota read; the create still runs
                log.warning("could not read the vCPU quota, creating without checking it: %s", err)
                self._usages = None
            else:
                self._usages = {line.name.lower(): line for line in lines}
            self._read_at = self.clock.now()  # a failed read is not retried before the ttl either
            return self._usages


def quota_message(family: str, *, location: str, usage: FamilyUsage, required: int) -> str:
    """Azure's wording for a create beyond a quota, with the figures the usages API gave."""
    return (
        f"Operation could not be completed as it results in exceeding approved {family} Cores quota. "
        f"Additional details - Deployment Model: Resource Manager, Location: {location}, "
        f"Current Limit: {usage.limit}, Current Usage: {usage.current}, Additional Required: {required}, "
        f"(Minimum) New Limit Required: {usage.current + required}. "
        "Submit a request for Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/"
        "UsageAndQuota.ReactView/Parameters/ by specifying parameters listed in the 'Details' section "
        "for deployment to succeed."
    )
