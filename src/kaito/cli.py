"""The `kaito` command: one entry point for the simulated cluster, the demo and (later) the operator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from kaito.sim.server import SimServer
from kaito.sim.store import DEFAULT_HISTORY

DEFAULT_KUBECONFIG = Path(".kaito/kubeconfig")


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
    )
    async with server:
        print(f"kaito sim: serving {server.url} (kubeconfig: {server.kubeconfig_path})", flush=True)
        await stop.wait()
    logging.getLogger("kaito.sim").info("stopped")
    return 0


def _parser() -> argparse.ArgumentParser:
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
    sub.add_parser("demo", help="start the simulated cluster and drive it with kubectl")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "sim":
        args.kubeconfig = Path(args.kubeconfig).resolve()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}',
    )
    if args.command == "sim":
        return asyncio.run(run_sim(args))
    if args.command == "demo":
        from kaito.demo import run_demo

        return asyncio.run(run_demo())
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
