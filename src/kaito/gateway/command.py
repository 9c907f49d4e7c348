"""`kaito gateway`: the flags, and serving one InferenceSet's endpoint until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from kaito.gateway.app import create_app
from kaito.gateway.demand import Demand, api_demand
from kaito.gateway.discovery import ApiDiscovery
from kaito.gateway.gateway import Gateway, Settings
from kaito.runtime.client import Client
from kaito.runtime.clock import REAL_CLOCK

SHUTDOWN_TIMEOUT = 30.0  # seconds for answers in progress after SIGTERM


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    parser.add_argument("--namespace", required=True, help="the InferenceSet's namespace")
    parser.add_argument("--inferenceset", required=True, help="the InferenceSet whose replicas to serve")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    parser.add_argument(
        "--max-queue", type=int, default=defaults.max_queue, help="requests held while no replica is ready"
    )
    parser.add_argument(
        "--hold-timeout",
        type=float,
        default=defaults.hold_timeout,
        help="seconds a held request waits for a replica before a 504",
    )
    parser.add_argument(
        "--affinity-slack",
        type=int,
        default=defaults.affinity_slack,
        help="outstanding requests a prompt prefix's replica may carry beyond the least loaded before others get it",
    )
    parser.add_argument("--discovery-interval", type=float, default=1.0, help="seconds between reads of the replicas")


async def run_gateway(args: argparse.Namespace) -> int:
    if args.max_queue < 0 or args.hold_timeout <= 0 or args.affinity_slack < 0:
        print("kaito gateway: --max-queue and --affinity-slack must be >= 0, --hold-timeout > 0", file=sys.stderr)
        return 2
    settings = Settings(max_queue=args.max_queue, hold_timeout=args.hold_timeout, affinity_slack=args.affinity_slack)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with await Client.from_config(kubeconfig=args.kubeconfig, user_agent="kaito-gateway") as client:
        where = {"namespace": args.namespace, "inferenceset": args.inferenceset}
        discovery = ApiDiscovery(client, **where, clock=REAL_CLOCK, interval=args.discovery_interval)
        demand = Demand(api_demand(client, **where), clock=REAL_CLOCK)
        gateway = Gateway(discovery, demand=demand, settings=settings)
        runner = web.AppRunner(
            create_app(gateway), handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, args.host, args.port).start()
        except OSError as exc:
            await runner.cleanup()
            print(f"kaito gateway: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
        print(f"kaito gateway: {args.namespace}/{args.inferenceset} on http://{args.host}:{args.port}", flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
    return 0
