"""A simulated Azure Resource Manager for AKS agent pools, so the real azure-mgmt-containerservice SDK can be tested."""

from kaito_sim.arm.app import ArmRequest, RequestLog
from kaito_sim.arm.faults import Faults
from kaito_sim.arm.nodes import Cluster, NodeHook
from kaito_sim.arm.pools import Operation, PoolRecord
from kaito_sim.arm.quota import CloudLimits
from kaito_sim.arm.server import ArmSimulator

__all__ = [
    "ArmRequest",
    "ArmSimulator",
    "CloudLimits",
    "Cluster",
    "Faults",
    "NodeHook",
    "Operation",
    "PoolRecord",
    "RequestLog",
]
