"""`make demo`: the README's inference example on the embedded simulated AKS cluster, from `kubectl apply` to answers.

Everything the user sees comes from the real kubectl and kaito's own CLI: the operator provisions a simulated
GPU node through the simulated Azure API, the simulated kubelet runs the inference pod's `kaito serve` as a
real process, and the questions travel through the API server's Service proxy. A tiny model, taught a few
sentences on the spot, stands in for the preset's weights (no GPU, no download).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from kaito_sim.demo.model import make_demo_model
from kaito_sim.demo.operator import embedded_operator
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "inference" / "kaito_workspace_phi_3.yaml"
NAME = "workspace-phi-3-mini"
NAMESPACE = "default"
PROXY = f"/api/v1/namespaces/{NAMESPACE}/services/{NAME}:80/proxy"
READY_WITHIN_S = 150
QUESTION = "What is Kubernetes?"


class DemoFailed(Exception):
    """A step did not do what the demo needs; the message names it."""


class Demo:
    def __init__(self, sim: SimServer, scratch: Path) -> None:
        self.scratch = scratch
        self.env = {**os.environ, "KUBECONFIG": str(sim.kubeconfig_path), "KUBECACHEDIR": str(scratch / "cache")}

    async def kubectl(self, *args: str, show: bool = True, stdin: str | None = None) -> str:
        if show:
            print(f"\n$ kubectl {' '.join(args)}", flush=True)
        proc = await asyncio.create_subprocess_exec(
            "kubectl",
            *args,
            env=self.env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else None,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if show:
            text = out.decode()
            print(text if text.endswith("\n") or not text else text + "\n", end="", flush=True)
        if proc.returncode != 0:
            raise DemoFailed(f"kubectl {' '.join(args)}: {err.decode().strip()}")
        return out.decode()

    async def kaito(self, *args: str) -> None:
        print(f"\n$ kaito {shlex.join(args)}", flush=True)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kaito.cli", *args, env=self.env)
        if await proc.wait() != 0:
            raise DemoFailed(f"kaito {' '.join(args)} failed")

    async def wait_until_ready(self) -> None:
        """`kubectl get workspace` each time the row changes, until WORKSPACEREADY is True."""
        print(f"\n$ kubectl get workspace {NAME}   (repeated until WORKSPACEREADY is True)", flush=True)
        deadline, last = time.monotonic() + READY_WITHIN_S, ""
        while time.monotonic() < deadline:
            table = await self.kubectl("get", "workspace", NAME, show=False)
            header, row = table.splitlines()[:2]
            if not last:
                print(header, flush=True)
            shown = " ".join(row.split()[:-1])  # the AGE column changes every second
            if shown != last:
                print(row, flush=True)
                last = shown
            if table_cell(header, row, "WORKSPACEREADY") == "True":
                return
            await asyncio.sleep(1.0)
        raise DemoFailed(f"workspace {NAME} was not ready within {READY_WITHIN_S} s; see `kaito status {NAME}`")

    async def ask(self) -> None:
        legacy = json.dumps({"prompt": QUESTION, "generate_kwargs": {"max_length": 64}})
        answer = await self.kubectl("create", "--raw", f"{PROXY}/chat", "-f", "-", stdin=legacy)
        print(f"-> /chat answered: {json.loads(answer)['Result']!r}", flush=True)
        models = json.loads(await self.kubectl("get", "--raw", f"{PROXY}/v1/models"))
        model = models["data"][0]["id"]
        chat = {"model": model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 48}
        reply = json.loads(
            await self.kubectl("create", "--raw", f"{PROXY}/v1/chat/completions", "-f", "-", stdin=json.dumps(chat))
        )
        print(f"-> {model} answered: {reply['choices'][0]['message']['content']!r}", flush=True)


def table_cell(header: str, row: str, column: str) -> str:
    """A cell of a `kubectl get` table, found by its header's offsets: a blank cell is "", not the next cell."""
    start = header.index(column)
    rest = header[start + len(column) :]
    stop = len(header) - len(rest.lstrip(" ")) if rest.strip() else len(row)
    return row[start:stop].strip()


async def run_demo() -> int:
    if shutil.which("kubectl") is None:
        print("kaito demo needs kubectl on PATH")
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kaito-demo-") as tmp:
        scratch = Path(tmp)
        print("teaching the tiny stand-in model a few sentences (it replaces phi-3's weights: no GPU here)", flush=True)
        model = await asyncio.to_thread(make_demo_model, scratch / "model")
        sim = SimServer(kubeconfig=scratch / "kubeconfig", process_pods=ProcessPods(model_dir=model))
        async with sim, embedded_operator(sim, provisioning_delay=2.0):
            print(f"kaito sim: serving {sim.url} with the kaito operator and a simulated Azure", flush=True)
            print(
                "note: the inference pod runs `kaito serve` for real, on that tiny model, so the answers are real "
                "server output from a two-layer toy, not from phi-3",
                flush=True,
            )
            demo = Demo(sim, scratch)
            try:
                await steps(demo)
            except DemoFailed as exc:
                print(f"\nkaito demo: {exc}", file=sys.stderr)
                return 1
    print(f"\nkaito demo: done in {time.monotonic() - started:.0f} s")
    return 0


async def steps(demo: Demo) -> None:
    await demo.kubectl("get", "nodes", "-L", "node.kubernetes.io/instance-type")
    await demo.kubectl("apply", "-f", str(EXAMPLE))
    await demo.wait_until_ready()
    await demo.kaito("status", NAME)
    await demo.kubectl("get", "nodeclaims,nodes", "-L", "nvidia.com/gpu.product")
    await demo.kubectl("get", "deployment,service,pods", "-l", f"kaito.sh/workspace={NAME}")
    await demo.ask()
    await demo.kaito("chat", NAME, "What is kaito?", "--max-tokens", "48")
    await demo.kubectl("delete", "workspace", NAME, "--timeout=120s")
    await demo.kubectl("get", "nodeclaims,nodes")
