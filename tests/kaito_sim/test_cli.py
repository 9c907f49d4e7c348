"""`kaito sim` as users start it: a foreground process that prints where it serves and stops on a signal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
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


SERVE_THEN_LIST_MODULES = """
import argparse, asyncio, json, os, signal, sys
from pathlib import Path
from kaito_sim.cli import add_sim_arguments, serve_sim

async def main() -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    kubeconfig = Path(sys.argv[1])
    served = asyncio.create_task(serve_sim(parser.parse_args(["--port", "0"]), kubeconfig=kubeconfig))
    while not kubeconfig.exists():
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await served == 0

asyncio.run(main())
print(json.dumps(sorted(m for m in sys.modules if m.startswith("kaito."))))
"""


def test_kaito_sim_without_the_manager_loads_no_operator_module(tmp_path: Path) -> None:
    args = [sys.executable, "-c", SERVE_THEN_LIST_MODULES, str(tmp_path / "kubeconfig")]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    assert "kaito sim: serving" in out
    loaded: list[str] = json.loads(out.splitlines()[-1])
    assert loaded == ["kaito.commands"]
