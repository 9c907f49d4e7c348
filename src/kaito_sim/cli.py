"""`kaito sim` and the demos (`kaito demo`, `demo-tuning`, `demo-scale`): the local cluster's commands, added to `kaito`
by entry point.

Kept light: the simulator itself is imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from kaito.commands import Command
from kaito_sim.apiserver.store import DEFAULT_HISTORY

if TYPE_CHECKING:
    from kaito_sim.arm.quota import CloudLimits
    from kaito_sim.nodes.processes import ProcessPods

DEFAULT_KUBECONFIG = Path(".kaito/kubeconfig")


def add_sim_arguments(sim: argparse.ArgumentParser) -> None:
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=6443, help="0 picks a free port")
    sim.add_argument("--kubeconfig", default=str(DEFAULT_KUBECONFIG), help="where to write the kubeconfig")
    sim.add_argument(
        "--watch-history",
        type=int,
        default=DEFAULT_HISTORY,
        help="events retained for watches; older resourceVersions get 410 Expired",
    )
    sim.add_argument(
        "--with-manager",
        action="store_true",
        help="also run a simulated Azure and the kaito operator (`kaito manager`, as its own process)",
    )
    sim.add_argument(
        "--process-pods",
        action="store_true",
        help="run kaito-runtime and kaito-manager pods as local processes (kaito serve on a tiny stand-in model), "
        "and curlimages/curl, busybox and python pods with this machine's commands; Services answer at their "
        "ClusterIPs (a kube-proxy) and through the Service proxy",
    )
    sim.add_argument(
        "--service-cidr",
        type=service_cidr,
        metavar="CIDR",
        help="where Service ClusterIPs come from; default 127.96.0.0/16 with --process-pods (Linux routes all of "
        "127.0.0.0/8 to loopback, so this machine reaches them), else 10.96.0.0/12",
    )
    sim.add_argument(
        "--nodes-dir",
        type=Path,
        help="with --process-pods: where each node's hostPath volumes live (<dir>/<node name>), kept after exit; "
        "default: a scratch directory removed on exit",
    )
    sim.add_argument("--provisioning-delay", type=float, default=2.0, help="seconds a simulated agent pool takes")
    sim.add_argument(
        "--azure-quota",
        action="append",
        default=[],
        type=quota_setting,
        metavar="FAMILY=VCPUS",
        help="with --with-manager: the simulated subscription's vCPU quota for a VM family as the usages API names "
        "it (e.g. standardNCADSA100v4Family=0; 'cores' is the regional total); repeatable",
    )
    sim.add_argument(
        "--azure-capacity",
        action="append",
        default=[],
        type=capacity_setting,
        metavar="SKU=COUNT",
        help="with --with-manager: how many VMs of a size the simulated region can allocate (e.g. "
        "Standard_NC24ads_A100_v4=1); beyond it creates fail AllocationFailed; repeatable",
    )
    sim.add_argument("--metrics-bind-address", default=":8080")
    sim.add_argument("--health-probe-bind-address", default=":8081")


def _setting(text: str, what: str, unit: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected {what}={unit} with {unit} a whole number 0 or more, got {text!r}")
    return name.strip(), int(value)


def service_cidr(text: str) -> str:
    """An IPv4 network with room for Services, for --service-cidr."""
    import ipaddress

    try:
        network = ipaddress.IPv4Network(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected an IPv4 network such as 127.96.0.0/16, got {text!r}: {exc}"
        ) from exc
    if network.prefixlen > 29:
        raise argparse.ArgumentTypeError(f"{text!r} is too small for Services: use a /29 or larger")
    return str(network)


def quota_setting(text: str) -> tuple[str, int]:
    """FAMILY=VCPUS, for --azure-quota."""
    return _setting(text, "FAMILY", "VCPUS")


def capacity_setting(text: str) -> tuple[str, int]:
    """SKU=COUNT, for --azure-capacity."""
    return _setting(text, "SKU", "COUNT")


def cloud_limits(args: argparse.Namespace) -> CloudLimits:
    """The simulated Azure's quotas and capacity from the flags (a later setting of one name wins)."""
    from kaito_sim.arm.quota import CloudLimits

    return CloudLimits(quotas=dict(args.azure_quota), capacity=dict(args.azure_capacity))


def process_pods(args: argparse.Namespace) -> ProcessPods | None:
    from kaito_sim.nodes.processes import ProcessPods

    if not args.process_pods:
        return None
    return ProcessPods(images=("kaito-runtime", "kaito-manager"), nodes_dir=args.nodes_dir)


async def serve_sim(args: argparse.Namespace, *, kubeconfig: Path) -> int:
    """The simulated cluster (with the operator and a simulated Azure when asked) until SIGINT/SIGTERM."""
    from kaito_sim.server import SimServer

    if (args.azure_quota or args.azure_capacity) and not args.with_manager:
        raise SystemExit("kaito sim: --azure-quota and --azure-capacity need --with-manager (the simulated Azure)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim = SimServer(
        host=args.host,
        port=args.port,
        kubeconfig=kubeconfig,
        history_size=args.watch_history,
        process_pods=process_pods(args),
        service_cidr=args.service_cidr,
    )
    async with sim:
        if args.with_manager:
            from kaito_sim.demo.manager_process import manager_process  # the CRDs' imports, only when asked

            async with manager_process(
                sim,
                provisioning_delay=args.provisioning_delay,
                limits=cloud_limits(args),
                metrics_address=args.metrics_bind_address,
                health_address=args.health_probe_bind_address,
            ):
                print(
                    f"kaito sim: serving {sim.url} (kubeconfig: {sim.kubeconfig_path}) with the kaito manager",
                    flush=True,
                )
                await stop.wait()
        else:
            print(f"kaito sim: serving {sim.url} (kubeconfig: {sim.kubeconfig_path})", flush=True)
            await stop.wait()
    logging.getLogger("kaito_sim").info("stopped")
    return 0


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def _run_demo(args: argparse.Namespace) -> int:
    from kaito_sim.demo.inference import run_demo

    return asyncio.run(run_demo())


def _run_demo_tuning(args: argparse.Namespace) -> int:
    from kaito_sim.demo.tuning import run_demo_tuning

    return asyncio.run(run_demo_tuning())


def _run_demo_scale(args: argparse.Namespace) -> int:
    from kaito_sim.demo.scale import run_demo_scale

    return asyncio.run(run_demo_scale())


SIM = Command(
    help="run the simulated Kubernetes API server in the foreground",
    add_arguments=add_sim_arguments,
    run=lambda args: asyncio.run(serve_sim(args, kubeconfig=Path(args.kubeconfig).resolve())),
)
DEMO = Command(help="start the simulated cluster and drive it with kubectl", add_arguments=_no_arguments, run=_run_demo)
DEMO_TUNING = Command(
    help="data at a URL -> LoRA adapter -> local registry -> a named model, on CPU",
    add_arguments=_no_arguments,
    run=_run_demo_tuning,
)
DEMO_SCALE = Command(
    help="an autoscaled InferenceSet: out under load, to zero when idle, back from zero for a request",
    add_arguments=_no_arguments,
    run=_run_demo_scale,
)
