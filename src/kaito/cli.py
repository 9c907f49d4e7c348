"""The `kaito` command: one entry point for the simulated cluster, the demo and (later) the operator."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from pathlib import Path

from kaito.sim.processes import ProcessPods
from kaito.sim.server import SimServer
from kaito.sim.store import DEFAULT_HISTORY

DEFAULT_KUBECONFIG = Path(".kaito/kubeconfig")


def process_pods(args: argparse.Namespace) -> ProcessPods | None:
    return ProcessPods(images=("kaito-runtime", "kaito-manager")) if args.process_pods else None


async def run_sim(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = SimServer(
        host=args.host,
        port=args.port,
        kubeconfig=args.kubeconfig,
        history_size=args.watch_history,
        process_pods=process_pods(args),
    )
    async with server:
        print(f"kaito sim: serving {server.url} (kubeconfig: {server.kubeconfig_path})", flush=True)
        await stop.wait()
    logging.getLogger("kaito.sim").info("stopped")
    return 0


def _parser(wanted: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kaito", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("sim", help="run the simulated Kubernetes API server in the foreground")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=6443, help="0 picks a free port")
    sim.add_argument("--kubeconfig", default=str(DEFAULT_KUBECONFIG), help="where to write the kubeconfig")
    sim.add_argument(
        "--watch-history",
        type=int,
        default=DEFAULT_HISTORY,
        help="events retained for watches; older resourceVersions get 410 Expired",
    )
    sim.add_argument("--with-manager", action="store_true", help="also run the kaito operator and a simulated Azure")
    sim.add_argument(
        "--process-pods",
        action="store_true",
        help="run kaito-runtime and kaito-manager pods as local processes (kaito serve on a tiny stand-in model), "
        "reachable through the Service proxy",
    )
    sim.add_argument("--provisioning-delay", type=float, default=2.0, help="seconds a simulated agent pool takes")
    sim.add_argument("--metrics-bind-address", default=":8080")
    sim.add_argument("--health-probe-bind-address", default=":8081")
    manager = sub.add_parser("manager", help="run the kaito operator (workspace controller, node provisioner, webhook)")
    from kaito.cli_manager import add_manager_arguments

    add_manager_arguments(manager)
    serve = sub.add_parser("serve", help="run the OpenAI-compatible inference server (the inference pod's command)")
    from kaito.inference.serve import add_serve_arguments

    add_serve_arguments(serve)
    sub.add_parser("demo", help="start the simulated cluster and drive it with kubectl")
    sub.add_parser("demo-tuning", help="data at a URL -> LoRA adapter -> local registry -> a named model, on CPU")
    from kaito.cli_humans import add_chat_arguments, add_cluster_arguments

    add_cluster_arguments(sub.add_parser("status", help="a workspace explained: plan, conditions, nodes, endpoint"))
    add_chat_arguments(sub.add_parser("chat", help="ask a workspace's model a question through the API server"))
    crds = sub.add_parser("crds", help="write the CRDs generated from the API models")
    crds.add_argument("--output", "-o", default="crds", help="directory to write into")
    crds.add_argument("--check", action="store_true", help="only report files that differ (exit 1 if any)")
    render = sub.add_parser("render", help="show the plan kaito would choose for a Workspace, without a cluster")
    render.add_argument("-f", "--filename", action="append", default=[], help="manifest file(s); - for stdin")
    render.add_argument("--cloud", choices=["azure", "aws", "arc"], default="azure")
    render.add_argument("--catalog", help="catalog overrides: a ConfigMap manifest or a directory of YAML files")
    render.add_argument("-o", "--output", choices=["text", "yaml", "json"], default="text")
    render.add_argument("--list-models", action="store_true", help="list the catalog's models and exit")
    render.add_argument("--list-skus", action="store_true", help="list the cloud's instance types and exit")
    for name, (module, help_text) in TUNING_COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if name == wanted:  # only the chosen step's module is imported
            getattr(importlib.import_module(module), f"add_{name.replace('-', '_')}_arguments")(command)
    return parser


# The steps of tuning and adapter pods: `kaito <name>` runs `<module>.run_<name>(args)`.
TUNING_COMMANDS = {
    "tune": ("kaito.tuning.tune", "train a LoRA/QLoRA adapter (the tuning pod's main step)"),
    "fetch-data": ("kaito.tuning.fetch", "download training data from URLs into the data directory"),
    "pull-data": ("kaito.tuning.artifacts", "pull a training data artifact from an OCI registry"),
    "push-adapter": ("kaito.tuning.artifacts", "push a trained adapter to an OCI registry"),
    "pull-adapter": ("kaito.tuning.artifacts", "pull an adapter from an OCI registry for serving"),
}


def run_render(args: argparse.Namespace) -> int:
    from kaito import render
    from kaito.presets.catalog import CatalogError

    try:
        catalog = render.load_catalog(args.catalog)
    except (CatalogError, OSError) as exc:
        print(f"kaito render: {exc}", file=sys.stderr)
        return 2
    if args.list_models:
        for model in sorted(catalog.models.values(), key=lambda m: m.name):
            note = f"  (deprecated: {model.deprecated})" if model.deprecated else ""
            print(f"{model.name:36} {model.hf_repo}{note}")
        return 0
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
            args.filename, cloud=args.cloud, catalog=catalog, output=args.output, out=sys.stdout, err=sys.stderr
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
    args = _parser(next((a for a in argv if not a.startswith("-")), None)).parse_args(argv)
    if args.command == "sim":
        args.kubeconfig = Path(args.kubeconfig).resolve()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}',
    )
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every HTTP exchange at INFO
    if args.command == "sim":
        if args.with_manager:
            from kaito.cli_manager import run_sim_with_manager

            return asyncio.run(run_sim_with_manager(args))
        return asyncio.run(run_sim(args))
    if args.command == "manager":
        from kaito.cli_manager import run_manager

        return asyncio.run(run_manager(args))
    if args.command == "serve":
        from kaito.inference.serve import run_serve

        return asyncio.run(run_serve(args))
    if args.command == "crds":
        return run_crds(args)
    if args.command == "render":
        return run_render(args)
    if args.command == "demo":
        from kaito.demo import run_demo

        return asyncio.run(run_demo())
    if args.command == "demo-tuning":
        from kaito.demo_tuning import run_demo_tuning

        return asyncio.run(run_demo_tuning())
    if args.command in ("status", "chat"):
        from kaito import cli_humans

        return asyncio.run(cli_humans.run_status(args) if args.command == "status" else cli_humans.run_chat(args))
    if args.command in TUNING_COMMANDS:
        module = importlib.import_module(TUNING_COMMANDS[args.command][0])
        code: int = getattr(module, f"run_{args.command.replace('-', '_')}")(args)
        return code
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
