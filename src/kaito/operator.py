"""Assembling the operator: one manager running the workspace and InferenceSet controllers, the node provisioner and
admission."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kaito.api.modelimage import NODE_CACHE_DIR
from kaito.api.nodeclaim import LABEL_NODECLAIM
from kaito.api.workspace import LABEL_WORKSPACE
from kaito.controllers import inferenceset_setup as inferenceset_controller
from kaito.controllers import setup as workspace_controller
from kaito.controllers.context import DEFAULT_IMAGE, Settings
from kaito.presets.catalogsource import CatalogSource
from kaito.provisioner.cloud import CloudProvider
from kaito.provisioner.liveness import DEFAULT_NODE_READY_TIMEOUT, DEFAULT_REGISTRATION_TIMEOUT, Liveness
from kaito.runtime.client import Client
from kaito.runtime.informer import Selectors
from kaito.runtime.kinds import NODE, POD, Kind
from kaito.runtime.manager import Manager, ManagerOptions
from kaito.runtime.tasks import Runnable
from kaito.webhook import finalizer
from kaito.webhook import inferenceset as inferenceset_webhook
from kaito.webhook.certs import write_serving_cert
from kaito.webhook.registration import ServiceRef, ensure_mutating_webhook, ensure_validating_webhook
from kaito.webhook.server import WebhookServer
from kaito.webhook.workspace import PATH, RULES, WEBHOOK_NAME, workspace_validator
from kaito.workspaces.hubmodels import HubModels
from kaito.workspaces.imageconfigs import ImageConfigs

log = logging.getLogger(__name__)


@dataclass
class OperatorOptions:
    namespace: str = "kaito-system"  # where the lease and the catalog ConfigMap live
    catalog_cloud: str = "azure"  # which SKU table sizing and `auto` choose from
    image: str = DEFAULT_IMAGE
    bring_your_own_nodes: bool = False
    byo_node_selector: str | None = None  # with bring-your-own nodes: the label selector of the nodes to cache
    metrics_address: str | None = ":8080"
    health_address: str | None = ":8081"
    leader_election: bool = True
    webhook_address: str | None = ":9443"
    webhook_url: str | None = None  # register the webhooks by URL, this base plus each path (the sim) ...
    webhook_service: tuple[str, str, int] | None = None  # ... or by Service (namespace, name, port) in a cluster
    webhook_hosts: list[str] = field(default_factory=lambda: ["localhost", "127.0.0.1"])
    nodeclaim_poll_interval: float = 5.0
    nodeclaim_retry_interval: float = 30.0
    nodeclaim_registration_timeout: float = DEFAULT_REGISTRATION_TIMEOUT  # a launched node must register by then
    node_ready_timeout: float = DEFAULT_NODE_READY_TIMEOUT  # ... and be Ready this long after registering
    fallback_capacity_retries: int = 2  # retries a capacity failure gets before the next instance type is tried
    model_registry: str | None = None  # REGISTRY[/PREFIX] of the catalog's model images
    model_cache_dir: str = NODE_CACHE_DIR
    insecure_model_registries: tuple[str, ...] = ()
    # A CA bundle admission trusts when it reads model images' configs, and the pods' model pullers trust too.
    model_registry_ca: Path | None = None
    # The Hugging Face hub (or a mirror) models the catalog lacks are read from and pods download from; None: public.
    hf_endpoint: str | None = None


def cache_selectors(*, bring_your_own_nodes: bool, byo_node_selector: str | None = None) -> dict[Kind, Selectors]:
    """What the cache lists and watches, so its size follows kaito's objects rather than the cluster's.

    Pods: only workspace pods. Nodes: only those kaito provisioned (each carries its NodeClaim's name).
    With bring-your-own nodes, every workspace matches nodes by its own label selector, so any node may
    be one: all are cached unless `byo_node_selector` names the GPU nodes workspaces may use (a node
    outside it is invisible to every workspace). Other kinds are cached whole (users' ConfigMaps are
    read by name).
    """
    selectors = {POD: Selectors(label_selector=LABEL_WORKSPACE)}
    if not bring_your_own_nodes:
        selectors[NODE] = Selectors(label_selector=LABEL_NODECLAIM)
    elif byo_node_selector:
        selectors[NODE] = Selectors(label_selector=byo_node_selector)
    return selectors


def build(client: Client, provider: CloudProvider | None, options: OperatorOptions) -> Manager:
    """A manager with everything wired; `provider` None means bring-your-own-nodes (nothing provisioned)."""
    settings = Settings(
        image=options.image,
        bring_your_own_nodes=provider is None or options.bring_your_own_nodes,
        model_registry=options.model_registry,
        model_cache_dir=options.model_cache_dir,
        insecure_model_registries=frozenset(options.insecure_model_registries),
        model_registry_ca=options.model_registry_ca.read_text() if options.model_registry_ca else None,
        retry_interval=options.nodeclaim_retry_interval,
        capacity_retries=options.fallback_capacity_retries,
        hf_endpoint=options.hf_endpoint,
    )
    manager = Manager(
        client,
        options=ManagerOptions(
            metrics_address=options.metrics_address,
            health_address=options.health_address,
            leader_election=options.leader_election,
            leader_election_id="kaito-manager-lock",
            leader_election_namespace=options.namespace,
            cache_selectors=cache_selectors(
                bring_your_own_nodes=settings.bring_your_own_nodes, byo_node_selector=options.byo_node_selector
            ),
        ),
    )
    catalog = CatalogSource(manager.cache, namespace=options.namespace)
    # Model image configs admission read, kept for the controller to plan from the same numbers.
    image_configs = ImageConfigs(ca_file=options.model_registry_ca, insecure=settings.insecure_model_registries)
    # Likewise the Hugging Face models admission read, with the revision each was pinned to.
    hub_models = HubModels(endpoint=options.hf_endpoint)
    workspace_controller.setup(
        manager,
        catalog=catalog,
        cloud=options.catalog_cloud,
        settings=settings,
        image_configs=image_configs,
        hub_models=hub_models,
    )
    inferenceset_controller.setup(manager, settings=settings)
    if provider is not None and not settings.bring_your_own_nodes:
        from kaito.provisioner import controller as nodeclaim_controller
        from kaito.provisioner.metrics import MeteredCloudProvider

        nodeclaim_controller.setup(
            manager,
            MeteredCloudProvider(provider),
            poll_interval=options.nodeclaim_poll_interval,
            retry_interval=options.nodeclaim_retry_interval,
            liveness=Liveness(options.nodeclaim_registration_timeout, options.node_ready_timeout),
        )
    if options.webhook_address is not None:
        webhook = _webhook_runnable(client, catalog, options, image_configs, hub_models)
        manager.add(webhook, name="webhook", leader_elected=False)
    return manager


def _webhook_runnable(
    client: Client,
    catalog: CatalogSource,
    options: OperatorOptions,
    image_configs: ImageConfigs,
    hub_models: HubModels,
) -> Runnable:
    async def run(stop: asyncio.Event) -> None:
        with tempfile.TemporaryDirectory(prefix="kaito-webhook-") as tmp:
            ips = [h for h in options.webhook_hosts if h.replace(".", "").isdigit()]
            names = [h for h in options.webhook_hosts if h not in ips]
            if options.webhook_service:
                namespace, name, _ = options.webhook_service
                names += [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]
            ca_pem, cert, key = write_serving_cert(Path(tmp), names, ips)
            validator = workspace_validator(
                catalog=catalog,
                cloud=options.catalog_cloud,
                client=client,
                image_configs=image_configs,
                model_registry=options.model_registry,
                hub_models=hub_models,
            )
            handlers = {
                PATH: validator,
                finalizer.PATH: finalizer.workspace_finalizer_mutator(),
                inferenceset_webhook.PATH: inferenceset_webhook.inferenceset_validator(validator),
            }
            address = options.webhook_address or ":9443"
            server = WebhookServer(handlers, address=address, cert_file=cert, key_file=key)
            await server.start()
            try:
                # Mutating first: once the validating webhook is registered, both are.
                url, service = _webhook_target(server, options, finalizer.PATH)
                await ensure_mutating_webhook(
                    client,
                    name=finalizer.CONFIGURATION_NAME,
                    webhook_name=finalizer.WEBHOOK_NAME,
                    ca_pem=ca_pem,
                    url=url,
                    service=service,
                    rules=finalizer.RULES,
                )
                # The InferenceSet's before the Workspace's: once the Workspace's is registered, all are.
                url, service = _webhook_target(server, options, inferenceset_webhook.PATH)
                await ensure_validating_webhook(
                    client,
                    name=inferenceset_webhook.CONFIGURATION_NAME,
                    webhook_name=inferenceset_webhook.WEBHOOK_NAME,
                    ca_pem=ca_pem,
                    url=url,
                    service=service,
                    rules=inferenceset_webhook.RULES,
                )
                url, service = _webhook_target(server, options, PATH)
                await ensure_validating_webhook(
                    client,
                    name="kaito-validating-webhook-configuration",
                    webhook_name=WEBHOOK_NAME,
                    ca_pem=ca_pem,
                    url=url,
                    service=service,
                    rules=RULES,
                )
                log.info("admission webhooks registered (%s)", url or service)
                await stop.wait()
            finally:
                await server.stop()

    return run


def _webhook_target(server: WebhookServer, options: OperatorOptions, path: str) -> tuple[str | None, ServiceRef | None]:
    """The URL or the Service through which the API server reaches `path` on `server`."""
    if options.webhook_url:
        return options.webhook_url.rstrip("/") + path, None
    if options.webhook_service:
        namespace, name, port = options.webhook_service
        return None, (namespace, name, port, path)
    return server.url(path), None
