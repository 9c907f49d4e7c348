"""Process pods: the simulated kubelet runs `kaito-runtime` (and test) containers as real local processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kaito.inference.tinymodel import make_tiny_model
from kaito_sim.nodes.launch import image_matches
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer
from kaito_sim.workloads.api import Api
from tests.conftest import Kubectl
from tests.kaito_sim.processpods import (
    PODS,
    SERVED,
    container_status,
    is_ready,
    manifest,
    pid_gone,
    pods,
    python_pod,
    serve_objects,
    until,
)

SLEEP = "import time; print('sleeping', flush=True); time.sleep(600)"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
async def sim(tiny_model: Path) -> AsyncIterator[SimServer]:
    options = ProcessPods(images=("kaito-runtime", "local-python"), model_dir=tiny_model, restart_backoff=0.3)
    async with SimServer(bookmark_interval=0.5, process_pods=options) as server:
        yield server


async def running_pid(sim: SimServer, namespace: str, pod: str, container: str = "main") -> int:
    assert sim.processes is not None
    table = sim.processes
    pid: int = await until(lambda: table.pid(namespace, pod, container), f"{pod}'s process")
    return pid


def test_image_matching_ignores_registry_tag_and_digest() -> None:
    names = ("kaito-runtime",)
    for image in (
        "kaito-runtime",
        "kaito-runtime:0.1.0",
        "localhost:5000/kaito-runtime",
        "mcr.io/a/kaito-runtime@sha256:0",
    ):
        assert image_matches(image, names), image
    for image in ("kaito-runtime-extra:1", "nginx:1.27", "localhost:5000/other"):
        assert not image_matches(image, names), image


async def test_kaito_serve_turns_ready_only_when_its_health_answers(kubectl: Kubectl, sim: SimServer) -> None:
    ns = kubectl.namespace
    await kubectl("apply", "-f", "-", stdin=manifest(*serve_objects("ws")))
    seen: list[tuple[bool, bool]] = []  # (running, ready) as the kubelet reported them

    def ready() -> dict[str, object] | None:
        found = pods(sim, ns, "ws")
        if not found:
            return None
        seen.append(("running" in (container_status(found[0]).get("state") or {}), is_ready(found[0])))
        return found[0] if is_ready(found[0]) else None

    pod = await until(ready, "the kaito serve pod to turn Ready", within=90)
    name = pod["metadata"]["name"]
    assert (True, False) in seen, "the pod must run unready while the server loads"
    assert seen.index((True, False)) < seen.index((True, True))
    status = container_status(pod)
    assert status["started"] is True and status["restartCount"] == 0 and status["image"].endswith("kaito-runtime:0.1.0")

    health = await kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/{name}:5000/proxy/health")
    assert health.json() == {"status": "Healthy"}
    models = await kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/services/ws:80/proxy/v1/models")
    assert [m["id"] for m in models.json()["data"]] == [SERVED]
    logs = (await kubectl("logs", name)).stdout
    assert f"kaito serve: transformers engine, model {SERVED}, on http://127.0.0.1:" in logs

    endpoints = (await kubectl("get", "endpoints", "ws", "-o", "json")).json()
    assert [a["ip"] for a in endpoints["subsets"][0]["addresses"]] == [pod["status"]["podIP"]]
    before = sim.cluster.store.get(PODS, ns, name)
    await asyncio.sleep(1.5)  # readiness probes keep passing: nothing changed, so nothing is written
    assert sim.cluster.store.get(PODS, ns, name) == before


async def test_killed_process_is_terminated_with_its_code_then_restarted(kubectl: Kubectl, sim: SimServer) -> None:
    ns = kubectl.namespace
    pod = python_pod("sleeper", SLEEP, restart="Always")
    await kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    pid = await running_pid(sim, ns, "sleeper")
    await until(lambda: is_ready(pods(sim, ns, "sleeper")[0]), "Ready (no readiness probe: ready once running)")
    log = sim.cluster.pod_logs
    await until(lambda: log.get((ns, "sleeper", "main")), "the first run's output")
    os.kill(pid, signal.SIGKILL)

    def restarted() -> dict[str, object] | None:
        status = container_status(pods(sim, ns, "sleeper")[0])
        return status if status.get("restartCount") == 1 and "running" in status["state"] else None

    status = await until(restarted, "the container's restart")
    last = status["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (137, "Error")
    assert await running_pid(sim, ns, "sleeper") != pid
    events = (await kubectl("get", "events", "--field-selector", "involvedObject.name=sleeper", "-o", "json")).json()
    assert any(e["reason"] == "BackOff" for e in events["items"])
    await until(lambda: "".join(log.get((ns, "sleeper", "main"), [])).count("sleeping") == 2, "the second run's output")
    assert (await kubectl("logs", "sleeper")).stdout == "sleeping\nsleeping\n"


async def test_exit_codes_reasons_and_stderr_reach_the_pod_status(kubectl: Kubectl, sim: SimServer) -> None:
    ns = kubectl.namespace
    fail = "import sys; print('working'); print('out of cheese', file=sys.stderr); sys.exit(3)"
    await kubectl("apply", "-f", "-", stdin=manifest(python_pod("fails", fail), python_pod("works", "print('done')")))

    def phases() -> list[str]:
        return [str(pods(sim, ns, name)[0]["status"].get("phase")) for name in ("fails", "works")]

    await until(lambda: phases() == ["Failed", "Succeeded"], "one pod to fail and one to succeed")
    failed = container_status(pods(sim, ns, "fails")[0])["state"]["terminated"]
    assert (failed["exitCode"], failed["reason"], failed["message"]) == (3, "Error", "out of cheese\n")
    done = container_status(pods(sim, ns, "works")[0])["state"]["terminated"]
    assert (done["exitCode"], done["reason"]) == (0, "Completed") and "message" not in done
    assert sorted((await kubectl("logs", "fails")).stdout.splitlines()) == ["out of cheese", "working"]


async def test_volumes_environment_and_arguments_reach_the_process(kubectl: Kubectl, sim: SimServer) -> None:
    ns = kubectl.namespace
    code = textwrap.dedent(
        """
        import json, os, sys
        config, token = sys.argv[1], sys.argv[2].split("=", 1)[1]
        print(json.dumps({
            "argv": sys.argv[1:],
            "config": open(config).read(),
            "token": open(token).read(),
            "env": {k: os.environ.get(k) for k in ("PLAIN", "FROM_CM", "FROM_SECRET", "POD", "NS", "DERIVED", "P_key")},
            "scratch": os.listdir(sys.argv[3]),
        }))
        """
    )
    pod = python_pod(
        "reader",
        code,
        "/etc/app/conf/settings.yaml",
        "--token=/var/secret/token",
        "/scratch",
        "$(PLAIN)-arg",
        container={
            "env": [
                {"name": "PLAIN", "value": "plain"},
                {"name": "DERIVED", "value": "$(PLAIN)-derived"},
                {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "mode"}}},
                {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "app"}, "prefix": "P_"}],
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app"},
                {"name": "creds", "mountPath": "/var/secret", "readOnly": True},
                {"name": "scratch", "mountPath": "/scratch"},
            ],
        },
        volumes=[
            {
                "name": "config",
                "configMap": {"name": "app", "items": [{"key": "settings", "path": "conf/settings.yaml"}]},
            },
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "scratch", "emptyDir": {}},
        ],
    )
    await kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    waiting = await until(
        lambda: (container_status(pods(sim, ns, "reader")[0]).get("state") or {}).get("waiting", {}).get("message"),
        "the missing ConfigMap to be reported",
    )
    assert waiting == 'configmap "app" not found'
    assert container_status(pods(sim, ns, "reader")[0])["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "app"},
        "data": {"settings": "a: 1\n", "mode": "fast", "key": "v"},
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}
    await kubectl("apply", "-f", "-", stdin=manifest(config, secret))
    await until(
        lambda: pods(sim, ns, "reader")[0]["status"].get("phase") == "Succeeded", "the reader to finish", within=20
    )
    out = json.loads((await kubectl("logs", "reader")).stdout)
    assert out["config"] == "a: 1\n" and out["token"] == "s3cret" and out["scratch"] == []
    assert out["argv"][1].startswith("--token=/") and not out["argv"][1].startswith("--token=/var/secret")
    assert out["argv"][3] == "plain-arg"
    assert out["env"] == {
        "PLAIN": "plain",
        "FROM_CM": "fast",
        "FROM_SECRET": "s3cret",
        "POD": "reader",
        "NS": ns,
        "DERIVED": "plain-derived",
        "P_key": "v",
    }


async def test_configmap_and_secret_volumes_follow_their_objects_while_the_process_runs(
    kubectl: Kubectl, sim: SimServer
) -> None:
    ns = kubectl.namespace
    code = textwrap.dedent(
        """
        import sys, time
        seen = None
        while True:
            now = (open(sys.argv[1]).read(), open(sys.argv[2]).read())
            if now != seen:
                print(repr(now), flush=True)
                seen = now
            time.sleep(0.05)
        """
    )
    pod = python_pod(
        "follower",
        code,
        "/etc/app/engine.yaml",
        "/var/pull/creds/.dockerconfigjson",
        container={
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app", "readOnly": True},
                {"name": "pull", "mountPath": "/var/pull", "readOnly": True},
            ]
        },
        volumes=[
            {"name": "config", "configMap": {"name": "engine"}},
            {
                "name": "pull",
                "projected": {
                    "sources": [
                        {
                            "secret": {
                                "name": "creds",
                                "items": [{"key": ".dockerconfigjson", "path": "creds/.dockerconfigjson"}],
                            }
                        }
                    ]
                },
            },
        ],
    )
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "engine"},
        "data": {"engine.yaml": "v: 1\n"},
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "stringData": {".dockerconfigjson": "a"},
    }
    await kubectl("apply", "-f", "-", stdin=manifest(config, secret, pod))
    pid = await running_pid(sim, ns, "follower")

    async def printed(line: str) -> bool:
        return line in (await kubectl("logs", "follower")).stdout

    async def wait_for(line: str) -> None:
        for _ in range(200):
            if await printed(line):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the process never read {line}: {(await kubectl('logs', 'follower')).stdout}")

    await wait_for("('v: 1\\n', 'a')")
    config["data"] = {"engine.yaml": "v: 2\n"}
    secret["stringData"] = {".dockerconfigjson": "b"}
    await kubectl("apply", "-f", "-", stdin=manifest(config, secret))
    await wait_for("('v: 2\\n', 'b')")
    assert await running_pid(sim, ns, "follower") == pid  # the same process: no restart
    assert container_status(pods(sim, ns, "follower")[0]).get("restartCount", 0) == 0


async def test_deleting_the_pod_stops_its_process_and_sigkill_follows_the_grace(
    kubectl: Kubectl, sim: SimServer
) -> None:
    ns = kubectl.namespace
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    )
    await kubectl(
        "apply",
        "-f",
        "-",
        stdin=manifest(python_pod("polite", SLEEP), python_pod("stubborn", stubborn, terminationGracePeriodSeconds=1)),
    )
    polite, stubborn_pid = await running_pid(sim, ns, "polite"), await running_pid(sim, ns, "stubborn")
    await until(lambda: "up" in "".join(sim.cluster.pod_logs.get((ns, "stubborn", "main"), [])), "SIGTERM ignored")
    await kubectl("delete", "pod", "polite", "stubborn", "--wait=false")
    await until(lambda: pid_gone(polite), "the polite process to end on SIGTERM", within=5)
    assert not pid_gone(stubborn_pid), "a process ignoring SIGTERM keeps running for its grace period"
    await until(lambda: pid_gone(stubborn_pid), "SIGKILL after the grace period", within=5)


async def test_removing_the_node_stops_its_processes(kubectl: Kubectl, sim: SimServer) -> None:
    await kubectl("apply", "-f", "-", stdin=json.dumps(python_pod("on-node", SLEEP)))
    pid = await running_pid(sim, kubectl.namespace, "on-node")
    node = pods(sim, kubectl.namespace, "on-node")[0]["spec"]["nodeName"]
    await sim.remove_node(node)
    await until(lambda: pid_gone(pid), "the process to stop with its node", within=5)


async def test_faults_stand_in_for_the_process_and_other_images_stay_simulated(
    kubectl: Kubectl, sim: SimServer
) -> None:
    ns = kubectl.namespace
    sim.pod_faults.add({"app": "faulty"}, "CrashLoopBackOff")
    nginx = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    }
    await kubectl("apply", "-f", "-", stdin=manifest(nginx, python_pod("faulty", SLEEP, restart="Always")))
    await kubectl("wait", "--for=condition=Ready", "pod/web")
    await until(lambda: container_status(pods(sim, ns, "faulty")[0]).get("lastState"), "the scripted crash")
    assert sim.processes is not None
    assert sim.processes.pid(ns, "web", "web") is None and sim.processes.pid(ns, "faulty", "main") is None
    sim.pod_faults.clear()
    await running_pid(sim, ns, "faulty")


async def test_closing_the_server_stops_every_process(tiny_model: Path) -> None:
    async with SimServer(process_pods=ProcessPods(images=("local-python",), model_dir=tiny_model)) as sim:
        await Api(sim.cluster, "test").create(PODS, "default", python_pod("sleeper", SLEEP))
        pid = await running_pid(sim, "default", "sleeper")
    assert pid_gone(pid)


def test_processes_die_with_the_process_that_runs_the_cluster(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from kaito_sim.nodes.processes import ProcessPods
        from kaito_sim.server import SimServer
        from kaito_sim.workloads.api import Api
        from tests.kaito_sim.processpods import python_pod

        async def main():
            async with SimServer(process_pods=ProcessPods(images=("local-python",))) as sim:
                await Api(sim.cluster, "test").create(("", "pods"), "default", python_pod("p", {SLEEP!r}))
                while (pid := sim.processes.pid("default", "p", "main")) is None:
                    await asyncio.sleep(0.05)
                print(pid, flush=True)
                await asyncio.sleep(600)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the killed parent cannot clean up its scratch directories
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[3], env=env
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert not pid_gone(pid)
    finally:
        parent.kill()
        parent.wait()
    for _ in range(100):
        if pid_gone(pid):
            break
        time.sleep(0.05)
    assert pid_gone(pid), "the container's process outlived the cluster's process"
