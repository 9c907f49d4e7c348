"""`kaito sim --with-manager --process-pods` as a user starts it: its own process, a kubeconfig, kubectl against it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Cluster:
    env: dict[str, str]
    pid: int = 0  # the `kaito sim` process; its child runs `kaito manager`

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = ["kubectl", *args]
        return subprocess.run(argv, input=stdin, env=self.env, capture_output=True, text=True, timeout=timeout)

    def json(self, *args: str) -> dict[str, Any]:
        """`kubectl get ARGS -o json`, decoded."""
        got = self.kubectl("get", *args, "-o", "json")
        assert got.returncode == 0, got.stderr
        loaded: dict[str, Any] = json.loads(got.stdout)
        return loaded

    def names(self, *args: str) -> list[str]:
        """`kubectl get ARGS -o name`."""
        got = self.kubectl("get", *args, "-o", "name")
        assert got.returncode == 0, got.stderr
        return got.stdout.split()

    def gpu_nodes(self) -> list[str]:
        """The nodes other than the simulated cluster's CPU system node."""
        return [n for n in self.names("nodes") if "aks-system" not in n]


def until(check: Callable[[], bool], what: str, *, within: float = 120) -> None:
    """Poll `check` every half second until it holds; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {within:.0f}s")


@contextlib.contextmanager
def sim_process(scratch: Path) -> Iterator[Cluster]:
    """The simulated cluster with the operator and process pods, served until the block ends."""
    kubeconfig = scratch / "kubeconfig"
    argv = [sys.executable, "-m", "kaito.cli", "sim", "--with-manager", "--process-pods", "--port", "0"]
    argv += ["--kubeconfig", str(kubeconfig), "--nodes-dir", str(scratch / "nodes")]
    argv += ["--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0"]
    with (scratch / "sim.log").open("w") as log:
        sim = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert sim.stdout is not None
            line = sim.stdout.readline()
            assert line.startswith("kaito sim: serving"), (line, (scratch / "sim.log").read_text()[-3000:])
            env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(scratch / "cache")}
            env.pop("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", None)
            env.pop("KUBECTL_PORT_FORWARD_WEBSOCKETS", None)
            yield Cluster(env, sim.pid)
        finally:
            stop(sim)


@contextlib.contextmanager
def restarted_manager(cluster: Cluster, log: Path) -> Iterator[None]:
    """`kaito manager` stopped with SIGTERM and started again with the same command line and environment, as a
    Deployment restarts its pod; the new one runs until the block ends."""
    pid = _manager_pid(cluster.pid)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    environ = Path(f"/proc/{pid}/environ").read_bytes().rstrip(b"\0").decode().split("\0")
    env = dict(entry.split("=", 1) for entry in environ if "=" in entry)
    os.kill(pid, signal.SIGTERM)
    until(lambda: not Path(f"/proc/{pid}/cmdline").exists() or _zombie(pid), "the manager to stop", within=60)
    with log.open("w") as out:
        manager = subprocess.Popen(argv, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        yield
    finally:
        stop(manager)


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, a minute to finish, then SIGKILL."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _manager_pid(parent: int) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
            if int(fields[1]) == parent and b"manager" in cmdline.split(b"\0")[3:4]:
                return int(stat.parent.name)
    raise AssertionError(f"no `kaito manager` process under kaito sim (pid {parent})")


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True
