"""Well-known images run as process pods: curl, busybox and python with local commands, the rest simulated."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest

from kaito_sim.nodes.images import IMAGES, Image, MissingCommand
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.kaito_sim.processpods import PODS, JsonObj, container_status, until

CURL, BUSYBOX, PYTHON = IMAGES["curlimages/curl"], IMAGES["busybox"], IMAGES["python"]


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(bookmark_interval=0.5, process_pods=ProcessPods()) as server:
        yield server


@pytest.mark.parametrize(
    ("image", "command", "args", "argv"),
    [
        pytest.param(CURL, [], ["curl", "-s", "http://x/"], ["curl", "-s", "http://x/"], id="curl-args-name-curl"),
        pytest.param(CURL, [], ["-s", "http://x/"], ["curl", "-s", "http://x/"], id="curl-args-are-options"),
        pytest.param(CURL, [], ["http://x/"], ["curl", "http://x/"], id="curl-args-not-a-command"),
        pytest.param(CURL, [], ["sh", "-c", "true"], ["sh", "-c", "true"], id="curl-args-name-an-applet"),
        pytest.param(CURL, [], [], ["curl"], id="curl-cmd"),
        pytest.param(CURL, ["wget"], ["-q", "u"], ["wget", "-q", "u"], id="curl-command-replaces-entrypoint"),
        pytest.param(BUSYBOX, [], [], ["sh"], id="busybox-cmd"),
        pytest.param(BUSYBOX, [], ["echo", "hi"], ["echo", "hi"], id="busybox-args"),
        pytest.param(PYTHON, [], [], ["python3"], id="python-cmd"),
        pytest.param(PYTHON, ["python"], ["-c", "1"], ["python", "-c", "1"], id="python-command"),
    ],
)
def test_argv_is_composed_as_the_image_runtime_composes_it(
    image: Image, command: list[str], args: list[str], argv: list[str]
) -> None:
    assert image.argv(command, args) == argv


def test_commands_run_as_this_machines() -> None:
    for word in ("python", "python3", "python3.12", "/usr/local/bin/python3"):
        assert PYTHON.executable(word) == sys.executable
    assert CURL.executable("curl", which=lambda name: f"/machine/bin/{name}") == "/machine/bin/curl"
    assert BUSYBOX.executable("/bin/sleep", which=lambda name: f"/machine/bin/{name}") == "/machine/bin/sleep"
    with pytest.raises(MissingCommand, match=r'^exec: "python3": executable file not found in \$PATH$'):
        BUSYBOX.executable("python3")  # busybox ships no python, whatever this machine has
    with pytest.raises(MissingCommand) as missing:
        CURL.executable("curl", which=lambda _: None)
    assert missing.value.message == (
        'exec: "curl": executable file not found in $PATH (the simulated image runs this machine\'s curl, which is '
        "not installed)"
    )


async def finished(sim: SimServer, namespace: str, name: str) -> JsonObj:
    def done() -> JsonObj | None:
        pod = sim.cluster.store.get(PODS, namespace, name)
        return pod if pod and pod.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    pod: JsonObj = await until(done, f"pod {name} to finish")
    return pod


async def run(kubectl: Kubectl, name: str, image: str, *args: str) -> None:
    """`kubectl run NAME --restart=Never --image=IMAGE -- ARGS` in the test's namespace (-n before `--`)."""
    argv = ["run", name, "-n", kubectl.namespace, "--restart=Never", f"--image={image}", "--", *args]
    await kubectl(*argv, namespaced=False)


async def test_busybox_and_python_run_to_their_exit_codes(kubectl: Kubectl, sim: SimServer) -> None:
    ns = kubectl.namespace
    await run(kubectl, "hello", "busybox:1.36", "sh", "-c", "echo hello from $HOSTNAME")
    await run(kubectl, "fail", "docker.io/library/python:3.12", "python", "-c", "import sys; sys.exit(3)")
    hello, fail = await finished(sim, ns, "hello"), await finished(sim, ns, "fail")
    assert hello["status"]["phase"] == "Succeeded"
    assert (await kubectl("logs", "hello")).stdout == "hello from hello\n"
    assert fail["status"]["phase"] == "Failed"
    assert container_status(fail)["state"]["terminated"]["exitCode"] == 3


async def test_a_command_the_image_lacks_fails_its_start_and_names_it(kubectl: Kubectl, sim: SimServer) -> None:
    await run(kubectl, "missing", "busybox", "no-such-applet", "x")
    pod = await finished(sim, kubectl.namespace, "missing")
    terminated = container_status(pod)["state"]["terminated"]
    assert pod["status"]["phase"] == "Failed"
    assert (terminated["reason"], terminated["exitCode"]) == ("StartError", 128)
    expected = 'failed to start container process: exec: "no-such-applet": executable file not found in $PATH'
    assert terminated["message"] == expected


async def test_an_image_outside_the_table_stays_simulated(kubectl: Kubectl, sim: SimServer) -> None:
    await run(kubectl, "other", "alpine:3.20", "sh", "-c", "echo ran")
    await kubectl("wait", "--for=condition=Ready", "pod/other")
    assert sim.processes is not None and sim.processes.pid(kubectl.namespace, "other", "other") is None
    assert "ran" not in (await kubectl("logs", "other")).stdout


async def test_the_table_can_be_turned_off() -> None:
    async with SimServer(process_pods=ProcessPods(ordinary=())) as sim:
        assert sim.processes is not None
        spec = {"containers": [{"name": "c", "image": "busybox"}]}
        pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u"}, "spec": spec}
        assert sim.processes.sync(("default", "p"), pod) is None, "busybox is simulated"
