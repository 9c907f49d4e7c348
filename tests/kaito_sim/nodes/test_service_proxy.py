"""The API server's Service and pod proxy: kubectl, aiohttp and the openai client reach process pods through it."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest

from kaito.inference.tinymodel import make_tiny_model
from kaito.runtime.client import Client
from kaito_sim.aks import SimulatedAks
from kaito_sim.apiserver.errors import ApiError
from kaito_sim.demo.operator import install_crds
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.nodes.proxy import split_scheme_name_port
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, wait_workspace
from tests.kaito_sim.processpods import (
    SERVED,
    free_port,
    is_ready,
    manifest,
    pods,
    python_pod,
    service,
    until,
)

ROOT = Path(__file__).resolve().parents[3]
PHI3 = ROOT / "examples/inference/kaito_workspace_phi_3.yaml"
WORKSPACE = "workspace-phi-3-mini"
# A plain HTTP/1.0 server: /stream sends one line, then holds the answer open; anything else echoes the request.
ECHO_SERVER = textwrap.dedent(
    """
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write(f"data: first {self.path}\\n\\n".encode())
                self.wfile.flush()
                time.sleep(30)
                return
            self.echo()

        def do_POST(self):
            self.echo()

        def echo(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            seen = {"method": self.command, "path": self.path, "body": body, "headers": dict(self.headers)}
            answer = json.dumps(seen)
            self.send_response(201)
            self.send_header("X-Echo", "yes")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
async def sim(tiny_model: Path) -> AsyncIterator[SimServer]:
    options = ProcessPods(images=("kaito-runtime", "local-python"), model_dir=tiny_model)
    async with SimServer(bookmark_interval=0.5, process_pods=options) as server:
        yield server


@pytest.fixture
async def operator(sim: SimServer, kclient: Client) -> AsyncIterator[Operator]:
    async with SimulatedAks(sim, provisioning_delay=0.1) as aks:
        await install_crds(kclient, "kaito-system")
        op = Operator(aks=aks, client=kclient)
        await op.start()
        yield op
        await op.halt()


def tls(sim: SimServer) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=sim.ca_pem.decode())


def ready_addresses(sim: SimServer, namespace: str, name: str) -> list[str]:
    endpoints = sim.cluster.store.get(("", "endpoints"), namespace, name) or {}
    return [a["ip"] for subset in endpoints.get("subsets") or [] for a in subset.get("addresses") or []]


def proxy(namespace: str, service_ref: str, path: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/services/{service_ref}/proxy/{path}"


def test_scheme_name_port_split_as_kube_apiserver_splits_them() -> None:
    assert split_scheme_name_port("ws", "service") == ("http", "ws", "")
    assert split_scheme_name_port("ws:80", "service") == ("http", "ws", "80")
    assert split_scheme_name_port("https:ws:metrics", "service") == ("https", "ws", "metrics")
    for bad in ("ftp:ws:80", ":80", "a:b:c:d"):
        with pytest.raises(ApiError, match="invalid service request"):
            split_scheme_name_port(bad, "service")


async def test_readme_workspace_answers_through_the_service_proxy(
    kubectl: Kubectl, sim: SimServer, operator: Operator, tmp_path: Path
) -> None:
    ns = kubectl.namespace
    await kubectl("apply", "-f", str(PHI3))
    await wait_workspace(kubectl, WORKSPACE, "WorkspaceSucceeded", "True", within=120)
    found = [p for p in sim.cluster.store.items(("", "pods"), ns) if is_ready(p)]
    assert len(found) == 1, "one ready inference pod"

    models = await kubectl("get", "--raw", proxy(ns, f"{WORKSPACE}:80", "v1/models"))
    assert [m["id"] for m in models.json()["data"]] == [SERVED]
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"prompt": "What is KAITO?", "generate_kwargs": {"max_length": 24}}))
    chat = await kubectl("create", "--raw", proxy(ns, f"{WORKSPACE}:80", "chat"), "-f", str(body))
    assert isinstance(chat.json()["Result"], str) and chat.json()["Result"]
    health = await kubectl("get", "--raw", proxy(ns, f"http:{WORKSPACE}:http", "health"))
    assert health.json() == {"status": "Healthy"}
    name = found[0]["metadata"]["name"]
    assert (await kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/{name}/proxy/health")).json()["status"]

    async with openai.DefaultAsyncHttpx2Client(verify=tls(sim)) as http:  # the sim's CA; the key is its token
        client = openai.AsyncOpenAI(
            base_url=f"{sim.url}{proxy(ns, f'{WORKSPACE}:80', 'v1')}", api_key=sim.token, http_client=http
        )
        stream = await client.chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": "Say hello"}], max_tokens=12, stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert len(chunks) > 2 and chunks[-1].choices[0].finish_reason in ("length", "stop")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    # `kaito chat` takes the same road for a person: the first listed model, through the Service proxy.
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "kaito.cli", "chat", WORKSPACE, "Say hello", "-n", ns, "--max-tokens", "8"),
        *("--kubeconfig", str(sim.kubeconfig_path)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith(f"{SERVED}: ")


async def test_no_endpoints_and_missing_ports_answer_as_kube_apiserver_does(kubectl: Kubectl, sim: SimServer) -> None:
    ns = kubectl.namespace
    await kubectl("apply", "-f", "-", stdin=manifest(service("empty", {"app": "nothing"}, port=80, target=5000)))
    await until(lambda: sim.cluster.store.get(("", "endpoints"), ns, "empty"), "the (empty) Endpoints")
    result = await kubectl("get", "--raw", proxy(ns, "empty:80", "v1/models"), check=False)
    assert result.rc == 1
    assert 'Error from server (ServiceUnavailable): no endpoints available for service "empty"' in result.stderr
    result = await kubectl("get", "--raw", proxy(ns, "empty:81"), check=False)
    assert 'no service port 81 found for service "empty"' in result.stderr
    result = await kubectl("get", "--raw", proxy(ns, "absent:80"), check=False)
    assert 'services "absent" not found' in result.stderr and "NotFound" in result.stderr


async def test_a_simulated_pod_cannot_answer_and_says_so(kubectl: Kubectl, sim: SimServer) -> None:
    ns = kubectl.namespace
    web = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}}}
    web["spec"] = {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
    await kubectl("apply", "-f", "-", stdin=manifest(web, service("web", {"app": "web"}, port=80, target=80)))
    await kubectl("wait", "--for=condition=Ready", "pod/web")
    await until(lambda: ready_addresses(sim, ns, "web"), "the web Endpoints")
    result = await kubectl("get", "--raw", proxy(ns, "web:80"), check=False)
    assert "ServiceUnavailable" in result.stderr and 'pod "web" is simulated' in result.stderr


async def test_method_query_body_and_headers_pass_and_answers_stream(kubectl: Kubectl, sim: SimServer) -> None:
    ns, port = kubectl.namespace, free_port()
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "echo"}, "data": {"server.py": ECHO_SERVER}}
    pod = python_pod(
        "echo",
        "",
        str(port),
        restart="Always",
        container={
            "command": [sys.executable, "/app/server.py"],
            "ports": [{"name": "web", "containerPort": port}],
            "readinessProbe": {"tcpSocket": {"port": "web"}, "periodSeconds": 1},
            "volumeMounts": [{"name": "app", "mountPath": "/app"}],
        },
        volumes=[{"name": "app", "configMap": {"name": "echo"}}],
    )
    await kubectl(
        "apply", "-f", "-", stdin=manifest(config, pod, service("echo", {"app": "echo"}, port=8080, target=port))
    )
    await until(lambda: ready_addresses(sim, ns, "echo"), "a ready endpoint")

    headers = {"Authorization": f"Bearer {sim.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        url = sim.url + proxy(ns, "echo:8080", "echo/path?a=1&b=two%20words")
        async with session.post(url, data=b'{"hello": "world"}', headers={"X-Custom": "kept"}, ssl=tls(sim)) as resp:
            assert resp.status == 201 and resp.headers["X-Echo"] == "yes", await resp.text()
            echoed = await resp.json(content_type=None)
        assert echoed["method"] == "POST" and echoed["path"] == "/echo/path?a=1&b=two%20words"
        assert echoed["body"] == '{"hello": "world"}' and echoed["headers"]["X-Custom"] == "kept"
        assert "Authorization" not in echoed["headers"], "the caller's API server credential must not be forwarded"
        assert echoed["headers"]["X-Forwarded-For"] == "127.0.0.1"

        url = sim.url + f"/api/v1/namespaces/{ns}/pods/echo:{port}/proxy/stream?x=1"
        async with session.get(url, ssl=tls(sim)) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
            first = await asyncio.wait_for(resp.content.readline(), 10)  # the server holds the rest for 30 s
        assert first == b"data: first /stream?x=1\n"

        idle = free_port()  # nothing listens there
        async with session.get(sim.url + f"/api/v1/namespaces/{ns}/pods/echo:{idle}/proxy/", ssl=tls(sim)) as resp:
            status = await resp.json()
        pod_ip = pods(sim, ns, "echo")[0]["status"]["podIP"]
        assert (resp.status, status["reason"]) == (503, "ServiceUnavailable")
        assert (
            status["message"] == f"error trying to reach service: dial tcp {pod_ip}:{idle}: connect: connection refused"
        )

    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(sim.url + proxy(ns, "echo:8080", "echo"), ssl=tls(sim)) as resp,
    ):
        assert resp.status == 401
