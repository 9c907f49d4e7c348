"""The kaito operator embedded beside the simulated cluster: CRDs installed, simulated Azure, one manager task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import yaml

from kaito.api import crds
from kaito.operator import OperatorOptions, build
from kaito.provisioner.azure import AzureProvider
from kaito.provisioner.credentials import StaticTokenCredential
from kaito.runtime import errors
from kaito.runtime.client import Client
from kaito.runtime.kinds import CRD, NAMESPACE
from kaito.runtime.manager import Manager
from kaito_sim.aks import SimulatedAks
from kaito_sim.server import SimServer


async def install_crds(client: Client, namespace: str) -> None:
    """What `kubectl apply -f crds/` and the namespace manifest do, for the embedded demo cluster."""
    for text in crds.rendered().values():
        crd = yaml.safe_load(text)
        await client.apply(CRD, crd, field_manager="kaito-sim", force=True)
    await errors.ignore_already_exists(client.create(NAMESPACE, {"metadata": {"name": namespace}}))


def simulated_azure_provider(aks: SimulatedAks) -> AzureProvider:
    """The real Azure provider, pointed at the simulated ARM endpoint with its token and CA."""
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
    sim: SimServer,
    *,
    provisioning_delay: float,
    metrics_address: str | None = None,
    health_address: str | None = None,
    model_registry: str | None = None,
) -> AsyncIterator[Manager]:
    """A simulated Azure next to `sim`, the CRDs installed, and the operator running against both.

    `model_registry` (a loopback `HOST:PORT`, spoken to in plain HTTP) is where the catalog's model images live,
    as `kaito manager --model-registry HOST:PORT --insecure-model-registry HOST:PORT` sets it.
    """
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
            model_registry=model_registry,
            insecure_model_registries=(model_registry,) if model_registry else (),
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
