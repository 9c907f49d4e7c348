"""The `kaito` command: parses the command line and hands it to the room that runs the chosen command.

Only the chosen command's module is imported, so `kaito serve` in an inference pod loads no operator code
and `kaito manager` no torch. Commands of other installed distributions (the local cluster's `kaito sim`
and demos) arrive through the `kaito.commands` entry-point group.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaito.commands import Command, plugin_commands


@dataclass(frozen=True)
class Builtin:
    """`kaito NAME`: `module.add_arguments(parser)` declares its flags, `module.run(args)` runs it."""

    module: str
    add_arguments: str
    run: str
    help: str

    def load(self) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any]]:
        module = importlib.import_module(self.module)
        return getattr(module, self.add_arguments), getattr(module, self.run)


BUILTINS: dict[str, Builtin] = {
    "manager": Builtin(
        "kaito.cli_manager",
        "add_manager_arguments",
        "run_manager",
        "run the kaito operator (workspace controller, node provisioner, webhook)",
    ),
    "serve": Builtin(
        "kaito.inference.serve",
        "add_serve_arguments",
        "run_serve",
        "run the OpenAI-compatible inference server (the inference pod's command)",
    ),
    "gateway": Builtin(
        "kaito.gateway.command",
        "add_gateway_arguments",
        "run_gateway",
        "run one InferenceSet's endpoint: balance, stream and hold requests across its replicas",
    ),
    "status": Builtin(
        "kaito.cli_humans",
        "add_cluster_arguments",
        "run_status",
        "a workspace explained: plan, conditions, nodes, endpoint",
    ),
    "chat": Builtin(
        "kaito.cli_humans",
        "add_chat_arguments",
        "run_chat",
        "ask a workspace's model a question through the API server",
    ),
    "crds": Builtin("kaito.cli", "add_crds_arguments", "run_crds", "write the CRDs generated from the API models"),
    "render": Builtin(
        "kaito.cli",
        "add_render_arguments",
        "run_render",
        "show the plan kaito would choose for a Workspace, without a cluster",
    ),
    # The steps of tuning and adapter pods.
    "tune": Builtin(
        "kaito.tuning.tune", "add_tune_arguments", "run_tune", "train a LoRA/QLoRA adapter (the tuning pod's main step)"
    ),
    "fetch-data": Builtin(
        "kaito.tuning.fetch",
        "add_fetch_data_arguments",
        "run_fetch_data",
        "download training data from URLs into the data directory",
    ),
    "pull-data": Builtin(
        "kaito.tuning.artifacts",
        "add_pull_data_arguments",
        "run_pull_data",
        "pull a training data artifact from an OCI registry",
    ),
    "push-adapter": Builtin(
        "kaito.tuning.artifacts",
        "add_push_adapter_arguments",
        "run_push_adapter",
        "push a trained adapter to an OCI registry",
    ),
    "pull-adapter": Builtin(
        "kaito.tuning.artifacts",
        "add_pull_adapter_arguments",
        "run_pull_adapter",
        "pull an adapter from an OCI registry for serving",
    ),
    # The model image steps: packing a model directory, and the inference pod's weights init step.
    "push-model": Builtin(
        "kaito.modelimages.commands",
        "add_push_model_arguments",
        "run_push_model",
        "push a model directory to an OCI registry as a model image",
    ),
    "pull-model": Builtin(
        "kaito.modelimages.commands",
        "add_pull_model_arguments",
        "run_pull_model",
        "pull a model image into the node's cache and link it into a directory",
    ),
}


def add_crds_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", default="crds", help="directory to write into")
    parser.add_argument("--check", action="store_true", help="only report files that differ (exit 1 if any)")


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", action="append", default=[], help="manifest file(s); - for stdin")
    parser.add_argument("--cloud", choices=["azure", "aws", "arc"], default="azure")
    parser.add_argument("--catalog", help="catalog overrides: a ConfigMap manifest or a directory of YAML files")
    parser.add_argument("-o", "--output", choices=["text", "yaml", "json"], default="text")
    parser.add_argument(
        "--list-models",
        action="store_true",
        help="list the catalog's models (and, with -f, the Hugging Face models the manifests name, read from the hub "
        "at $HF_ENDPOINT) and exit",
    )
    parser.add_argument("--list-skus", action="store_true", help="list the cloud's instance types and exit")


def _parser(
    wanted: str | None, plugins: dict[str, Command]
) -> tuple[argparse.ArgumentParser, Callable[[argparse.Namespace], Any] | None]:
    """The full parser (every command listed) and the run function of `wanted`, whose flags alone are loaded."""
    parser = argparse.ArgumentParser(prog="kaito", description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run: Callable[[argparse.Namespace], Any] | None = None
    for name, builtin in BUILTINS.items():
        command = sub.add_parser(name, help=builtin.help)
        if name == wanted:
            add_arguments, run = builtin.load()
            add_arguments(command)
    for name, plugin in plugins.items():
        plugin.add_arguments(sub.add_parser(name, help=plugin.help))
        if name == wanted:
            run = plugin.run
    return parser, run


def run_render(args: argparse.Namespace) -> int:
    from kaito import render
    from kaito.presets.catalog import CatalogError
    from kaito.workspaces.hubmodels import HubModels
    from kaito.workspaces.imageconfigs import ImageConfigs

    try:
        catalog = render.load_catalog(args.catalog)
    except (CatalogError, OSError) as exc:
        print(f"kaito render: {exc}", file=sys.stderr)
        return 2
    hub = HubModels(endpoint=os.environ.get("HF_ENDPOINT"))  # as huggingface_hub would, but said explicitly
    if args.list_models:
        return render.list_models(catalog, sys.stdout, paths=args.filename, hub=hub)
    if args.list_skus:
        for sku in catalog.skus_for(args.cloud):
            price = f"${sku.hourly_price_usd:.2f}/h" if sku.hourly_price_usd is not None else "price unknown"
            print(f"{sku.name:28} {sku.gpu_count}x {sku.gpu_model:28} {price}")
        return 0
    if not args.filename:
        print("kaito render: give a manifest with -f FILE", file=sys.stderr)
        return 2
    try:
        return render.render(
            args.filename,
            cloud=args.cloud,
            catalog=catalog,
            output=args.output,
            out=sys.stdout,
            err=sys.stderr,
            image_configs=ImageConfigs(),
            hub_models=hub,
        )
    except (OSError, ValueError) as exc:
        print(f"kaito render: {exc}", file=sys.stderr)
        return 2


def run_crds(args: argparse.Namespace) -> int:
    from kaito.api import crds

    directory = Path(args.output)
    if args.check:
        stale = crds.stale(directory)
        for name in stale:
            print(f"{directory / name} is out of date; run `kaito crds`", file=sys.stderr)
        return 1 if stale else 0
    for path in crds.write(directory):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wanted = next((a for a in argv if not a.startswith("-")), None)
    plugins = {} if wanted in BUILTINS else plugin_commands(wanted)
    parser, run = _parser(wanted, plugins)
    args = parser.parse_args(argv)  # --help, a missing or unknown command: argparse answers and exits here
    if run is None:  # a flag before the command name: the command's own flags were not loaded
        parser.error("put the command first: kaito COMMAND [flags]")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}',
    )
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every HTTP exchange at INFO
    outcome = run(args)
    code: int = asyncio.run(outcome) if inspect.iscoroutine(outcome) else outcome
    return code


if __name__ == "__main__":
    raise SystemExit(main())
