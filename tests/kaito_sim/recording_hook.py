"""A node hook for the ARM simulator that records which VMs joined and left, for assertions."""

from __future__ import annotations

from kaito_sim.nodes.nodespec import NodeSpec


class RecordingHook:
    def __init__(self) -> None:
        self.added: list[NodeSpec] = []
        self.removed: list[str] = []

    async def add(self, spec: NodeSpec) -> None:
        self.added.append(spec)

    async def remove(self, name: str) -> None:
        self.removed.append(name)
