"""The manager reads a pulling pod's progress from the last line of its puller's log, one GET through the API server."""

from __future__ import annotations

import json

from kaito.controllers.pullprogress import last_progress_line
from kaito.runtime.client import Client
from kaito.runtime.kinds import POD
from kaito_sim.server import SimServer


async def test_the_last_progress_line_is_read_and_any_other_last_line_is_no_news(
    sim: SimServer, kclient: Client, namespace: str
) -> None:
    # The sim serves logs of a pod's containers, not yet of its init containers: the puller stands as a container.
    containers = [{"name": name, "image": "kaito-runtime:0.1.0"} for name in ("model-puller", "server")]
    spec = {"containers": containers}
    await kclient.create(
        POD, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace}, "spec": spec}
    )
    assert await last_progress_line(kclient, namespace, "p") is None  # nothing printed yet
    for done in (0, 512, 1024):
        line = {"progress": {"bytes": done, "totalBytes": 4096, "bytesPerSecond": 256, "etaSeconds": 12}}
        sim.cluster.append_log(namespace, "p", "model-puller", json.dumps(line))
    sim.cluster.append_log(namespace, "p", "server", json.dumps({"progress": {"bytes": 1}}))  # another container's
    before = len(sim.requests)
    assert await last_progress_line(kclient, namespace, "p") == {
        "bytes": 1024,
        "totalBytes": 4096,
        "bytesPerSecond": 256,
        "etaSeconds": 12,
    }
    assert len(sim.requests) - before == 1
    sim.cluster.append_log(namespace, "p", "model-puller", '{"level":"WARNING","msg":"download broke off"} trailing')
    assert await last_progress_line(kclient, namespace, "p") is None
    assert await last_progress_line(kclient, namespace, "gone") is None
