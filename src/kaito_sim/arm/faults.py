"""Scripted failures for the ARM simulator: refused or failing creates, failing usages reads, throttling, and VMs
that never join or never get Ready."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from kaito_sim.nodes.nodespec import NodeSpec

BootFault = Literal["never-joins", "never-ready"]


@dataclass
class CreateFault:
    """How the next agent-pool creates fail; `message` empty means Azure's own wording for `code`."""

    code: str
    message: str
    sync: bool  # True: the PUT itself is refused; False: the PUT is accepted and the operation fails later
    status: int | None  # HTTP status of a synchronous refusal; None picks ARM's usual one for the code
    remaining: int | None  # None: every create until cleared


class Faults:
    """Settable from tests; the simulator consumes one fault per matching request."""

    def __init__(self) -> None:
        self._create: CreateFault | None = None
        self._throttle_left = 0
        self._retry_after = 1
        self._usages_left = 0
        self._usages_status = 500
        self._boot: BootFault | None = None
        self._boot_left: int | None = None  # VMs the boot fault still applies to; None: every one until cleared

    def fail_create(
        self, code: str, message: str = "", *, times: int | None = None, sync: bool = True, status: int | None = None
    ) -> None:
        """Make the next `times` agent-pool creates (all, when None) fail with `code`.

        Typical codes: QuotaExceeded or OperationNotAllowed (quota), SkuNotAvailable, VMSizeNotSupported,
        AllocationFailed, ZonalAllocationFailed, OverconstrainedAllocationRequest (capacity).
        """
        if times is not None and times <= 0:
            raise ValueError("times must be positive (or None for every create)")
        self._create = CreateFault(code, message, sync, status, times)

    def throttle(self, count: int, retry_after: int = 1) -> None:
        """Answer the next `count` authenticated requests with 429 and `Retry-After: retry_after`."""
        self._throttle_left = count
        self._retry_after = retry_after

    def fail_usages(self, times: int = 1, *, status: int = 500) -> None:
        """Answer the next `times` Compute usages reads with `status` (500 InternalServerError, 403, ...)."""
        self._usages_left = times
        self._usages_status = status

    def never_join(self, *, times: int | None = None) -> None:
        """The next `times` VMs booted (all, when None) never register their Node; their pools still succeed."""
        self._script_boot("never-joins", times)

    def never_ready(self, *, times: int | None = None) -> None:
        """The next `times` VMs booted (all, when None) register a Node that stays NotReady."""
        self._script_boot("never-ready", times)

    def clear(self) -> None:
        self._create = None
        self._throttle_left = 0
        self._usages_left = 0
        self._boot = None

    def take_usages_failure(self) -> int | None:
        """The HTTP status to fail this usages read with, or None."""
        if self._usages_left <= 0:
            return None
        self._usages_left -= 1
        return self._usages_status

    def take_throttle(self) -> int | None:
        """The Retry-After to answer this request with, or None when it is not throttled."""
        if self._throttle_left <= 0:
            return None
        self._throttle_left -= 1
        return self._retry_after

    def take_create_fault(self) -> CreateFault | None:
        fault = self._create
        if fault is None:
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._create = None
        return fault

    def take_boot_fault(self, spec: NodeSpec) -> NodeSpec | None:
        """The Node a booting VM registers: `spec`, one that never turns Ready, or None when it never joins."""
        fault = self._boot
        if fault is not None and self._boot_left is not None:
            self._boot_left -= 1
            if self._boot_left <= 0:
                self._boot = None
        if fault == "never-joins":
            return None
        return dataclasses.replace(spec, ready_after=math.inf) if fault == "never-ready" else spec

    def _script_boot(self, fault: BootFault, times: int | None) -> None:
        if times is not None and times <= 0:
            raise ValueError("times must be positive (or None for every VM)")
        self._boot, self._boot_left = fault, times
