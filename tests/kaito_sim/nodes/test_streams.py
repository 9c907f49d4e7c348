"""pods/exec, pods/attach and `logs -f` on process pods: kubectl 1.32 (WebSocket v5) and kubernetes-asyncio (v4)."""

from __future__ import annotations

import asyncio
import os
import pty
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.stream import WsApiClient

from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer
from tests.conftest import Kubectl, Result
from tests.kaito_sim.processpods import PODS, PYTHON_IMAGE, is_ready, manifest, python_pod, until

SLEEP = "import time; print('started', flush=True); time.sleep(600)"
PY = sys.executable


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(bookmark_interval=0.5, process_pods=ProcessPods(images=("local-python",))) as server:
        yield server


async def ready(sim: SimServer, namespace: str, name: str) -> None:
    await until(lambda: (pod := sim.cluster.store.get(PODS, namespace, name)) and is_ready(pod), f"{name} ready")


async def sleeping_pod(sim: SimServer, kubectl: Kubectl, name: str, **spec: object) -> None:
    await kubectl("apply", "-f", "-", stdin=manifest(python_pod(name, SLEEP, restart="Always", **spec)))
    await ready(sim, kubectl.namespace, name)


async def in_namespace(kubectl: Kubectl, *args: str, stdin: str | None = None, check: bool = True) -> Result:
    """kubectl with `-n` before the command's `--` (the fixture appends it last, into the command)."""
    return await kubectl("-n", kubectl.namespace, *args, stdin=stdin, check=check, namespaced=False)


async def test_exec_runs_beside_the_process_in_its_directory_and_environment(sim: SimServer, kubectl: Kubectl) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"key": "from-cm"}}
    await kubectl("apply", "-f", "-", stdin=manifest(config_map))
    container = {
        "env": [{"name": "FOO", "value": "bar"}],
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
    }
    volumes = [{"name": "cfg", "configMap": {"name": "cfg"}}]
    await sleeping_pod(sim, kubectl, "p", container=container, volumes=volumes)
    code = "import os, sys; print(os.getcwd()); print(os.environ['FOO']); print(os.environ['KUBECONFIG']); "
    code += "print(open(sys.argv[1]).read())"
    result = await in_namespace(kubectl, "exec", "p", "--", PY, "-c", code, "/etc/cfg/key")
    assert sim.processes is not None
    pid = sim.processes.pid(kubectl.namespace, "p", "main")
    environ = _environ(pid)
    assert result.stdout.splitlines() == [os.readlink(f"/proc/{pid}/cwd"), "bar", environ["KUBECONFIG"], "from-cm"]


def _environ(pid: int | None) -> dict[str, str]:
    text = Path(f"/proc/{pid}/environ").read_text()
    return dict(entry.split("=", 1) for entry in text.split("\0") if "=" in entry)


async def test_exec_reports_the_exit_code_and_streams_stderr_apart(sim: SimServer, kubectl: Kubectl) -> None:
    await sleeping_pod(sim, kubectl, "p")
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    result = await in_namespace(kubectl, "exec", "p", "--", PY, "-c", code, check=False)
    assert (result.rc, result.stdout) == (3, "out\n")
    assert result.stderr == "err\ncommand terminated with exit code 3\n"
    requests = [r for r in sim.requests if r.path.endswith("/pods/p/exec")]
    assert [r.method for r in requests] == ["GET"]  # the WebSocket upgrade took: no SPDY fallback


async def test_exec_with_stdin(sim: SimServer, kubectl: Kubectl) -> None:
    await sleeping_pod(sim, kubectl, "p")
    code = "import sys; print(sys.stdin.read().upper(), end='')"
    result = await in_namespace(kubectl, "exec", "-i", "p", "--", PY, "-c", code, stdin="hello\nworld\n")
    assert result.stdout == "HELLO\nWORLD\n"


async def test_exec_into_a_deployment(sim: SimServer, kubectl: Kubectl) -> None:
    template = python_pod("web", SLEEP)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": template["metadata"], "spec": {**template["spec"], "restartPolicy": "Always"}},
        },
    }
    await kubectl("apply", "-f", "-", stdin=manifest(deployment))
    await until(
        lambda: any(is_ready(p) for p in sim.cluster.store.items(PODS, kubectl.namespace)), "the deployment's pod"
    )
    result = await in_namespace(kubectl, "exec", "deploy/web", "--", PY, "-c", "print('hi from the deployment')")
    assert result.stdout == "hi from the deployment\n"


async def test_exec_into_a_simulated_pod_is_refused_clearly(sim: SimServer, kubectl: Kubectl) -> None:
    pod = python_pod("sim", SLEEP, restart="Always")
    pod["spec"]["containers"][0]["image"] = "nginx:1.27"
    await kubectl("apply", "-f", "-", stdin=manifest(pod))
    await ready(sim, kubectl.namespace, "sim")
    result = await in_namespace(kubectl, "exec", "sim", "--", "echo", "hi", check=False)
    assert result.rc == 1
    assert 'container "main" of pod "sim" is not running as a local process in the simulated cluster' in result.stderr


async def test_kubernetes_asyncio_exec_over_v4(sim: SimServer, kubectl: Kubectl) -> None:
    await sleeping_pod(sim, kubectl, "p")
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(sim.kubeconfig_path), client_configuration=cfg)
    async with WsApiClient(configuration=cfg) as ws_api:
        connect: Any = client.CoreV1Api(ws_api).connect_get_namespaced_pod_exec  # takes a list as `command`
        said = await connect("p", kubectl.namespace, command=[PY, "-c", "print('over v4')"], stdout=True, stderr=True)
        assert said == "over v4\n"
        failing = [PY, "-c", "import sys; sys.exit(5)"]
        connecting = await connect(
            "p", kubectl.namespace, command=failing, stdout=True, stderr=True, _preload_content=False
        )
        async with connecting as ws:
            statuses = [m.data[1:] for m in [message async for message in ws] if m.data[:1] == b"\x03"]
        assert [WsApiClient.parse_error_data(s) for s in statuses] == [5]
    requests = [r for r in sim.requests if r.path.endswith("/pods/p/exec")]
    assert all(r.method == "GET" for r in requests) and len(requests) == 2


async def test_kubectl_attach_replays_then_follows_and_writes_stdin(sim: SimServer, kubectl: Kubectl) -> None:
    code = "import sys; print('waiting', flush=True); print('got', sys.stdin.readline().strip(), flush=True)"
    pod = python_pod("p", code, container={"stdin": True, "stdinOnce": True})
    await kubectl("apply", "-f", "-", stdin=manifest(pod))
    await ready(sim, kubectl.namespace, "p")
    result = await kubectl("attach", "-i", "p", stdin="hello\n")
    assert result.stdout == "waiting\ngot hello\n"


async def test_kubectl_run_interactive_prints_exit_code_and_removes_the_pod(sim: SimServer, kubectl: Kubectl) -> None:
    code = "import sys; print(sys.stdin.read().upper(), end=''); sys.exit(4)"
    run = ("run", "-i", "--rm", "--restart=Never", "upper", f"--image={PYTHON_IMAGE}", "--command", "--")
    result = await in_namespace(kubectl, *run, PY, "-c", code, stdin="quiet\n", check=False)
    assert result.rc == 4
    assert result.stdout.startswith("QUIET\n")
    assert sim.cluster.store.get(PODS, kubectl.namespace, "upper") is None


async def test_kubectl_run_it_under_a_terminal(sim: SimServer, kubectl: Kubectl, tmp_path: Path) -> None:
    """What a user types: `kubectl run -it --rm --restart=Never` (kubectl wants a terminal for -t). The first line
    is printed before kubectl attaches (replayed), the second only once it has."""
    trigger = tmp_path / "attached"
    code = (
        "import os, sys, time\nprint('line one', flush=True)\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.05)\nprint('line two')"
    )
    main, terminal = pty.openpty()
    argv = ["kubectl", "-n", kubectl.namespace, "run", "-it", "--rm", "--restart=Never", "hello"]
    argv += [f"--image={PYTHON_IMAGE}", "--command", "--", PY, "-c", code, str(trigger)]
    proc = await asyncio.create_subprocess_exec(
        *argv, env=kubectl.env, stdin=terminal, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    reading = asyncio.create_task(asyncio.to_thread(_read_until_closed, main))

    def attaches() -> list[tuple[str, str | None]]:
        found = [r for r in sim.requests if r.path.endswith("/pods/hello/attach")]
        return [(r.method, r.query.get("tty")) for r in found]

    await until(attaches, "kubectl to attach")
    trigger.touch()
    text = (await reading).decode()
    assert await proc.wait() == 0
    assert "line one\r\nline two\r\n" in text  # a terminal's newlines
    assert "Error" not in text
    assert 'pod "hello" deleted' in text
    assert attaches() == [("GET", "true")]
    assert sim.cluster.store.get(PODS, kubectl.namespace, "hello") is None


def _read_until_closed(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:  # EIO: every process holding the terminal has exited
        pass
    finally:
        os.close(fd)
    return b"".join(chunks)


async def test_kubectl_logs_follow_streams_until_the_container_ends(
    sim: SimServer, kubectl: Kubectl, tmp_path: Path
) -> None:
    trigger = tmp_path / "go"
    code = (
        "import os, sys, time\nprint('first', flush=True)\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.05)\nprint('second', flush=True)"
    )
    await kubectl("apply", "-f", "-", stdin=manifest(python_pod("p", code, str(trigger))))
    await ready(sim, kubectl.namespace, "p")
    follower = await kubectl.start("logs", "-f", "p")
    assert follower.stdout is not None
    assert await asyncio.wait_for(follower.stdout.readline(), 30) == b"first\n"
    trigger.touch()  # only now does the container print its second line
    rest = await asyncio.wait_for(follower.stdout.read(), 30)
    assert rest == b"second\n"
    assert await follower.wait() == 0


async def test_attach_after_the_process_ended_replays_its_output(sim: SimServer, kubectl: Kubectl) -> None:
    """The frames of v5.channel.k8s.io, and the simulator's replay of a run that ended before the attach."""
    code = "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"
    await kubectl("apply", "-f", "-", stdin=manifest(python_pod("done", code)))
    await until(
        lambda: (
            ((sim.cluster.store.get(PODS, kubectl.namespace, "done") or {}).get("status") or {}).get("phase")
            == "Succeeded"
        ),
        "the pod to complete",
    )
    url = f"{sim.url}/api/v1/namespaces/{kubectl.namespace}/pods/done/attach?stdout=true&stderr=true"
    headers = {"Authorization": f"Bearer {sim.token}"}
    tls = ssl.create_default_context(cadata=sim.ca_pem.decode())
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers=headers, protocols=("v5.channel.k8s.io",), ssl=tls) as ws,
    ):
        assert ws.protocol == "v5.channel.k8s.io"
        frames = [message.data async for message in ws]
    assert frames == [
        b"\x01",  # the empty message on the lowest channel written to: the streams are ready
        b"\x01to stdout\n",
        b"\x02to stderr\n",
        b'\x03{"metadata":{},"status":"Success"}',
    ]
