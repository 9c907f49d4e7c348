"""`kaito sim --with-manager --process-pods` as a user starts it: its own process, a kubeconfig, kubectl against it."""

from __future__ import annotations

import contextlib
import json
import os
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
            yield Cluster(env)
        finally:
            sim.terminate()
            try:
                sim.wait(timeout=60)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
