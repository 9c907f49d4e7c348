"""`kaito manager`: the operator's flags, its cloud provider from them, and the run against a cluster."""

from __future__ import annotations

import argparse
import os
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kaito.operator import OperatorOptions
    from kaito.provisioner.cloud import CloudProvider


_KEY = r"(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_TERM = (
    rf"\s*(?:!\s*{_KEY}|{_KEY}\s*(?:==?|!=)\s*{_VALUE}|{_KEY}\s+(?:in|notin)\s*\(\s*{_VALUE}(?:\s*,\s*{_VALUE})*\s*\)"
    rf"|{_KEY})\s*"
)
_SELECTOR = re.compile(rf"{_TERM}(?:,{_TERM})*")


def label_selector(text: str) -> str:
    """A Kubernetes label selector (`a=b,c!=d,e in (f,g),!h`), checked here so a typo fails at start-up."""
    if not _SELECTOR.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a label selector; expected terms such as key=value, key!=value, key in (a,b), "
            "key or !key, joined by commas"
        )
    return text


# Under this size a CA bundle fits a workspace's engine ConfigMap (1 MiB at most) next to the engine config.
MAX_CA_BUNDLE_BYTES = 512 * 1024


def ca_bundle(text: str) -> Path:
    """A PEM CA bundle's path, checked here (readable, certificates in it, small enough) so start-up fails on it."""
    path = Path(text)
    try:
        size = path.stat().st_size
        if size > MAX_CA_BUNDLE_BYTES:
            raise argparse.ArgumentTypeError(
                f"{text} is {size} bytes; a CA bundle the pods get must be under {MAX_CA_BUNDLE_BYTES} bytes "
                "(name only the CAs of the model registries)"
            )
        ssl.create_default_context(cafile=str(path))
    except OSError as exc:  # ssl.SSLError (no certificate in it) is one too
        raise argparse.ArgumentTypeError(f"{text} is not a readable PEM CA bundle ({exc})") from exc
    return path


def seconds(text: str) -> float:
    """A duration in seconds, `0` or more, checked here so a typo fails at start-up."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


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
    parser.add_argument(
        "--byo-node-selector",
        type=label_selector,
        default=env("KAITO_BYO_NODE_SELECTOR"),
        help="with --cloud byo: a label selector for the GPU nodes workspaces may use; only those are cached "
        "(default: every node)",
    )
    parser.add_argument(
        "--nodeclaim-poll-interval", type=float, default=5.0, help="seconds between polls of a pending cloud operation"
    )
    parser.add_argument(
        "--nodeclaim-registration-timeout",
        type=seconds,
        default=900.0,
        metavar="SECONDS",
        help="a launched node that has not registered by then is deleted and launched again (default 900, 15 minutes; "
        "0: wait forever)",
    )
    parser.add_argument(
        "--node-ready-timeout",
        type=seconds,
        default=900.0,
        metavar="SECONDS",
        help="a registered node that is not Ready with its GPUs by then is deleted and launched again "
        "(default 900; 0: wait forever)",
    )
    parser.add_argument(
        "--fallback-capacity-retries",
        type=int,
        default=2,
        help="launch retries a capacity failure gets before a workspace with several instance types tries the next",
    )
    parser.add_argument(
        "--model-registry",
        default=env("KAITO_MODEL_REGISTRY"),
        metavar="REGISTRY[/PREFIX]",
        help="where the catalog's model images live: a preset runs from REGISTRY/kaito-models/<preset>:<revision> "
        "(REGISTRY/PREFIX/<preset>:<revision> with a prefix) instead of downloading from Hugging Face",
    )
    parser.add_argument(
        "--model-cache-dir", default="/var/lib/kaito/models", help="the node-local model cache (a hostPath)"
    )
    parser.add_argument(
        "--insecure-model-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="a registry spoken to in plain HTTP, not TLS (repeatable); every other model registry needs TLS",
    )
    parser.add_argument(
        "--model-registry-ca",
        type=ca_bundle,
        help="PEM CA bundle of the model registries' certificates: admission trusts it when it reads a model image's "
        "config, and each workspace's model puller trusts it (it rides in the workspace's engine ConfigMap)",
    )
    parser.add_argument(
        "--hf-endpoint",
        default=env("HF_ENDPOINT"),
        metavar="URL",
        help="the Hugging Face hub (or a mirror) a model the catalog lacks is read from and pods download from "
        "(default: $HF_ENDPOINT, else https://huggingface.co)",
    )


def operator_options(args: argparse.Namespace) -> OperatorOptions:
    from kaito.operator import OperatorOptions

    service = None
    if args.webhook_service:
        where, _, port = args.webhook_service.partition(":")
        namespace, _, name = where.partition("/")
        service = (namespace, name, int(port or 443))
    return OperatorOptions(
        namespace=args.namespace,
        image=args.image,
        bring_your_own_nodes=args.cloud == "byo",
        byo_node_selector=args.byo_node_selector or None,
        metrics_address=args.metrics_bind_address or None,
        health_address=args.health_probe_bind_address or None,
        leader_election=args.leader_elect,
        webhook_address=None if args.no_webhook else args.webhook_bind_address,
        webhook_service=service,
        nodeclaim_poll_interval=args.nodeclaim_poll_interval,
        nodeclaim_registration_timeout=args.nodeclaim_registration_timeout,
        node_ready_timeout=args.node_ready_timeout,
        model_registry=args.model_registry or None,
        model_cache_dir=args.model_cache_dir,
        fallback_capacity_retries=args.fallback_capacity_retries,
        insecure_model_registries=tuple(args.insecure_model_registry),
        model_registry_ca=args.model_registry_ca,
        hf_endpoint=args.hf_endpoint or None,
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
    from kaito.operator import build
    from kaito.runtime.client import Client

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
