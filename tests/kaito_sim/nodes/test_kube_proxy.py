"""The simulated kube-proxy and cluster DNS: ClusterIPs answer on this machine, Service names resolve in pods."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from kaito.inference.tinymodel import make_tiny_model
from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.nodes.kubeproxy import Handler, KubeProxy, listen
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.kaito_sim.processpods import (
    PODS,
    JsonObj,
    free_port,
    manifest,
    serve_objects,
    service,
    until,
)

SERVICES, ENDPOINTS = ("", "services"), ("", "endpoints")
# Answers "<pod> <path>"; /sick makes its readiness (/healthz) fail from then on.
ECHO = textwrap.dedent(
    """
    import os, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        sick = False

        def do_GET(self):
            if self.path == "/sick":
                Handler.sick = True
            status = 503 if self.path == "/healthz" and Handler.sick else 200
            body = f"{os.environ['HOSTNAME']} {self.path}".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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
    async with SimServer(bookmark_interval=0.5, process_pods=ProcessPods(model_dir=tiny_model)) as server:
        yield server


def echo_pod(name: str, port: int, app: str = "echo") -> JsonObj:
    """A `python` image pod serving ECHO on `port`, ready while /healthz answers."""
    probe = {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 1, "failureThreshold": 1}
    container = {
        "name": "main",
        "image": "docker.io/library/python:3.12-slim",
        "command": ["python3", "-c", ECHO, str(port)],
        "ports": [{"name": "http", "containerPort": port}],  # each pod its own number: they share this machine
        "readinessProbe": probe,
    }
    spec = {"restartPolicy": "Always", "containers": [container]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}}, "spec": spec}


def cluster_ip(sim: SimServer, namespace: str, name: str) -> str:
    found = sim.cluster.store.get(SERVICES, namespace, name)
    assert found is not None
    return str(found["spec"]["clusterIP"])


def listening(sim: SimServer, address: tuple[str, int]) -> bool:
    return sim.kube_proxy is not None and address in sim.kube_proxy.listening()


async def get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return await answer.text()


async def finished(sim: SimServer, namespace: str, name: str) -> JsonObj:
    def done() -> JsonObj | None:
        pod = sim.cluster.store.get(PODS, namespace, name)
        return pod if pod and pod.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    pod: JsonObj = await until(done, f"pod {name} to finish")
    return pod


async def serving(kubectl: Kubectl, sim: SimServer, *pods: JsonObj, name: str = "echo") -> str:
    """Apply the echo pods and a Service `name` (port 80 to their port named http); its ClusterIP once it listens."""
    front = service(name, pods[0]["metadata"]["labels"], port=80, target=0)
    front["spec"]["ports"][0]["targetPort"] = "http"
    await kubectl("apply", "-f", "-", stdin=manifest(*pods, front))
    ip = cluster_ip(sim, kubectl.namespace, name)
    await until(lambda: listening(sim, (ip, 80)), f"the kube-proxy to listen on {ip}:80")
    return ip


async def test_the_service_cidr_is_loopback_with_process_pods_and_can_be_chosen() -> None:
    assert cluster_ip(SimServer(), "default", "kubernetes") == "10.96.0.1", "no kube-proxy: kube-apiserver's default"
    async with SimServer(process_pods=ProcessPods()) as sim:
        assert cluster_ip(sim, "default", "kubernetes") == "127.96.0.1"
    async with SimServer(process_pods=ProcessPods(), service_cidr="127.97.3.0/24") as sim:
        assert cluster_ip(sim, "default", "kubernetes") == "127.97.3.1"


async def test_a_service_answers_at_its_cluster_ip_here_and_by_name_in_pods(kubectl: Kubectl, sim: SimServer) -> None:
    ns = kubectl.namespace
    ip = await serving(kubectl, sim, echo_pod("echo-0", free_port()))
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("127.96.0.0/16")
    assert await get(f"http://{ip}/here") == "echo-0 /here"

    fetch = (
        "import sys, urllib.request\n"
        "for url in sys.argv[1:]:\n"
        "    print(urllib.request.urlopen(url, timeout=10).read().decode(), flush=True)\n"
    )
    urls = [f"http://echo.{ns}.svc.cluster.local/full", f"http://echo.{ns}.svc/svc", f"http://echo.{ns}/ns"]
    client = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": "python:3.12", "args": ["python", "-c", fetch, *urls, "http://echo/short"]}
            ],
        },
    }
    await kubectl("apply", "-f", "-", stdin=manifest(client))
    pod = await finished(sim, ns, "client")
    logs = (await kubectl("logs", "client")).stdout
    assert pod["status"]["phase"] == "Succeeded", logs
    assert logs.splitlines() == ["echo-0 /full", "echo-0 /svc", "echo-0 /ns", "echo-0 /short"]


async def test_curl_on_this_machine_reaches_kaito_serve_at_its_cluster_ip(kubectl: Kubectl, sim: SimServer) -> None:
    await kubectl("apply", "-f", "-", stdin=manifest(*serve_objects("ws")))
    ip = cluster_ip(sim, kubectl.namespace, "ws")
    await until(lambda: listening(sim, (ip, 80)), "the workspace Service to listen", within=120)
    body = json.dumps({"prompt": "What is KAITO?", "generate_kwargs": {"max_length": 24}})
    curl = await asyncio.create_subprocess_exec(
        *("curl", "-s", "-X", "POST", f"http://{ip}/chat", "-H", "Content-Type: application/json", "-d", body),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await curl.communicate()
    assert curl.returncode == 0 and isinstance(json.loads(out)["Result"], str)


async def test_forwarding_follows_the_endpoints(kubectl: Kubectl, sim: SimServer) -> None:
    ns = kubectl.namespace
    ip = await serving(kubectl, sim, echo_pod("echo-a", free_port()), echo_pod("echo-b", free_port()))
    await until(lambda: len(ready(sim, ns, "echo")) == 2, "both echo pods ready")
    await kubectl("delete", "pod", "echo-a", "--wait=false")
    await until(lambda: ready(sim, ns, "echo") == ["echo-b"], "echo-a to leave the Endpoints")
    assert {await get(f"http://{ip}/x") for _ in range(4)} == {"echo-b /x"}, "only the remaining pod answers"

    assert await get(f"http://{ip}/sick") == "echo-b /sick"  # from now on its readiness probe fails
    await until(lambda: not listening(sim, (ip, 80)), "the listener to close with no ready endpoint")
    with pytest.raises(aiohttp.ClientConnectorError):
        await get(f"http://{ip}/x")


async def test_a_simulated_endpoint_gets_no_traffic(kubectl: Kubectl, sim: SimServer) -> None:
    web = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}}}
    web["spec"] = {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
    await kubectl("apply", "-f", "-", stdin=manifest(web, service("web", {"app": "web"}, port=80, target=80)))
    ip = cluster_ip(sim, kubectl.namespace, "web")
    await until(lambda: listening(sim, (ip, 80)), "a listener for the simulated pod's Service")
    reader, writer = await asyncio.open_connection(ip, 80)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    try:
        answer = await reader.read()
    except ConnectionResetError:  # closed before or after the request arrived: reset, or just the end
        answer = b""
    assert answer == b"", "closed at once: nothing runs behind a simulated pod"
    writer.close()


async def test_kubectl_run_curl_reaches_a_service_by_ip_and_short_name(kubectl: Kubectl, sim: SimServer) -> None:
    ns = kubectl.namespace
    ip = await serving(kubectl, sim, echo_pod("echo-0", free_port()))
    url = "http://echo/by-name"  # the short name: only this namespace's pods resolve it
    run = ["run", "curl", "-n", ns, "--restart=Never", "--image=curlimages/curl", "--", "curl", "-s"]
    await kubectl(*run, f"http://{ip}/by-ip", url, namespaced=False)  # -n before `--`: after it, it is curl's
    pod = await finished(sim, ns, "curl")
    assert pod["status"]["phase"] == "Succeeded"
    assert (await kubectl("logs", "curl")).stdout.splitlines() == ["echo-0 /by-ipecho-0 /by-name"]


def ready(sim: SimServer, namespace: str, name: str) -> list[str]:
    endpoints = sim.cluster.store.get(ENDPOINTS, namespace, name) or {}
    addresses = [a for subset in endpoints.get("subsets") or [] for a in subset.get("addresses") or []]
    return sorted(a["targetRef"]["name"] for a in addresses)


# ----- the refusal of ports below 1024, with the store alone


def put(cluster: Cluster, key: tuple[str, str], obj: JsonObj) -> None:
    old = cluster.store.get(key, obj["metadata"]["namespace"], obj["metadata"]["name"])
    obj["metadata"]["resourceVersion"] = str(cluster.store.next_rv())
    cluster.store.put(key, obj, old=old)


async def test_a_refused_low_port_is_said_once_and_the_rest_listens(caplog: pytest.LogCaptureFixture) -> None:
    cluster = Cluster(service_cidr="127.96.0.0/16")
    high, refused = free_port(), []

    async def unprivileged(handler: Handler, host: str, port: int) -> asyncio.AbstractServer:
        if port < 1024:
            refused.append(port)
            raise PermissionError(errno.EACCES, "Permission denied")
        return await listen(handler, host, port)

    proxy = KubeProxy(cluster, resolve=lambda *_: free_port(), listen=unprivileged)
    ports = [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "alt", "port": high, "protocol": "TCP"}]
    svc: JsonObj = {"metadata": {"name": "ws", "namespace": "default"}, "spec": {"ports": ports}}
    cluster.cluster_ips.allocate(svc)
    ip = svc["spec"]["clusterIP"]
    put(cluster, SERVICES, svc)
    task = asyncio.create_task(proxy.run())
    try:
        for n in range(3):  # endpoints change: the listener is tried again, and the refusal not said again
            address = {"ip": f"10.244.0.{n + 2}"}
            subsets = [
                {"addresses": [address], "ports": [{"name": "http", "port": 5000}, {"name": "alt", "port": 5001}]}
            ]
            put(cluster, ENDPOINTS, {"metadata": {"name": "ws", "namespace": "default"}, "subsets": subsets})
            await until(lambda: len(refused) == n + 1, "the low port to be tried again")  # noqa: B023
            assert (ip, high) in proxy.listening()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await proxy.close()
    said = [r.getMessage() for r in caplog.records if "cannot listen" in r.getMessage()]
    assert len(said) == 1, said
    assert f"default/ws cannot listen on {ip}:80 (ports below" in said[0]
    assert "need root or CAP_NET_BIND_SERVICE" in said[0] and "`kubectl port-forward svc/ws`" in said[0]
    assert proxy.listening() == set(), "every listener closes with the kube-proxy"
