"""An autoscaled InferenceSet on `kaito sim --with-manager --process-pods`: idle, it gives back its GPU node; a
request at zero is held by the real `kaito gateway`, a GPU node is provisioned, and the request is answered.
"""

from __future__ import annotations

from collections.abc import Iterator

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
