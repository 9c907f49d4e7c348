"""`kaito sim` as users start it: a foreground process that prints where it serves and stops on a signal."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path


async def test_kaito_sim_serves_kubectl_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kaito.cli",
        "sim",
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    assert line.startswith("kaito sim: serving https://127.0.0.1:") and str(kubeconfig) in line
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(tmp_path / "cache")}
    kubectl = await asyncio.create_subprocess_exec(
        "kubectl", "get", "namespaces", "-o", "name", env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(kubectl.communicate(), 30)
    assert "namespace/default" in out.decode().split()
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
