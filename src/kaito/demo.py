"""`make demo`: the README's inference example on the embedded simulated AKS cluster, driven with the real kubectl."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from kaito.cli_manager import embedded_operator
from kaito.sim.server import SimServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "inference" / "kaito_workspace_phi_3.yaml"
NAME = "workspace-phi-3-mini"
EXPLAIN = '{range .status.plan.explanation[*]}{@}{"\\n"}{end}'


async def _kubectl(env: dict[str, str], *args: str) -> int:
    print(f"\n$ kubectl {' '.join(args)}", flush=True)
    proc = await asyncio.create_subprocess_exec("kubectl", *args, env=env)
    return await proc.wait()


STEPS: list[tuple[str, ...]] = [
    ("get", "nodes", "-L", "node.kubernetes.io/instance-type"),
    ("apply", "-f", str(EXAMPLE)),
    ("wait", "--for=condition=WorkspaceSucceeded", f"workspace/{NAME}", "--timeout=180s"),
    ("get", "workspace", NAME),
    ("get", "workspace", NAME, "-o", f"jsonpath={EXPLAIN}"),
    ("get", "nodeclaims"),
    ("get", "nodes", "-L", "node.kubernetes.io/instance-type,nvidia.com/gpu.product"),
    ("get", "deployment,service,pods", "-l", f"kaito.sh/workspace={NAME}"),
    ("delete", "workspace", NAME, "--timeout=120s"),
    ("get", "nodeclaims,nodes"),
]


async def run_demo() -> int:
    if shutil.which("kubectl") is None:
        print("kaito demo needs kubectl on PATH")
        return 1
    with tempfile.TemporaryDirectory(prefix="kaito-demo-") as tmp:
        sim = SimServer(kubeconfig=Path(tmp) / "kubeconfig")
        async with sim, embedded_operator(sim, provisioning_delay=2.0):
            print(f"kaito sim: serving {sim.url} with the kaito operator and a simulated Azure", flush=True)
            env = {**os.environ, "KUBECONFIG": str(sim.kubeconfig_path), "KUBECACHEDIR": f"{tmp}/cache"}
            for step in STEPS:
                if await _kubectl(env, *step) != 0:
                    print(f"kaito demo: step failed: kubectl {' '.join(step)}")
                    return 1
    print("\nkaito demo: done")
    return 0
