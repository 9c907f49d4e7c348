"""The kaito operator as its own process beside the simulated cluster, as its pod runs beside a real API server.

`kaito sim --with-manager` uses this so that the operator's work never runs on the API server's event loop
(nor under its interpreter lock): kubectl stays answered however many workspaces reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import yaml

from kaito.api.crds import inferenceset_crd, nodeclaim_crd, workspace_crd
from kaito_sim.aks import SimulatedAks
from kaito_sim.apiserver.errors import ApiError
from kaito_sim.arm import CloudLimits
from kaito_sim.server import SimServer
from kaito_sim.workloads.api import Api

log = logging.getLogger(__name__)

CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
CLUSTER_ROLES = ("rbac.authorization.k8s.io", "clusterroles")
GATEWAY_ROLE = Path(__file__).resolve().parents[3] / "deploy" / "base" / "gateway_role.yaml"  # as deploy/ grants it
NAMESPACES = ("", "namespaces")
STOP_SECONDS = 10.0
PR_SET_PDEATHSIG = 1


async def install_kaito_crds(sim: SimServer, namespace: str) -> None:
    """The CRDs, the gateway's ClusterRole (the manager binds it per namespace) and the operator's namespace,
    written in-process before any client can ask for them."""
    api = Api(sim.cluster, "kaito-sim")
    for crd in (workspace_crd(), inferenceset_crd(), nodeclaim_crd()):
        await api.create(CRDS, "", crd)
    if GATEWAY_ROLE.is_file():
        await api.create(CLUSTER_ROLES, "", yaml.safe_load(GATEWAY_ROLE.read_text()))
    else:
        log.warning("no %s beside this source tree: InferenceSet gateways will be refused by RBAC", GATEWAY_ROLE)
    try:
        await api.create(NAMESPACES, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    except ApiError as exc:
        if exc.code != 409:
            raise


def manager_argv(
    sim: SimServer, aks: SimulatedAks, *, namespace: str, metrics_address: str, health_address: str
) -> list[str]:
    """`kaito manager` against the simulated API server and the simulated ARM endpoint."""
    azure = aks.azure
    return [
        *(sys.executable, "-m", "kaito.cli", "manager", "--kubeconfig", str(sim.kubeconfig_path)),
        *("--cloud", "sim", "--namespace", namespace, "--no-leader-elect"),
        *("--subscription-id", azure.subscription_id, "--resource-group", azure.resource_group),
        *("--cluster-name", azure.cluster, "--arm-url", azure.url, "--arm-ca", azure.ca_path),
        *(f"--arm-token={azure.token}", "--nodeclaim-poll-interval", "1"),  # a token may begin with "-"
        *("--metrics-bind-address", metrics_address, "--health-probe-bind-address", health_address),
        *("--webhook-bind-address", "127.0.0.1:0"),
    ]


def _die_with_parent() -> None:
    """In the child before exec: Linux sends it SIGTERM if the simulator dies without stopping it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_setup() -> Callable[[], None] | None:
    return _die_with_parent if sys.platform.startswith("linux") else None


async def stop_process(proc: asyncio.subprocess.Process, *, grace: float = STOP_SECONDS) -> int:
    """SIGTERM, then SIGKILL after `grace` seconds; the exit status."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            return await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    return await proc.wait()


@contextlib.asynccontextmanager
async def manager_process(
    sim: SimServer,
    *,
    provisioning_delay: float,
    metrics_address: str,
    health_address: str,
    namespace: str = "kaito-system",
    limits: CloudLimits | None = None,
    log_path: Path | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A simulated Azure next to `sim`, the CRDs installed, and `kaito manager` running as a child process.

    The manager logs to this process's stderr, or to `log_path` when given.

    Yields once the child is spawned: a Workspace applied before the manager has synced is reconciled
    when its informers list, as after any operator restart.
    """
    async with SimulatedAks(sim, provisioning_delay=provisioning_delay, limits=limits) as aks:
        await install_kaito_crds(sim, namespace)
        argv = manager_argv(
            sim, aks, namespace=namespace, metrics_address=metrics_address, health_address=health_address
        )
        with contextlib.ExitStack() as files:
            sink = files.enter_context(log_path.open("ab")) if log_path is not None else None
            out = sink.fileno() if sink is not None else sys.stderr.fileno()
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, preexec_fn=_child_setup()
            )
        try:
            yield proc
        finally:
            code = await stop_process(proc)
            if code not in (0, -signal.SIGTERM):
                log.warning("kaito manager exited with %s", code)
