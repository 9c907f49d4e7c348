"""Where the simulated apply->Ready goes, phase by phase, as the workspace's own `status.phases` tells it.

Run: `python benchmarks/phase_bench.py --provisioning-delay 4 --node-ready-after 3 --pod-ready-delay 5`.
The API server, the simulated Azure and the operator all run in this process. Each scenario applies the README
example (`examples/inference/kaito_workspace_phi_3.yaml`), possibly changed and with the simulated cloud prepared
first, waits for Ready and prints each phase's seconds; after the first scenario, each other one also prints what
it cost over the first. Times are whole seconds, as the API stamps them: use delays of a few seconds.

A scenario is an entry in `SCENARIOS`: how it changes the manifest and what it does to the simulated cloud before
the apply (`aks.arm.limits` or `aks.arm.faults`). "fallback" sets the A100 family's quota to 0, as
`kaito sim --azure-quota standardNCADSA100v4Family=0` does, and applies the example with
`instanceTypes: [Standard_NC24ads_A100_v4, Standard_NC40ads_H100_v5]`: the quota check refuses the A100 and the
workspace moves to the H100; its extra time over "direct" is what the fallback costs.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kaito.cli_humans import PHASE_LABELS, format_duration
from kaito.controllers.kinds import WORKSPACE
from kaito.controllers.timeline import apply_to_ready, parse_time
from kaito.operator import OperatorOptions, build
from kaito.runtime.client import Client
from kaito.runtime.kinds import NAMESPACE
from kaito_sim.aks import SimulatedAks
from kaito_sim.demo.operator import install_crds, simulated_azure_provider
from kaito_sim.server import SimServer

Obj = dict[str, Any]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples/inference/kaito_workspace_phi_3.yaml"


def unchanged(manifest: Obj) -> Obj:
    return manifest


def nothing(aks: SimulatedAks) -> None:
    """Leaves the simulated cloud as it starts: every SKU available, quota and capacity to spare."""


@dataclass(frozen=True)
class Scenario:
    description: str
    manifest: Callable[[Obj], Obj] = unchanged
    prepare: Callable[[SimulatedAks], None] = field(default=nothing)


A100, H100 = "Standard_NC24ads_A100_v4", "Standard_NC40ads_H100_v5"
A100_FAMILY = "standardNCADSA100v4Family"


def a100_then_h100(manifest: Obj) -> Obj:
    manifest["resource"].pop("instanceType", None)
    manifest["resource"]["instanceTypes"] = [A100, H100]
    return manifest


def no_a100_quota(aks: SimulatedAks) -> None:
    aks.arm.limits.set_quota(A100_FAMILY, 0)


SCENARIOS: dict[str, Scenario] = {
    "direct": Scenario("the README example; its instance type is granted at once"),
    "fallback": Scenario(
        f"instanceTypes [{A100}, {H100}] with the A100 family's quota at 0", a100_then_h100, no_a100_quota
    ),
}


@dataclass(frozen=True)
class Outcome:
    phases: list[Obj]
    apply_to_ready: float
    instance_type: str  # the type the workspace became Ready on
    refused: list[str]  # the types refused on the way, with the reason: `SKU (Reason)`


async def run_scenario(scenario: Scenario, args: argparse.Namespace, namespace: str) -> Outcome:
    """A fresh simulated cluster and operator; the scenario's workspace applied, then read back once Ready."""
    async with SimServer() as sim:
        sim.pod_ready_delay = args.pod_ready_delay
        async with SimulatedAks(
            sim, provisioning_delay=args.provisioning_delay, node_ready_after=args.node_ready_after
        ) as aks:
            scenario.prepare(aks)
            client = await Client.from_config(kubeconfig=str(sim.kubeconfig_path), user_agent="kaito-bench")
            await install_crds(client, "kaito-system")
            provider = simulated_azure_provider(aks)
            options = OperatorOptions(
                metrics_address=None,
                health_address=None,
                webhook_address="127.0.0.1:0",
                leader_election=False,
                nodeclaim_poll_interval=1.0,
            )
            manager = build(client, provider, options)
            stop = asyncio.Event()
            task = asyncio.create_task(manager.run(stop))
            try:
                await manager.elected.wait()
                return await apply_and_wait(client, scenario, namespace, within=args.timeout)
            finally:
                stop.set()
                await task
                await provider.close()
                await client.close()


async def apply_and_wait(client: Client, scenario: Scenario, namespace: str, *, within: float) -> Outcome:
    manifest = scenario.manifest(copy.deepcopy(yaml.safe_load(EXAMPLE.read_text())))
    manifest["apiVersion"] = WORKSPACE.api_version  # the example is written in v1alpha1, which the server converts
    manifest["metadata"]["namespace"] = namespace
    await client.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    await client.create(WORKSPACE, manifest)
    name = manifest["metadata"]["name"]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ws = await client.get(WORKSPACE, name, namespace=namespace)
        phases = (ws.get("status") or {}).get("phases") or []
        total = apply_to_ready(phases)
        if total is not None:
            status = ws["status"]
            refused = [f"{a['instanceType']} ({a['reason']})" for a in status.get("instanceAttempts") or []]
            return Outcome(phases, total, str((status.get("plan") or {}).get("instanceType")), refused)
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{namespace}/{name} not Ready within {within:.0f} s")


def seconds(phase: Obj) -> float:
    start, end = parse_time(phase.get("startedAt")), parse_time(phase.get("endedAt"))
    return 0.0 if start is None or end is None else (end - start).total_seconds()


def report(name: str, scenario: Scenario, outcome: Outcome, baseline: Outcome | None) -> None:
    print(f"{name}: {scenario.description}")
    start = parse_time(outcome.phases[0].get("startedAt"))
    for phase in outcome.phases:
        ended = parse_time(phase.get("endedAt"))
        at = (ended - start).total_seconds() if ended and start else 0.0
        label = PHASE_LABELS.get(phase["name"], phase["name"])
        print(f"  {label:18} {seconds(phase):6.0f} s   (ended at +{format_duration(at)})")
    print(f"  {'apply->Ready':18} {outcome.apply_to_ready:6.0f} s   on {outcome.instance_type}")
    if outcome.refused:
        print(f"  refused first: {', '.join(outcome.refused)}")
    if baseline is not None:
        extra = outcome.apply_to_ready - baseline.apply_to_ready
        print(f"  over the first scenario: {extra:+.0f} s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provisioning-delay", type=float, default=4.0, help="seconds an agent pool takes")
    parser.add_argument("--node-ready-after", type=float, default=3.0, help="seconds a new node takes to be Ready")
    parser.add_argument("--pod-ready-delay", type=float, default=5.0, help="seconds a started pod takes to be Ready")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    args = parser.parse_args()
    print(
        f"simulated: agent pool {args.provisioning_delay:.0f} s, node Ready {args.node_ready_after:.0f} s after, "
        f"pod Ready {args.pod_ready_delay:.0f} s after start (times are whole seconds)"
    )
    baseline = None
    for name in args.scenario or list(SCENARIOS):
        scenario = SCENARIOS[name]
        outcome = await run_scenario(scenario, args, namespace=f"bench-{name}")
        report(name, scenario, outcome, baseline)
        baseline = baseline or outcome


if __name__ == "__main__":
    asyncio.run(main())
