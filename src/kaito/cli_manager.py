"""`kaito manager` and `kaito sim --with-manager`: running the operator against a cluster, real or simulated."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from kaito.api import crds
from kaito.operator import OperatorOptions, build
from kaito.provisioner.cloud import CloudProvider
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.kinds import CRD, NAMESPACE
from kaito.runtime.manager import Manager

if TYPE_CHECKING:
    from kaito.provisioner.azure import AzureProvider
    from kaito.sim.aks import SimulatedAks
    from kaito.sim.server import SimServer

log = logging.getLogger("kaito.manager")


def add_manager_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--kubeconfig", default=None, help="default: in-cluster, then $KUBECONFIG, ~/.kube/config")
    parser.add_argument("--cloud", choices=["azure", "sim", "byo"], default=env("KAITO_CLOUD", "azure"))
    parser.add_argument("--namespace", default=env("POD_NAMESPACE", "kaito-system"))
    parser.add_argument("--metrics-bind-address", default=":8080")
    parser.add_argument("--health-probe-bind-address", default=":8081")
    parser.add_argument("--webhook-bind-address", default=":9443")
    parser.add_argument("--webhook-service", default=env("WEBHOOK_SERVICE"), help="NAMESPACE/NAME:PORT of the webhook")
    parser.add_argument("--no-webhook", action="store_true")
    parser.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--kube-api-qps", type=float, default=50.0, help="client-side request rate limit")
    parser.add_argument("--kube-api-burst", type=int, default=100)
    parser.add_argument("--image", default=env("KAITO_IMAGE", "kaito-runtime:0.1.0"), help="inference/tuning image")
    parser.add_argument("--subscription-id", default=env("AZURE_SUBSCRIPTION_ID"))
    parser.add_argument("--resource-group", default=env("AZURE_RESOURCE_GROUP"))
    parser.add_argument("--cluster-name", default=env("AKS_CLUSTER_NAME"))
    parser.add_argument("--arm-url", default=env("ARM_URL", "https://management.azure.com"))
    parser.add_argument("--arm-ca", default=env("ARM_CA"), help="CA bundle for a simulated ARM endpoint")
    parser.add_argument("--arm-token", default=env("ARM_TOKEN"), help="static bearer token (simulated ARM only)")


def operator_options(args: argparse.Namespace) -> OperatorOptions:
    service = None
    if args.webhook_service:
        where, _, port = args.webhook_service.partition(":")
        namespace, _, name = where.partition("/")
        service = (namespace, name, int(port or 443))
    return OperatorOptions(
        namespace=args.namespace,
        image=args.image,
        bring_your_own_nodes=args.cloud == "byo",
        metrics_address=args.metrics_bind_address or None,
        health_address=args.health_probe_bind_address or None,
        leader_election=args.leader_elect,
        webhook_address=None if args.no_webhook else args.webhook_bind_address,
        webhook_service=service,
    )


def cloud_provider(args: argparse.Namespace) -> CloudProvider | None:
    if args.cloud == "byo":
        return None
    from kaito.provisioner.azure import AzureProvider
    from kaito.provisioner.credentials import StaticTokenCredential, default_credential

    missing = [
        flag
        for flag, value in (
            ("--subscription-id", args.subscription_id),
            ("--resource-group", args.resource_group),
            ("--cluster-name", args.cluster_name),
        )
        if not value
    ]
    if missing:
        raise SystemExit(f"kaito manager: {', '.join(missing)} required for --cloud {args.cloud}")
    credential = StaticTokenCredential(args.arm_token) if args.arm_token else default_credential()
    return AzureProvider(
        credential=credential,
        subscription_id=args.subscription_id,
        resource_group=args.resource_group,
        cluster=args.cluster_name,
        base_url=args.arm_url,
        connection_verify=args.arm_ca or True,
    )


async def run_manager(args: argparse.Namespace) -> int:
    client = await Client.from_config(kubeconfig=args.kubeconfig, qps=args.kube_api_qps, burst=args.kube_api_burst)
    provider = cloud_provider(args)
    manager = build(client, provider, operator_options(args))
    try:
        await manager.run(handle_signals=True)
    finally:
        await client.close()
        if provider is not None and hasattr(provider, "close"):
            await provider.close()
    return 0


async def install_crds(client: Client, namespace: str) -> None:
    """What `kubectl apply -f crds/` and the namespace manifest do, for the embedded demo cluster."""
    for text in crds.rendered().values():
        crd = yaml.safe_load(text)
        await client.apply(CRD, crd, field_manager="kaito-sim", force=True)
    await errors.ignore_already_exists(client.create(NAMESPACE, {"metadata": {"name": namespace}}))


def simulated_azure_provider(aks: SimulatedAks) -> AzureProvider:
    """The real Azure provider, pointed at the simulated ARM endpoint with its token and CA."""
    from kaito.provisioner.azure import AzureProvider
    from kaito.provisioner.credentials import StaticTokenCredential

    target = aks.azure
    return AzureProvider(
        credential=StaticTokenCredential(target.token),
        subscription_id=target.subscription_id,
        resource_group=target.resource_group,
        cluster=target.cluster,
        base_url=target.url,
        connection_verify=target.ca_path,
    )


@contextlib.asynccontextmanager
async def embedded_operator(
    sim: SimServer, *, provisioning_delay: float, metrics_address: str | None = None, health_address: str | None = None
) -> AsyncIterator[Manager]:
    """A simulated Azure next to `sim`, the CRDs installed, and the operator running against both."""
    from kaito.sim.aks import SimulatedAks

    async with SimulatedAks(sim, provisioning_delay=provisioning_delay) as aks:
        client = await Client.from_config(kubeconfig=str(sim.kubeconfig_path))
        await install_crds(client, "kaito-system")
        provider = simulated_azure_provider(aks)
        options = OperatorOptions(
            metrics_address=metrics_address,
            health_address=health_address,
            webhook_address="127.0.0.1:0",
            leader_election=False,
            nodeclaim_poll_interval=1.0,
        )
        manager = build(client, provider, options)
        stop = asyncio.Event()
        task = asyncio.create_task(manager.run(stop), name="manager")
        try:
            await manager.elected.wait()
            yield manager
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await provider.close()
            await client.close()


async def run_sim_with_manager(args: argparse.Namespace) -> int:
    """The simulated cluster, its simulated Azure, and the operator, in one process until SIGINT/SIGTERM."""
    from kaito.sim.server import SimServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from kaito.cli import process_pods

    sim = SimServer(
        host=args.host,
        port=args.port,
        kubeconfig=Path(args.kubeconfig),
        history_size=args.watch_history,
        process_pods=process_pods(args),
    )
    async with (
        sim,
        embedded_operator(
            sim,
            provisioning_delay=args.provisioning_delay,
            metrics_address=args.metrics_bind_address,
            health_address=args.health_probe_bind_address,
        ),
    ):
        print(f"kaito sim: serving {sim.url} (kubeconfig: {sim.kubeconfig_path}) with the kaito manager", flush=True)
        await stop.wait()
    return 0
