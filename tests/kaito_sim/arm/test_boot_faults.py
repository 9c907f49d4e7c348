"""The ARM simulator's boot faults: a pool whose VM never joins still succeeds, and one whose Node stays NotReady."""

from __future__ import annotations

import math

import pytest

from kaito_sim.arm import ArmSimulator
from kaito_sim.arm.faults import Faults
from kaito_sim.nodes.nodespec import NodeSpec
from tests.kaito_sim.arm.test_arm import Arm
from tests.kaito_sim.arm.test_arm import arm as arm
from tests.kaito_sim.arm.test_arm import hook as hook
from tests.kaito_sim.arm.test_arm import sim as sim
from tests.kaito_sim.recording_hook import RecordingHook


async def test_pool_whose_vm_never_joins_succeeds_without_a_node(
    sim: ArmSimulator, arm: Arm, hook: RecordingHook
) -> None:
    sim.faults.never_join(times=1)
    _, headers, _ = await arm.put_pool("lost")
    assert (await arm.wait(headers["Azure-AsyncOperation"]))["status"] == "Succeeded"
    _, _, pool = await arm.call("GET", arm.pool_url("lost"))
    assert pool["properties"]["provisioningState"] == "Succeeded"
    assert hook.added == [] and len(sim.node_names("lost")) == 1  # the VM is in its scale set, not in the cluster

    _, headers, _ = await arm.call("DELETE", arm.pool_url("lost"))
    assert (await arm.wait(headers["Azure-AsyncOperation"]))["status"] == "Succeeded"
    _, headers, _ = await arm.put_pool("next")  # the fault was for one VM only
    await arm.wait(headers["Azure-AsyncOperation"])
    assert [n.name for n in hook.added] == sim.node_names("next")


async def test_node_that_never_turns_ready(sim: ArmSimulator, arm: Arm, hook: RecordingHook) -> None:
    sim.faults.never_ready()
    for pool in ("sick1", "sick2"):
        _, headers, _ = await arm.put_pool(pool)
        assert (await arm.wait(headers["Azure-AsyncOperation"]))["status"] == "Succeeded"
    assert [n.ready_after for n in hook.added] == [math.inf, math.inf]
    sim.faults.clear()
    _, headers, _ = await arm.put_pool("well")
    await arm.wait(headers["Azure-AsyncOperation"])
    assert hook.added[-1].ready_after == 0.0


def test_boot_fault_counts_vms() -> None:
    faults = Faults()
    spec = NodeSpec(name="vm")
    faults.never_join(times=2)
    assert [faults.take_boot_fault(spec) for _ in range(3)] == [None, None, spec]
    with pytest.raises(ValueError, match="times must be positive"):
        faults.never_ready(times=0)
