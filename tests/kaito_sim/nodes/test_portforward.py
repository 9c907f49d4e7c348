"""`kubectl port-forward` and kubernetes-asyncio's portforward reach process pods through `pods/portforward`."""

from __future__ import annotations

import asyncio
import struct
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.stream import WsApiClient

from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.kaito_sim.nodes.test_service_proxy import sim as sim  # process pods: kaito-runtime and local-python
from tests.kaito_sim.nodes.test_service_proxy import tiny_model as tiny_model
from tests.kaito_sim.processpods import SERVED, free_port, is_ready, manifest, pods, python_pod, serve_objects, until

# Echoes each connection until the peer half-closes or sends `quit`, then prints `closed FIRST` (FIRST: what the
# connection first sent; readiness probes send nothing), so the pod's log shows which connections ended.
ECHO = textwrap.dedent(
    """
    import os, socket, sys, threading

    def serve(conn):
        first = b""
        with conn:
            while (data := conn.recv(65536)) and data != b"quit":
                first = first or data
                conn.sendall(data)
        os.write(1, b"closed " + first + b"\\n")  # one write: two threads' prints may interleave

    server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    while True:
        threading.Thread(target=serve, args=(server.accept()[0],), daemon=True).start()
    """
)


@pytest.fixture
async def forwards() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """The `kubectl port-forward` processes a test starts; killed after it."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def port_forward(
    kubectl: Kubectl, started: list[asyncio.subprocess.Process], target: str, remote: int
) -> tuple[int, asyncio.subprocess.Process]:
    """Start `kubectl port-forward TARGET LOCAL:REMOTE` and wait for it to listen; (LOCAL, the process)."""
    local = free_port()
    proc = await kubectl.start("port-forward", target, f"{local}:{remote}")
    started.append(proc)
    assert proc.stdout is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if not line.startswith(b"Forwarding from 127.0.0.1:"):
        raise AssertionError(f"kubectl port-forward: {line!r} {(await proc.stderr.read()).decode()}")
    return local, proc


def echo_pod(port: int) -> dict[str, object]:
    return python_pod(
        "echo",
        ECHO,
        str(port),
        restart="Always",
        container={
            "ports": [{"name": "echo", "containerPort": port}],
            "readinessProbe": {"tcpSocket": {"port": "echo"}, "periodSeconds": 1},
        },
    )


async def start_echo(kubectl: Kubectl) -> int:
    port = free_port()
    await kubectl("apply", "-f", "-", stdin=manifest(echo_pod(port)))
    await kubectl("wait", "--for=condition=Ready", "pod/echo", wait_s=60)
    return port


async def echo_once(local: int, message: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", local)
    writer.write(message)
    answer = await reader.readexactly(len(message))
    writer.close()
    return answer


def portforward_requests(sim: SimServer) -> list[str]:
    return [r.method for r in sim.requests if r.path.endswith("/portforward")]


async def test_port_forward_to_a_service_reaches_kaito_serve(
    kubectl: Kubectl, sim: SimServer, forwards: list[asyncio.subprocess.Process]
) -> None:
    ns = kubectl.namespace
    await kubectl("apply", "-f", "-", stdin=manifest(*serve_objects("ws")))
    await until(lambda: [p for p in pods(sim, ns, "ws") if is_ready(p)], "a ready kaito serve pod", within=120)
    local, _ = await port_forward(kubectl, forwards, "svc/ws", 80)  # kubectl turns port 80 into the pod's 5000

    base = f"http://127.0.0.1:{local}"
    async with aiohttp.ClientSession() as session:

        async def get(path: str) -> Any:
            async with session.get(base + path) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

        assert await get("/health") == {"status": "Healthy"}
        first, second = await asyncio.gather(get("/v1/models"), get("/v1/models"))  # two connections at once
        assert first == second and [m["id"] for m in first["data"]] == [SERVED]

    chat = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused")
    answer = await chat.chat.completions.create(
        model=SERVED, messages=[{"role": "user", "content": "Say hello"}], max_tokens=8
    )
    await chat.close()
    assert answer.choices[0].message.content
    assert portforward_requests(sim) == ["GET"], "kubectl 1.32 tunnels SPDY through a WebSocket first"


async def test_connections_close_both_ways_and_the_spdy_upgrade_works_too(
    kubectl: Kubectl, sim: SimServer, forwards: list[asyncio.subprocess.Process]
) -> None:
    port = await start_echo(kubectl)
    kubectl.env["KUBECTL_PORT_FORWARD_WEBSOCKETS"] = "false"  # kubectl's fallback: a plain SPDY/3.1 upgrade
    local, _ = await port_forward(kubectl, forwards, "pod/echo", port)
    assert list(await asyncio.gather(echo_once(local, b"one"), echo_once(local, b"two"))) == [b"one", b"two"]
    log = (kubectl.namespace, "echo", "main")
    closed = {"closed one\n", "closed two\n"}
    await until(lambda: closed <= set(sim.cluster.pod_logs.get(log, [])), "the pod seeing both connections close")

    reader, writer = await asyncio.open_connection("127.0.0.1", local)
    writer.write(b"quit")  # the pod ends this connection: kubectl's local connection ends with it
    assert await asyncio.wait_for(reader.read(), 30) == b""
    writer.close()
    assert portforward_requests(sim) == ["POST"]


async def test_a_port_nothing_listens_on_is_reported_by_kubectl(
    kubectl: Kubectl, sim: SimServer, forwards: list[asyncio.subprocess.Process]
) -> None:
    await start_echo(kubectl)
    idle = free_port()
    local, proc = await port_forward(kubectl, forwards, "pod/echo", idle)
    reader, writer = await asyncio.open_connection("127.0.0.1", local)
    assert await asyncio.wait_for(reader.read(), 30) == b""
    writer.close()
    assert proc.stderr is not None
    # kubectl 1.32 prints the kubelet's error, then gives up the whole forward ("lost connection to pod").
    stderr = (await asyncio.wait_for(proc.stderr.read(), 30)).decode()
    uid = pods(sim, kubectl.namespace, "echo")[0]["metadata"]["uid"]
    assert (
        f"an error occurred forwarding {local} -> {idle}: error forwarding port {idle} to pod echo, uid {uid}: "
        f"failed to connect to localhost:{idle} inside the pod: dial tcp4 127.0.0.1:{idle}: connect: connection refused"
    ) in stderr


async def test_a_simulated_pod_is_refused_with_a_clear_error(kubectl: Kubectl) -> None:
    web = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}}
    web["spec"] = {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
    await kubectl("apply", "-f", "-", stdin=manifest(web))
    await kubectl("wait", "--for=condition=Ready", "pod/web")
    result = await kubectl("port-forward", "pod/web", f"{free_port()}:80", check=False, wait_s=30)
    assert result.rc == 1
    assert 'error upgrading connection: pod "web" is simulated, with no process behind its ports' in result.stderr


async def test_kubernetes_asyncio_port_forward_reads_an_http_answer(kubectl: Kubectl, sim: SimServer) -> None:
    ns, port, idle = kubectl.namespace, free_port(), free_port()
    server = python_pod(
        "web",
        "",
        restart="Always",
        container={
            "command": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            "ports": [{"name": "http", "containerPort": port}],
            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
        },
    )
    await kubectl("apply", "-f", "-", stdin=manifest(server))
    await kubectl("wait", "--for=condition=Ready", "pod/web")
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(sim.kubeconfig_path), client_configuration=cfg)
    async with WsApiClient(cfg) as ws_api:
        api = client.CoreV1Api(ws_api)
        # The kubelet takes a comma-separated list of ports, which the generated signature types as one int.
        ports: Any = f"{port},{idle}"
        connect: Any = await api.connect_get_namespaced_pod_portforward("web", ns, ports=ports, _preload_content=False)
        received: dict[int, bytes] = {}
        async with connect as ws:
            for _ in range(4):  # each port's data and error channel first says which port it is
                message = await ws.receive_bytes(timeout=30)
                received[message[0]] = message[1:]
            assert received == {c: struct.pack("<H", p) for c, p in ((0, port), (1, port), (2, idle), (3, idle))}
            await ws.send_bytes(b"\x00GET / HTTP/1.0\r\n\r\n")
            answer, errors = b"", b""
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY:
                    break
                if message.data[0] == 0:
                    answer += message.data[1:]
                elif message.data[0] == 3:
                    errors += message.data[1:]
    assert answer.startswith(b"HTTP/1.0 200 OK") and b"Directory listing" in answer
    assert f"error forwarding port {idle} to pod web".encode() in errors and b"connection refused" in errors
