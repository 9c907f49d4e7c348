"""`make demo`: the README's inference example on the embedded simulated AKS cluster, from `kubectl apply` to answers.

Everything the user sees comes from the real kubectl and kaito's own CLI: the operator provisions a simulated
GPU node through the simulated Azure API, the simulated kubelet runs the inference pod's init step and its
`kaito serve` as real processes, and the questions travel as the original README's quick start sends them: a
`curlimages/curl` pod (curl on this machine) at the Service's ClusterIP, which the simulated kube-proxy answers,
then `kubectl port-forward` and the `openai` client. A tiny
model, taught a few sentences on the spot, stands in for the preset's weights (no GPU). It is pushed as a
model image to the Debian `docker-registry` on loopback, under the name the operator's `--model-registry`
gives the preset, and the pod's `model-puller` pulls it into the node's cache: a second pod on the node
starts from the cache. Without a docker-registry the demo says so and the simulated kubelet hands the model
to `kaito serve` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import openai

from kaito.api.modelimage import catalog_image
from kaito.presets.catalog import Catalog
from kaito_sim.demo.model import STEPS, make_demo_model
from kaito_sim.demo.operator import embedded_operator
from kaito_sim.demo.registry import REGISTRY_BINARY, DemoFailed, RegistryUnavailable, registry
from kaito_sim.demo.terminal import run_in_terminal
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "inference" / "kaito_workspace_phi_3.yaml"
NAME = "workspace-phi-3-mini"
PRESET = "phi-3-mini-4k-instruct"
NAMESPACE = "default"
PODS = ("pods", "-l", f"kaito.sh/workspace={NAME}")
# The original README's way to ask the model: a curl pod at the Service's ClusterIP ($CLUSTERIP set before).
CURL_POD = (
    "kubectl run -it --rm --restart=Never curl --image=curlimages/curl -- curl -X POST http://$CLUSTERIP/chat "
    '-H "accept: application/json" -H "Content-Type: application/json" -d "{\\"prompt\\":\\"What is Kubernetes?\\"}"'
)
READY_WITHIN_S = 150
QUESTION = "What is Kubernetes?"


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

    async def watch_pods_until_ready(self, *, replacing: str = "") -> str:
        """`kubectl get pods --watch` until a pod other than `replacing` is Running and ready; its name."""
        args = ["get", *PODS, "--watch"]
        print(f"\n$ kubectl {' '.join(args)}   (until the pod is Running and ready)", flush=True)
        proc = await asyncio.create_subprocess_exec(
            "kubectl", *args, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        assert proc.stdout is not None
        shown: dict[str, list[str]] = {}
        try:
            async with asyncio.timeout(READY_WITHIN_S):
                while line := (await proc.stdout.readline()).decode():
                    cells = line.split()
                    if shown.get(cells[0] if cells else "") != cells[:4]:  # an event the columns do not show: skip
                        print(line, end="", flush=True)
                        shown[cells[0] if cells else ""] = cells[:4]
                    if len(cells) >= 3 and cells[0] != replacing and cells[1:3] == ["1/1", "Running"]:
                        return cells[0]
        except TimeoutError:
            pass
        finally:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()
        raise DemoFailed(f"no pod of {NAME} was ready within {READY_WITHIN_S} s; see `kaito status {NAME}`")

    async def ask(self) -> None:
        """The original README's quick start: a curl pod at the Service's ClusterIP, then port-forward and `openai`."""
        await self.kubectl("get", "svc", NAME)
        ip = await self.kubectl("get", "svc", NAME, "-o", "jsonpath={.spec.clusterIPs[0]}", show=False)
        print(f'\n$ export CLUSTERIP=$(kubectl get svc {NAME} -o jsonpath="{{.spec.clusterIPs[0]}}")', flush=True)
        self.env["CLUSTERIP"] = ip
        if await asyncio.to_thread(_reachable, ip, 80):
            print(f"\n$ {CURL_POD}", flush=True)
            rc, out = await asyncio.to_thread(run_in_terminal, ["bash", "-c", CURL_POD], self.env)
            print(out if out.endswith("\n") else out + "\n", end="", flush=True)
            if rc != 0:
                raise DemoFailed(f"the curl pod failed with exit code {rc}")
        else:
            print(
                f"(skipped: nothing answers at {ip}:80 here; the simulated kube-proxy needs root to listen on ports "
                "below 1024, see the simulator's log; port-forward reaches the Service instead)",
                flush=True,
            )
        await self.ask_through_port_forward()

    async def ask_through_port_forward(self) -> None:
        port = _free_port()
        args = ["port-forward", f"svc/{NAME}", f"{port}:80"]
        print(f"\n$ kubectl {' '.join(args)} &", flush=True)
        proc = await asyncio.create_subprocess_exec(
            "kubectl", *args, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(30):
                print((await proc.stdout.readline()).decode(), end="", flush=True)
            for chatty in ("httpx", "httpx2"):  # the client logs each request at INFO; the demo shows them itself
                logging.getLogger(chatty).setLevel(logging.WARNING)
            client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            model = (await client.models.list()).data[0].id
            print(
                f'\n$ python -c \'import openai; print(openai.OpenAI(base_url="http://127.0.0.1:{port}/v1", '
                f'api_key="unused").chat.completions.create(model="{model}", messages=[{{"role": "user", '
                f'"content": "{QUESTION}"}}], max_tokens=48).choices[0].message.content)\'',
                flush=True,
            )
            reply = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": QUESTION}], max_tokens=48
            )
            print(reply.choices[0].message.content, flush=True)
        except (TimeoutError, openai.OpenAIError) as exc:
            raise DemoFailed(f"kubectl port-forward svc/{NAME}: {exc}") from exc
        finally:
            proc.terminate()
            await proc.wait()


def _reachable(ip: str, port: int) -> bool:
    try:
        socket.create_connection((ip, port), timeout=5).close()
    except OSError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def table_cell(header: str, row: str, column: str) -> str:
    """A cell of a `kubectl get` table, found by its header's offsets: a blank cell is "", not the next cell."""
    start = header.index(column)
    rest = header[start + len(column) :]
    stop = len(header) - len(rest.lstrip(" ")) if rest.strip() else len(row)
    return row[start:stop].strip()


async def run_demo(*, registry_binary: str | None = REGISTRY_BINARY, teach_steps: int = STEPS) -> int:
    """The demo; `registry_binary` is the docker-registry to run (None or missing: the model is served directly)."""
    if shutil.which("kubectl") is None:
        print("kaito demo needs kubectl on PATH")
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kaito-demo-") as tmp:
        scratch = Path(tmp)
        print("teaching the tiny stand-in model a few sentences (it replaces phi-3's weights: no GPU here)", flush=True)
        model = await asyncio.to_thread(make_demo_model, scratch / "model", steps=teach_steps)
        try:
            async with contextlib.AsyncExitStack() as stack:
                address = await _local_registry(stack, scratch / "registry", registry_binary)
                # With a registry the pod gets its model only by pulling it: the kubelet has none to hand it.
                pods = ProcessPods(model_dir=None if address else model)
                sim = await stack.enter_async_context(SimServer(kubeconfig=scratch / "kubeconfig", process_pods=pods))
                await stack.enter_async_context(embedded_operator(sim, provisioning_delay=2.0, model_registry=address))
                print(f"kaito sim: serving {sim.url} with the kaito operator and a simulated Azure", flush=True)
                if address:
                    print(
                        f"the operator runs as `kaito manager --model-registry {address} --insecure-model-registry "
                        f"{address}` would: each preset's weights are the image {address}/kaito-models/<preset>:"
                        "<revision>, pulled by the inference pod's model-puller init container",
                        flush=True,
                    )
                print(
                    "note: the inference pod runs `kaito serve` for real, on that tiny model, so the answers are real "
                    "server output from a two-layer toy, not from phi-3",
                    flush=True,
                )
                await steps(Demo(sim, scratch), model=model, registry=address)
        except DemoFailed as exc:
            print(f"\nkaito demo: {exc}", file=sys.stderr)
            return 1
    print(f"\nkaito demo: done in {time.monotonic() - started:.0f} s")
    return 0


async def _local_registry(stack: contextlib.AsyncExitStack, workdir: Path, binary: str | None) -> str | None:
    """The docker-registry's address, or None (said plainly) when it cannot run here."""
    try:
        return await stack.enter_async_context(registry(workdir, binary=binary))
    except RegistryUnavailable as exc:
        print(
            f"kaito demo: no model registry: {exc}\n"
            "kaito demo: so no model image either: the simulated kubelet hands the stand-in model to `kaito serve` "
            "directly, as if its weights had been downloaded",
            flush=True,
        )
        return None


def demo_image(registry: str) -> str:
    """The stand-in's image: where the operator looks for the preset's weights under `--model-registry registry`."""
    return catalog_image(registry, PRESET, Catalog.builtin().model(PRESET).revision)


async def steps(demo: Demo, *, model: Path, registry: str | None) -> None:
    await demo.kubectl("get", "nodes", "-L", "node.kubernetes.io/instance-type")
    if registry:
        await demo.kaito("push-model", "--model", str(model), "--image", demo_image(registry), "--plain-http")
    await demo.kubectl("apply", "-f", str(EXAMPLE))
    pod = await demo.watch_pods_until_ready()
    await demo.wait_until_ready()
    await demo.kaito("status", NAME)
    if registry:
        await demo.kubectl("logs", pod, "-c", "model-puller")
    await demo.kubectl("get", "nodeclaims,nodes", "-L", "nvidia.com/gpu.product")
    await demo.kubectl("get", "deployment,service,pods", "-l", f"kaito.sh/workspace={NAME}")
    await demo.ask()
    await demo.kaito("chat", NAME, "What is kaito?", "--max-tokens", "48")
    if registry:
        print("\na new pod on the same node finds the model in the node's cache and downloads nothing:", flush=True)
        await demo.kubectl("delete", "pod", pod, "--wait=false")
        pod = await demo.watch_pods_until_ready(replacing=pod)
        await demo.kubectl("logs", pod, "-c", "model-puller")
        await demo.kaito("chat", NAME, "Who are you?", "--max-tokens", "48")
    await demo.kubectl("delete", "workspace", NAME, "--timeout=120s")
    await demo.kubectl("get", "nodeclaims,nodes")
