"""`make demo`: start the simulated cluster in-process and drive it with the real kubectl, printing each step."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from kaito.sim.server import SimServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sim"


async def _kubectl(env: dict[str, str], *args: str) -> int:
    print(f"\n$ kubectl {' '.join(args)}", flush=True)
    proc = await asyncio.create_subprocess_exec("kubectl", *args, env=env)
    return await proc.wait()


async def run_demo() -> int:
    if shutil.which("kubectl") is None:
        print("kaito demo needs kubectl on PATH")
        return 1
    with tempfile.TemporaryDirectory(prefix="kaito-demo-") as tmp:
        async with SimServer(kubeconfig=Path(tmp) / "kubeconfig") as sim:
            print(f"kaito sim: serving {sim.url} (kubeconfig: {sim.kubeconfig_path})", flush=True)
            env = {**os.environ, "KUBECONFIG": str(sim.kubeconfig_path), "KUBECACHEDIR": f"{tmp}/cache"}
            steps = [
                ("version",),
                ("get", "namespaces"),
                ("apply", "-f", str(EXAMPLES / "modelcard-crd.yaml")),
                ("apply", "-f", str(EXAMPLES / "modelcard.yaml")),
                ("get", "modelcards", "-o", "wide"),
                (
                    "patch",
                    "modelcard",
                    "phi-4-mini",
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Demo","message":"ok",'
                    '"lastTransitionTime":"2026-01-01T00:00:00Z"}]}}',
                ),
                ("wait", "--for=condition=Ready", "modelcard/phi-4-mini", "--timeout=10s"),
                ("get", "all"),
                ("delete", "modelcard", "phi-4-mini"),
            ]
            for step in steps:
                if await _kubectl(env, *step) != 0:
                    print(f"kaito demo: step failed: kubectl {' '.join(step)}")
                    return 1
    print("\nkaito demo: done")
    return 0
