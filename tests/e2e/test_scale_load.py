"""A bounded load on an autoscaled InferenceSet raises its replicas, and idleness takes it to zero, GPU nodes included.

On `kaito sim --with-manager --process-pods`: concurrent chat completions go to the set's ClusterIP (the simulated
kube-proxy, then the real `kaito gateway`, then the replicas' `kaito serve`); the operator reads the load from the
pods' `/metrics` and scales the set. Every wait has a deadline; nothing is timed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito_sim.demo.load import LoadReport, run_load
from tests.e2e.simprocess import Cluster, restarted_manager, sim_process, until

NAME = "busy"
MAX_REPLICAS = 3
SET = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "InferenceSet",
    "metadata": {"name": NAME},
    "spec": {
        "replicas": 1,
        "labelSelector": {"matchLabels": {"apps": NAME}},
        "autoscaling": {
            "minReplicas": 0,
            "maxReplicas": MAX_REPLICAS,
            "targetInFlightPerReplica": 2,
            "scaleDownDelay": "5s",
            "scaleToZeroAfter": "5s",
        },
        "template": {
            "resource": {"instanceType": "Standard_NC6s_v3"},
            "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
        },
    },
}
CLIENTS = 6  # three replicas' worth at the target above: more than one replica, never more than maxReplicas


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with sim_process(tmp_path_factory.mktemp("scale-load")) as up:
        yield up


def the_set(cluster: Cluster, name: str = NAME) -> dict[str, object]:
    return cluster.json("inferenceset", name)


def replicas(cluster: Cluster, name: str = NAME) -> tuple[int, int]:
    """The set's (spec.replicas, status.readyReplicas)."""
    got = the_set(cluster, name)
    spec, status = got["spec"], got.get("status") or {}
    assert isinstance(spec, dict) and isinstance(status, dict)
    return int(spec.get("replicas") or 0), int(status.get("readyReplicas") or 0)


def cluster_ip(cluster: Cluster, name: str = NAME) -> str:
    """The set's Service's ClusterIP; "" until the operator has made the Service."""
    return cluster.kubectl("get", "svc", name, "-o", "jsonpath={.spec.clusterIP}").stdout.strip()


def reachable(ip: str) -> bool:
    if not ip:
        return False
    try:
        socket.create_connection((ip, 80), timeout=2).close()
    except OSError:
        return False
    return True


class Load:
    """`run_load` on a thread of its own, against the set's ClusterIP, until `stop`."""

    def __init__(self, url: str) -> None:
        self.report = LoadReport()
        self.halt = threading.Event()
        self.thread = threading.Thread(
            target=asyncio.run, args=(run_load(url, clients=CLIENTS, stop=self.halt, report=self.report),)
        )

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(timeout=150)
        assert not self.thread.is_alive()


def test_a_bounded_load_scales_out_and_idleness_scales_to_zero(cluster: Cluster) -> None:
    applied = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(SET))
    assert applied.returncode == 0, applied.stderr
    # The load starts as soon as the gateway answers: its first requests are held until a replica is ready, which
    # keeps the starting set busy (an idle one would go to zero after 5s).
    until(lambda: reachable(cluster_ip(cluster)), "the set's gateway behind its ClusterIP")
    ip = cluster_ip(cluster)

    seen: list[tuple[int, int]] = []

    def scaled_out() -> bool:
        seen.append(replicas(cluster))
        return seen[-1][1] > 1 and len(cluster.gpu_nodes()) > 1

    with Load(f"http://{ip}") as load:
        until(scaled_out, "more than one Ready replica under load")
        load.stop()
    assert load.report.answered > 0
    assert max(wanted for wanted, _ in seen) <= MAX_REPLICAS
    assert not load.report.failures, load.report.failures

    until(lambda: replicas(cluster) == (0, 0), "the idle set's scale to zero")
    until(lambda: not cluster.names("workspaces", "-l", f"kaito.sh/inferenceset={NAME}"), "its children to go")
    until(lambda: not cluster.gpu_nodes(), "its GPU nodes to go")
    assert cluster.names("nodeclaims") == []
    got = the_set(cluster)
    status, metadata = got["status"], got["metadata"]
    assert isinstance(status, dict) and isinstance(metadata, dict) and status["lastScaleReason"] == "ScaleToZero"
    # What autoscaling learned stays on the set for a manager that starts while it is at zero.
    learned = status["autoscaling"]
    assert learned["targetInFlightPerReplica"] == 2
    assert learned["observedRequestDuration"].endswith(("ms", "s"))
    assert learned["idleSince"] >= metadata["creationTimestamp"]


IDLE_S = 30  # the restarted set's scaleToZeroAfter


def ask(ip: str) -> None:
    body = {"model": "phi-3-mini-4k-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    request = urllib.request.Request(
        f"http://{ip}/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200


def api_seconds(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_restarted_manager_counts_the_idle_time_from_the_sets_status(cluster: Cluster, tmp_path: Path) -> None:
    name = "steady"
    spec: dict[str, Any] = {**SET["spec"], "labelSelector": {"matchLabels": {"apps": name}}}  # type: ignore[dict-item]
    spec["autoscaling"] = {**spec["autoscaling"], "maxReplicas": 1, "scaleToZeroAfter": f"{IDLE_S}s"}
    doc = {**SET, "metadata": {"name": name}, "spec": spec}
    applied = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    assert applied.returncode == 0, applied.stderr
    until(lambda: replicas(cluster, name) == (1, 1), "the set's first replica Ready", within=180)
    until(lambda: reachable(cluster_ip(cluster, name)), "the set's gateway behind its ClusterIP")
    ip = cluster_ip(cluster, name)
    asked_until = time.monotonic() + 12  # over two of the controller's readings, so a duration is measured
    while time.monotonic() < asked_until:
        ask(ip)
        time.sleep(0.5)

    def learned() -> dict[str, Any]:
        status = cluster.json("inferenceset", name).get("status") or {}
        found: dict[str, Any] = status.get("autoscaling") or {}
        return found

    until(lambda: {"idleSince", "observedRequestDuration"} <= learned().keys(), "the idle time and duration on record")
    before = learned()
    idle_since = api_seconds(before["idleSince"])
    # Halfway through the idle time, the manager restarts. One that forgot would wait IDLE_S from its start.
    time.sleep(max(0.0, idle_since + IDLE_S / 2 - time.time()))
    restarted_at = time.time()
    with restarted_manager(cluster, tmp_path / "manager.log"):
        until(lambda: replicas(cluster, name) == (0, 0), "the idle set's scale to zero", within=120)
        status = cluster.json("inferenceset", name)["status"]
    assert status["lastScaleReason"] == "ScaleToZero"
    zero_at = api_seconds(status["lastScaleTime"])
    assert idle_since + IDLE_S - 1 <= zero_at < restarted_at + IDLE_S, (idle_since, restarted_at, zero_at)
    assert status["autoscaling"]["observedRequestDuration"] == before["observedRequestDuration"]
