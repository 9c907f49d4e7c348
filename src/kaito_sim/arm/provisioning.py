"""The agent pools' lifecycle in the ARM simulator: accept a PUT or DELETE at once, finish it in the background.

A create or update beyond the family's or the region's vCPU quota is refused at once (QuotaExceeded); an accepted
one waits `provisioning_delay`, fails AllocationFailed when its size has no VMs free (the capacity set in the
limits), else boots or removes VMs through the node hook until the pool
has `count` nodes, then turns Succeeded (or Failed with the injected error). A delete waits the same delay,
removes every node and drops the pool. AKS accepts a delete while a create is running and preempts it; it
refuses a second write while one is in progress (409 OperationNotAllowed), and so does this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

from kaito.presets.catalog import Catalog
from kaito.runtime.clock import Clock
from kaito_sim.arm.errors import ArmError, JsonObj, default_message, sync_status
from kaito_sim.arm.faults import CreateFault, Faults
from kaito_sim.arm.nodes import Cluster, NodeHook, VmSize, node_spec
from kaito_sim.arm.pools import Operation, PoolRecord, failure, not_found, parse_spec, timestamp
from kaito_sim.arm.quota import CloudLimits

log = logging.getLogger(__name__)


class AgentPools:
    """Pools and operations of one managed cluster, and the background work that finishes each operation."""

    def __init__(
        self,
        *,
        cluster: Cluster,
        catalog: Callable[[], Awaitable[Catalog]],
        faults: Faults,
        node_hook: NodeHook | None,
        clock: Clock,
        delay: Callable[[], float],
        ready_after: Callable[[], float] = lambda: 0.0,
        limits: CloudLimits | None = None,
    ) -> None:
        self.cluster = cluster
        self.catalog = catalog  # awaited by the first create or update: loading it never delays start-up
        self.faults = faults
        self.node_hook = node_hook
        self.clock = clock
        self.delay = delay
        self.ready_after = ready_after
        self.limits = limits or CloudLimits()
        self.pools: dict[str, PoolRecord] = {}
        self.operations: dict[str, Operation] = {}
        self._work: dict[str, asyncio.Task[None]] = {}  # pool name -> the task finishing its operation

    def get(self, name: str) -> PoolRecord:
        record = self.pools.get(name)
        if record is None:
            raise not_found(self.cluster, name)
        return record

    async def put(self, name: str, body: object) -> tuple[PoolRecord, Operation, bool]:
        """Start a create or update; returns the pool, its operation and whether it was created."""
        spec = parse_spec(name, body, catalog=await self.catalog(), cluster=self.cluster)
        record = self.pools.get(name)
        if record is not None:
            self._check_update(record, spec.vm_size.name)
            self._check_quota(spec.vm_size, spec.count - record.spec.count)
            record.spec, record.provisioning_state, record.error = spec, "Updating", None
            record.etag = str(uuid.uuid4())
            operation = self._start(record, "update", None)
            return record, operation, False
        fault = self.faults.take_create_fault()
        if fault is not None and fault.sync:
            raise self._refusal(fault, spec.vm_size.name)
        if fault is None:
            self._check_quota(spec.vm_size, spec.count)
        record = PoolRecord(name, spec, "Creating")
        self.pools[name] = record
        return record, self._start(record, "create", fault), True

    def delete(self, name: str) -> Operation | None:
        """Start deleting; None when there was no such pool (ARM answers 204)."""
        record = self.pools.get(name)
        if record is None:
            return None
        if record.provisioning_state == "Deleting" and record.operation in self.operations:
            return self.operations[record.operation]
        self._preempt(record)
        record.provisioning_state = "Deleting"
        return self._start(record, "delete", None)

    async def close(self) -> None:
        tasks = list(self._work.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _check_update(self, record: PoolRecord, vm_size: str) -> None:
        if record.busy:
            operation = self.operations.get(record.operation or "")
            kind = operation.kind if operation else "pending"
            started = timestamp(operation.start_time) if operation else ""
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Operation is not allowed because there's an in progress {kind} node pool operation "
                f"{record.operation} started at {started}. Please wait for it to finish before starting a new "
                "operation.",
            )
        if vm_size != record.spec.vm_size.name:
            raise ArmError(400, "PropertyChangeNotAllowed", "Changing property 'properties.vmSize' is not allowed.")

    def _check_quota(self, size: VmSize, more_vms: int) -> None:
        required = more_vms * size.quota_vcpus
        self.limits.check_quota(self.pools.values(), size, required=required, location=self.cluster.location)

    def _refusal(self, fault: CreateFault, vm_size: str) -> ArmError:
        message = fault.message or default_message(fault.code, vm_size=vm_size, location=self.cluster.location)
        return ArmError(fault.status or sync_status(fault.code), fault.code, message)

    def _start(self, record: PoolRecord, kind: str, fault: CreateFault | None) -> Operation:
        operation = Operation(str(uuid.uuid4()), kind, record.name)
        self.operations[operation.id] = operation
        record.operation = operation.id
        work = self._remove(record, operation) if kind == "delete" else self._provision(record, operation, fault)
        task = asyncio.create_task(work, name=f"arm-{kind}-{record.name}")
        self._work[record.name] = task
        task.add_done_callback(lambda t: self._finished(record.name, t))
        return operation

    def _finished(self, name: str, task: asyncio.Task[None]) -> None:
        if self._work.get(name) is task:
            del self._work[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("ARM simulator task for pool %s crashed", name, exc_info=task.exception())

    def _preempt(self, record: PoolRecord) -> None:
        task = self._work.pop(record.name, None)
        if task is not None:
            task.cancel()
        operation = self.operations.get(record.operation or "")
        if operation is not None and not operation.done:
            operation.finish("Canceled", failure("Canceled", "The operation was preempted by a delete."))

    async def _provision(self, record: PoolRecord, operation: Operation, fault: CreateFault | None) -> None:
        await self.clock.sleep(self.delay())
        error: JsonObj | None = None
        if fault is not None:
            message = fault.message or default_message(
                fault.code, vm_size=record.spec.vm_size.name, location=self.cluster.location
            )
            error = failure(fault.code, message)
        elif (refused := self.limits.allocation_error(self.pools.values(), record)) is not None:
            error = refused
        else:
            record.allocated = record.spec.count
            try:
                await self._scale(record)
            except Exception as exc:  # the hook is the simulated VM boot; its failure is the VM's failure
                log.exception("node hook failed for pool %s", record.name)
                error = failure("VMExtensionProvisioningError", f"VM has reported a failure when booting: {exc}")
        record.provisioning_state, record.error = ("Failed", error) if error else ("Succeeded", None)
        record.operation = None
        operation.finish("Failed" if error else "Succeeded", error)

    async def _scale(self, record: PoolRecord) -> None:
        shape = record.shape()
        while len(record.nodes) < record.spec.count:
            index = record.next_index
            record.next_index += 1
            spec = node_spec(self.cluster, shape, index, ready_after=self.ready_after())
            joining = self.faults.take_boot_fault(spec)
            if self.node_hook is not None and joining is not None:
                await self.node_hook.add(joining)
            record.nodes[index] = spec.name
        while len(record.nodes) > record.spec.count:
            index = max(record.nodes)
            if self.node_hook is not None:
                await self.node_hook.remove(record.nodes[index])
            del record.nodes[index]

    async def _remove(self, record: PoolRecord, operation: Operation) -> None:
        await self.clock.sleep(self.delay())
        for index in sorted(record.nodes):
            if self.node_hook is not None:
                try:
                    await self.node_hook.remove(record.nodes[index])
                except Exception:  # a VM that fails to leave is still deleted with its scale set
                    log.exception("node hook failed to remove %s", record.nodes[index])
        record.nodes.clear()
        record.allocated = 0
        if self.pools.get(record.name) is record:
            del self.pools[record.name]
        operation.finish("Succeeded")
