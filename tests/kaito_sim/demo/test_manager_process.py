"""`kaito sim --with-manager`'s operator: the CRDs written in-process, and `kaito manager` told the sim's settings."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

import yaml

from kaito.api import crds
from kaito.cli_manager import add_manager_arguments, operator_options
from kaito_sim.aks import SimulatedAks
from kaito_sim.demo.manager_process import CRDS, NAMESPACES, install_kaito_crds, manager_argv, manager_process
from kaito_sim.server import SimServer


async def test_the_crds_and_namespace_are_stored_as_kubectl_apply_of_crds_would(tmp_path: Path) -> None:
    async with SimServer(kubeconfig=tmp_path / "kubeconfig") as sim:
        await install_kaito_crds(sim, "kaito-system")
        stored = {crd["metadata"]["name"]: crd["spec"] for crd in sim.cluster.store.items(CRDS)}
        committed = {doc["metadata"]["name"]: doc["spec"] for doc in map(yaml.safe_load, crds.rendered().values())}
        assert stored == committed
        assert {rt.plural for rt in sim.cluster.registry if rt.group in ("kaito.sh", "karpenter.sh")} >= {
            "workspaces",
            "nodeclaims",
        }
        assert sim.cluster.store.get(NAMESPACES, "", "kaito-system") is not None


async def test_the_manager_is_pointed_at_the_sim_and_its_arm_endpoint(tmp_path: Path) -> None:
    async with SimServer(kubeconfig=tmp_path / "kubeconfig") as sim, SimulatedAks(sim) as aks:
        argv = manager_argv(sim, aks, namespace="ns", metrics_address="127.0.0.1:0", health_address="")
        assert argv[1:4] == ["-m", "kaito.cli", "manager"]
        parser = argparse.ArgumentParser()
        add_manager_arguments(parser)
        args = parser.parse_args(argv[4:])
        options = operator_options(args)
    assert (args.kubeconfig, args.cloud, args.arm_url, args.arm_ca, args.arm_token) == (
        str(sim.kubeconfig_path),
        "sim",
        aks.azure.url,
        aks.azure.ca_path,
        aks.token,
    )
    assert (options.namespace, options.leader_election, options.nodeclaim_poll_interval) == ("ns", False, 1.0)
    addresses = (options.webhook_address, options.metrics_address, options.health_address)
    assert addresses == ("127.0.0.1:0", "127.0.0.1:0", None)


async def test_leaving_stops_the_manager_process(tmp_path: Path) -> None:
    async with SimServer(kubeconfig=tmp_path / "kubeconfig") as sim:
        async with manager_process(sim, provisioning_delay=0, metrics_address="", health_address="") as proc:
            assert proc.returncode is None
        assert proc.returncode in (0, -signal.SIGTERM)


async def test_a_token_that_begins_with_a_dash_still_reaches_the_manager(tmp_path: Path) -> None:
    async with SimServer(kubeconfig=tmp_path / "kubeconfig") as sim, SimulatedAks(sim) as aks:
        aks.token = "-Zq3dashed_token"  # token_urlsafe draws "-" first once in 64 runs
        argv = manager_argv(sim, aks, namespace="ns", metrics_address="127.0.0.1:0", health_address="")
        parser = argparse.ArgumentParser()
        add_manager_arguments(parser)
        assert parser.parse_args(argv[4:]).arm_token == "-Zq3dashed_token"
