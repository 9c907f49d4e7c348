"""An autoscaled InferenceSet on `kaito sim --with-manager --process-pods`: idle, it gives back its GPU node; a
request at zero is held by the real `kaito gateway`, a GPU node is provisioned, and the request is answered. And a
set held at zero: its gateway answers a full queue with 503 and a request held too long with 504, and stays up.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import yaml

from tests.e2e.simprocess import Cluster, sim_process, until

NAME = "chat"
SET = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "InferenceSet",
    "metadata": {"name": NAME},
    "spec": {
        "replicas": 1,
        "labelSelector": {"matchLabels": {"apps": NAME}},
        "autoscaling": {"minReplicas": 0, "maxReplicas": 2, "scaleToZeroAfter": "5s", "scaleDownDelay": "5s"},
        "template": {
            "resource": {"instanceType": "Standard_NC6s_v3"},
            "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
        },
    },
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with sim_process(tmp_path_factory.mktemp("scale-from-zero")) as up:
        yield up


def scale_reason(cluster: Cluster) -> str:
    status = cluster.json("inferenceset", NAME).get("status") or {}
    assert isinstance(status, dict)
    return str(status.get("lastScaleReason") or "")


def test_idle_goes_to_zero_and_a_request_at_zero_is_answered(cluster: Cluster) -> None:
    applied = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(SET))
    assert applied.returncode == 0, applied.stderr
    until(lambda: scale_reason(cluster) == "ScaleToZero", "the idle set's scale to zero", within=180)
    until(lambda: not cluster.gpu_nodes(), "its GPU node to go", within=180)
    assert cluster.json("workspaces", "-l", f"kaito.sh/inferenceset={NAME}")["items"] == []

    ip = cluster.kubectl("get", "svc", NAME, "-o", "jsonpath={.spec.clusterIP}").stdout
    client = openai.OpenAI(base_url=f"http://{ip}/v1", api_key="unused", timeout=180, max_retries=0)
    reply = client.chat.completions.create(
        model="phi-3-mini-4k-instruct", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    events = cluster.json("events", "--field-selector", f"involvedObject.name={NAME}")["items"]
    assert isinstance(events, list)
    assert "ScaleFromZero" in [e["reason"] for e in events]
    assert len(cluster.gpu_nodes()) >= 1

    deleted = cluster.kubectl("delete", "inferenceset", NAME, "--timeout=120s", timeout=180)
    assert deleted.returncode == 0, deleted.stderr
    until(lambda: not cluster.gpu_nodes(), "the set's GPU nodes to go with it", within=180)
    assert cluster.json("nodeclaims")["items"] == []


def held_set(name: str, gateway: dict[str, Any]) -> dict[str, Any]:
    """A set kept at zero (no autoscaling): every request waits at its gateway, as `gateway` says."""
    spec: dict[str, Any] = {**SET["spec"], "replicas": 0, "gateway": gateway}  # type: ignore[dict-item]
    del spec["autoscaling"]
    return {**SET, "metadata": {"name": name}, "spec": spec}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


def post(ip: str) -> Answer:
    """A chat completion sent to the set's ClusterIP; its status, headers and JSON body, errors included."""
    body = {"model": "phi-3-mini-4k-instruct", "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        f"http://{ip}/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Answer(response.status, dict(response.headers), json.loads(response.read()))
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), json.loads(error.read()))


def gateway_address(cluster: Cluster, name: str) -> str:
    """The set's ClusterIP once its gateway answers there."""
    found: list[str] = []

    def answering() -> bool:
        ip = cluster.kubectl("get", "svc", name, "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
        if not ip:
            return False
        try:
            urllib.request.urlopen(f"http://{ip}/healthz", timeout=2).close()
        except OSError:
            return False
        found.append(ip)
        return True

    until(answering, f"the gateway of {name} behind its ClusterIP", within=180)
    return found[-1]


def test_a_full_queue_is_503_with_retry_after_and_a_held_request_times_out_504(cluster: Cluster) -> None:
    gateways: list[tuple[str, dict[str, Any]]] = [
        ("full", {"maxQueue": 0}),
        ("slow", {"maxQueue": 5, "holdTimeout": "2s"}),
    ]
    for name, gateway in gateways:
        applied = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(held_set(name, gateway)))
        assert applied.returncode == 0, applied.stderr

    full = post(gateway_address(cluster, "full"))
    assert full.status == 503 and int(full.headers["Retry-After"]) > 0
    assert full.body["error"]["type"] == "queue_full"

    slow = gateway_address(cluster, "slow")
    for _ in range(2):  # the gateway stays up after a timed-out hold
        timed_out = post(slow)
        assert timed_out.status == 504 and timed_out.body["error"]["type"] == "hold_timeout"
    for name in ("full", "slow"):
        cluster.kubectl("delete", "inferenceset", name, "--wait=false")
