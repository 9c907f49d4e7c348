"""Process pods' init containers run as real processes before the others, and hostPath volumes live per node."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kaito_sim.nodes.hostpath import node_path, set_up
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.kaito_sim.processpods import PODS, PYTHON_IMAGE, manifest, pid_gone, python_pod, until

NODES = ("aks-system-00000000", "aks-system-00000001")
CACHE = "/var/lib/kaito/models"
EVENTS = ("", "events")
# An init step that "pulls" into the node cache: it says so, writes the file, and finishes.
FETCH = textwrap.dedent(
    """
    import pathlib, sys
    target = pathlib.Path(sys.argv[1])
    print("fetching", target.name, flush=True)
    target.write_text("weights v1")
    print("fetched", flush=True)
    """
)
READ = "import sys; print(open(sys.argv[1]).read(), flush=True)"


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimServer]:
    options = ProcessPods(images=("local-python",), restart_backoff=0.3, nodes_dir=tmp_path / "nodes")
    async with SimServer(bookmark_interval=0.5, process_pods=options, system_nodes=2) as server:
        yield server


def python(name: str, code: str, *args: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": PYTHON_IMAGE, "command": [sys.executable, "-c", code], "args": list(args), **extra}


def cached_pod(name: str, node: str, *, inits: list[dict[str, Any]], restart: str = "Never") -> dict[str, Any]:
    """A pod pinned to `node` that prints the cached model file, after `inits`, with the cache as a hostPath."""
    mount = {"volumeMounts": [{"name": "cache", "mountPath": CACHE}]}
    pod = python_pod(name, READ, f"{CACHE}/model.txt", restart=restart, container=mount, nodeName=node)
    pod["spec"]["volumes"] = [{"name": "cache", "hostPath": {"path": CACHE, "type": "DirectoryOrCreate"}}]
    pod["spec"]["initContainers"] = [{**c, **mount} for c in inits]
    return pod


def stored(sim: SimServer, ns: str, name: str) -> dict[str, Any]:
    pod = sim.cluster.store.get(PODS, ns, name)
    assert pod is not None, name
    return pod


def phase(sim: SimServer, ns: str, name: str) -> str:
    pod = sim.cluster.store.get(PODS, ns, name)
    return str((pod or {}).get("status", {}).get("phase", ""))


def condition(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in pod["status"]["conditions"] if c["type"] == kind)


def init_state(pod: dict[str, Any], index: int = 0) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("initContainerStatuses") or [{}]
    return dict(statuses[index].get("state") or {})


async def table_status(kubectl: Kubectl, name: str) -> str:
    """The STATUS column of `kubectl get pod` (NAME READY STATUS RESTARTS AGE)."""
    return (await kubectl("get", "pod", name, "--no-headers")).stdout.split()[2]


async def test_init_steps_fill_a_node_cache_that_the_main_container_and_later_pods_read(
    kubectl: Kubectl, sim: SimServer, tmp_path: Path
) -> None:
    ns = kubectl.namespace
    check = python("check", "import sys; print('found', open(sys.argv[1]).read(), flush=True)", f"{CACHE}/model.txt")
    first = cached_pod("first", NODES[0], inits=[python("fetch", FETCH, f"{CACHE}/model.txt"), check])
    await kubectl("apply", "-f", "-", stdin=json.dumps(first))
    await until(lambda: phase(sim, ns, "first") == "Succeeded", "the pod to run its init steps, then its container")

    pod = stored(sim, ns, "first")
    fetch, checked = pod["status"]["initContainerStatuses"]
    for status in (fetch, checked):
        done = status["state"]["terminated"]
        assert (done["exitCode"], done["reason"], status["ready"]) == (0, "Completed", True)
        assert done["startedAt"] <= done["finishedAt"]
    assert fetch["state"]["terminated"]["finishedAt"] <= checked["state"]["terminated"]["startedAt"]
    assert condition(pod, "Initialized")["status"] == "True"
    assert (await kubectl("logs", "first", "-c", "fetch")).stdout == "fetching model.txt\nfetched\n"
    assert (await kubectl("logs", "first", "-c", "check")).stdout == "found weights v1\n"
    assert (await kubectl("logs", "first", "-c", "main")).stdout == "weights v1\n"
    assert (tmp_path / "nodes" / NODES[0] / CACHE.lstrip("/") / "model.txt").read_text() == "weights v1"

    await kubectl("delete", "pod", "first")
    later = cached_pod("later", NODES[0], inits=[])
    elsewhere = cached_pod("elsewhere", NODES[1], inits=[])
    await kubectl("apply", "-f", "-", stdin=manifest(later, elsewhere))
    await until(lambda: phase(sim, ns, "later") == "Succeeded", "a later pod on the same node to read the cache")
    assert (await kubectl("logs", "later")).stdout == "weights v1\n"
    await until(lambda: phase(sim, ns, "elsewhere") == "Failed", "a pod on another node to find no cache")
    assert "No such file or directory" in (await kubectl("logs", "elsewhere")).stdout


async def test_a_running_init_step_holds_the_pod_in_init_and_its_log_follows_to_its_end(
    kubectl: Kubectl, sim: SimServer, tmp_path: Path
) -> None:
    ns = kubectl.namespace
    wait = textwrap.dedent(
        """
        import pathlib, sys, time
        print("pulling", flush=True)
        while not pathlib.Path(sys.argv[1]).exists():
            time.sleep(0.05)
        print("pulled", flush=True)
        """
    )
    pod = cached_pod("slow", NODES[0], inits=[python("pull", wait, f"{CACHE}/go")])
    await kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    assert sim.processes is not None
    table = sim.processes
    await until(lambda: table.pid(ns, "slow", "pull"), "the init step's process")
    await until(lambda: "running" in init_state(stored(sim, ns, "slow")), "the init step to be reported running")

    status = stored(sim, ns, "slow")["status"]
    assert status["phase"] == "Pending"
    initialized = condition(stored(sim, ns, "slow"), "Initialized")
    assert (initialized["status"], initialized["reason"]) == ("False", "ContainersNotInitialized")
    assert initialized["message"] == "containers with incomplete status: [pull]"
    pull = status["initContainerStatuses"][0]
    assert (pull["ready"], pull["started"], pull["restartCount"]) == (False, True, 0)
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert table.pid(ns, "slow", "main") is None, "the main container waits for the init step"
    assert await table_status(kubectl, "slow") == "Init:0/1"

    follow = await kubectl.start("logs", "-f", "slow", "-c", "pull")
    await until(lambda: sim.cluster.pod_logs.get((ns, "slow", "pull")) or [], "the init step's first line")
    (tmp_path / "nodes" / NODES[0] / CACHE.lstrip("/") / "go").write_text("")
    out, _ = await asyncio.wait_for(follow.communicate(), 30)
    assert out.decode() == "pulling\npulled\n", "following the log ends when the init step does"
    await until(lambda: phase(sim, ns, "slow") in ("Succeeded", "Failed"), "the main container to run after it")


async def test_deleting_a_pod_stops_its_running_init_step(kubectl: Kubectl, sim: SimServer) -> None:
    sleeper = python("pull", "import time; print('pulling', flush=True); time.sleep(600)")
    await kubectl("apply", "-f", "-", stdin=json.dumps(cached_pod("doomed", NODES[0], inits=[sleeper])))
    assert sim.processes is not None
    table = sim.processes
    pid = await until(lambda: table.pid(kubectl.namespace, "doomed", "pull"), "the init step's process")
    await kubectl("delete", "pod", "doomed", "--wait=false")
    await until(lambda: pid_gone(pid), "the init step to stop with its pod", within=10)
    await until(lambda: sim.cluster.store.get(PODS, kubectl.namespace, "doomed") is None, "the pod to go")


FAIL = "import sys; print('pulling', flush=True); print('unauthorized', file=sys.stderr); sys.exit(3)"


async def test_a_failing_init_step_fails_a_never_restarting_pod_with_its_words(
    kubectl: Kubectl, sim: SimServer
) -> None:
    ns = kubectl.namespace
    report = "import sys; open(sys.argv[1], 'w').write('manifest unknown: model:v9'); sys.exit(2)"
    pods = [
        cached_pod("failing", NODES[0], inits=[python("pull", FAIL)]),
        cached_pod("reporting", NODES[0], inits=[python("pull", report, "/dev/termination-log")]),
    ]
    await kubectl("apply", "-f", "-", stdin=manifest(*pods))
    await until(lambda: phase(sim, ns, "failing") == phase(sim, ns, "reporting") == "Failed", "both pods to fail")

    failing = stored(sim, ns, "failing")
    done = init_state(failing)["terminated"]
    assert (done["exitCode"], done["reason"], done["message"]) == (3, "Error", "unauthorized\n")
    assert failing["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert condition(failing, "Initialized")["status"] == "False"
    assert await table_status(kubectl, "failing") == "Init:Error"
    assert sorted((await kubectl("logs", "failing", "-c", "pull")).stdout.splitlines()) == ["pulling", "unauthorized"]
    assert (await kubectl("logs", "failing", "-c", "main")).stdout == "", "the main container never ran"

    reported = init_state(stored(sim, ns, "reporting"))["terminated"]
    assert (reported["exitCode"], reported["message"]) == (2, "manifest unknown: model:v9")


async def test_a_failing_init_step_is_restarted_with_back_off_under_restart_always(
    kubectl: Kubectl, sim: SimServer
) -> None:
    ns = kubectl.namespace
    await kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(cached_pod("looping", NODES[0], inits=[python("pull", FAIL)], restart="Always")),
    )

    def restarted() -> dict[str, Any] | None:
        statuses = stored(sim, ns, "looping")["status"].get("initContainerStatuses") or [{}]
        waiting = (statuses[0].get("state") or {}).get("waiting") or {}
        return statuses[0] if statuses[0].get("restartCount", 0) >= 1 and waiting else None

    pull = await until(restarted, "the init step to be restarted")
    assert pull["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert pull["lastState"]["terminated"]["exitCode"] == 3
    assert stored(sim, ns, "looping")["status"]["phase"] == "Pending"
    assert await table_status(kubectl, "looping") == "Init:CrashLoopBackOff"
    events = (await kubectl("get", "events", "--field-selector", "involvedObject.name=looping", "-o", "json")).json()
    backoffs = [e for e in events["items"] if e["reason"] == "BackOff"]
    assert backoffs and backoffs[0]["involvedObject"]["fieldPath"] == "spec.initContainers{pull}"
    assert (await kubectl("logs", "looping", "-c", "pull")).stdout.count("pulling") >= 2


async def test_a_missing_host_directory_holds_the_pod_until_it_exists(
    kubectl: Kubectl, sim: SimServer, tmp_path: Path
) -> None:
    ns = kubectl.namespace
    pod = cached_pod("strict", NODES[0], inits=[python("pull", FETCH, f"{CACHE}/model.txt")])
    pod["spec"]["volumes"][0]["hostPath"]["type"] = "Directory"
    await kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    expected = f'MountVolume.SetUp failed for volume "cache" : hostPath type check failed: {CACHE} is not a directory'

    def mount_events() -> list[str]:
        found = sim.cluster.store.items(EVENTS, ns)
        return [str(e["message"]) for e in found if e["reason"] == "FailedMount"]

    await until(mount_events, "the FailedMount event")
    selector = "involvedObject.name=strict,reason=FailedMount"
    events = (await kubectl("get", "events", "--field-selector", selector, "-o", "json")).json()["items"]
    assert [(e["type"], e["message"]) for e in events] == [("Warning", expected)]
    assert phase(sim, ns, "strict") == "Pending"
    assert condition(stored(sim, ns, "strict"), "PodReadyToStartContainers")["status"] == "False"
    assert await table_status(kubectl, "strict") == "Init:0/1"
    assert sim.processes is not None and sim.processes.pid(ns, "strict", "pull") is None

    node_path(tmp_path / "nodes" / NODES[0], CACHE).mkdir(parents=True)
    await until(lambda: phase(sim, ns, "strict") == "Succeeded", "the pod to start once the directory exists")
    assert (await kubectl("logs", "strict")).stdout == "weights v1\n"


@pytest.mark.parametrize(
    ("kind", "made", "failure"),
    [
        pytest.param("", "dir", None, id="unset-creates-a-directory"),
        pytest.param("DirectoryOrCreate", "dir", None, id="directory-or-create"),
        pytest.param("FileOrCreate", "file", None, id="file-or-create"),
        pytest.param("Directory", None, "is not a directory", id="directory-missing"),
        pytest.param("File", None, "is not a file", id="file-missing"),
        pytest.param("Socket", None, "is not a socket file", id="socket-missing"),
    ],
)
def test_host_path_types_create_or_refuse_as_the_kubelet_does(
    tmp_path: Path, kind: str, made: str | None, failure: str | None
) -> None:
    pod = {"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/data/x", "type": kind}}]}}
    message = set_up(pod, tmp_path)
    local = tmp_path / "data" / "x"
    if failure is None:
        assert message is None and (local.is_dir() if made == "dir" else local.is_file())
    else:
        assert message == f'MountVolume.SetUp failed for volume "v" : hostPath type check failed: /data/x {failure}'
        assert not local.exists()


def test_a_host_path_never_leaves_its_node_directory(tmp_path: Path) -> None:
    assert node_path(tmp_path, "/var/lib/kaito") == tmp_path / "var" / "lib" / "kaito"
    assert node_path(tmp_path, "/../../etc/passwd") == tmp_path / "etc" / "passwd"
    assert node_path(tmp_path, "/") == tmp_path


async def test_a_sidecar_init_container_starts_before_the_main_container_and_runs_beside_it(
    kubectl: Kubectl, sim: SimServer
) -> None:
    ns = kubectl.namespace
    up = "import sys, time; open(sys.argv[1], 'w').write('sidecar up'); time.sleep(600)"
    shared = {"volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}
    started = {"exec": {"command": ["test", "-f", "/shared/up"]}}  # the main container starts after this passes
    sidecar = python("proxy", up, "/shared/up", restartPolicy="Always", startupProbe=started, **shared)
    pod = python_pod("withsidecar", READ, "/shared/up", container=shared, nodeName=NODES[0])
    pod["spec"].update(initContainers=[sidecar], volumes=[{"name": "shared", "emptyDir": {}}])
    await kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    assert sim.processes is not None
    table = sim.processes
    sidecar_pid = await until(lambda: table.pid(ns, "withsidecar", "proxy"), "the sidecar's process")
    await until(lambda: phase(sim, ns, "withsidecar") == "Succeeded", "the main container to finish")
    assert (await kubectl("logs", "withsidecar", "-c", "main")).stdout == "sidecar up\n"
    await until(lambda: pid_gone(sidecar_pid), "the sidecar to stop once the pod has finished", within=10)
