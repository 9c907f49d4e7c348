"""The original README's inference quick start, typed as a user types it, on `kaito sim --with-manager --process-pods`.

One simulated cluster (its own process, as a user starts it) serves the module: the README's workspace is applied
once and every test reaches the Ready model the way the README or a user would, with kubectl, curl and `openai`.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from kaito_sim.demo.terminal import run_in_terminal
from tests.e2e.simprocess import Cluster, sim_process

ROOT = Path(__file__).resolve().parents[2]
NAME = "workspace-phi-3-mini"
# The original README's last three commands, verbatim but for the question.
QUICK_START = """
kubectl get svc workspace-phi-3-mini
export CLUSTERIP=$(kubectl get svc workspace-phi-3-mini -o jsonpath="{.spec.clusterIPs[0]}")
kubectl run -it --rm --restart=Never curl --image=curlimages/curl -- curl -X POST http://$CLUSTERIP/chat -H "accept: application/json" -H "Content-Type: application/json" -d "{\\"prompt\\":\\"What is Kubernetes?\\"}"
"""  # noqa: E501


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with sim_process(tmp_path_factory.mktemp("quickstart")) as up:
        applied = up.kubectl("apply", "-f", str(ROOT / "examples/inference/kaito_workspace_phi_3.yaml"))
        assert applied.returncode == 0, applied.stderr
        ready = up.kubectl(
            "wait", "--for=condition=WorkspaceSucceeded", f"workspace/{NAME}", "--timeout=240s", timeout=300
        )
        assert ready.returncode == 0, (ready.stderr, up.kubectl("get", "workspace", NAME, "-o", "yaml").stdout)
        yield up


def test_the_original_quick_start_answers_verbatim(cluster: Cluster) -> None:
    rc, out = run_in_terminal(["bash", "-c", QUICK_START], cluster.env)
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP"]
    assert lines[1].split()[:2] == [NAME, "ClusterIP"]
    said = next(line for line in lines if line.startswith('{"Result"'))  # curl ends with no newline, as it does
    answer, _ = json.JSONDecoder().raw_decode(said)
    assert isinstance(answer["Result"], str) and answer["Result"]
    assert 'pod "curl" deleted' in out
    assert cluster.kubectl("get", "pod", "curl").returncode != 0  # --rm took it away


def test_port_forward_then_the_openai_client(cluster: Cluster) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    forward = subprocess.Popen(
        ["kubectl", "port-forward", f"svc/{NAME}", f"{port}:80"],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert forward.stdout is not None
        assert forward.stdout.readline().startswith(f"Forwarding from 127.0.0.1:{port} -> ")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=60, max_retries=0)
        model = client.models.list().data[0].id
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "What is Kubernetes?"}], max_tokens=16
        )
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.completion_tokens > 0
    finally:
        forward.terminate()
        forward.wait(timeout=30)


def test_exec_runs_beside_the_inference_server(cluster: Cluster) -> None:
    said = cluster.kubectl("exec", f"deploy/{NAME}", "--", "echo", "hi")
    assert (said.returncode, said.stdout) == (0, "hi\n"), said.stderr
    env = cluster.kubectl("exec", f"deploy/{NAME}", "--", "sh", "-c", "echo $HOSTNAME")
    pods = cluster.kubectl("get", "pods", "-l", f"kaito.sh/workspace={NAME}", "-o", "name")
    assert env.returncode == 0 and f"pod/{env.stdout.strip()}" in pods.stdout.split()


def test_explain_describes_the_workspace_fields(cluster: Cluster) -> None:
    explained = cluster.kubectl("explain", "workspace.inference.adapters")
    assert explained.returncode == 0, explained.stderr
    assert "FIELD: adapters <[]Object>" in explained.stdout
    assert "DESCRIPTION:" in explained.stdout and "adapter" in explained.stdout.split("DESCRIPTION:")[1]


def test_no_warning_follows_the_workspace_ready(cluster: Cluster) -> None:
    listed = cluster.kubectl("get", "events", "--field-selector", f"involvedObject.name={NAME}", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    events = sorted(json.loads(listed.stdout)["items"], key=_when)
    reasons = [(e["type"], e["reason"]) for e in events]
    assert ("Normal", "WorkspaceSucceededTrue") in reasons
    after = reasons[reasons.index(("Normal", "WorkspaceSucceededTrue")) :]
    assert [r for r in after if r[0] == "Warning"] == [], reasons


def _when(event: dict[str, object]) -> str:
    return str(event.get("eventTime") or event.get("lastTimestamp") or event.get("firstTimestamp") or "")
