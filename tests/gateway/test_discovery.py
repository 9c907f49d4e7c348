"""Replica discovery and the demand patch against the simulated API server."""

from __future__ import annotations

from typing import Any

from kaito.gateway.demand import api_demand
from kaito.gateway.discovery import ApiDiscovery
from kaito.gateway.names import ANNOTATION_DEMAND, INFERENCESET, LABEL_SET, WORKSPACE
from kaito.gateway.router import Replica
from kaito.runtime.client import Client
from kaito.runtime.clock import FakeClock
from kaito.runtime.kinds import SERVICE
from kaito_sim.demo.operator import install_crds


def workspace(name: str, namespace: str, *, inferenceset: str) -> dict[str, Any]:
    return {
        "apiVersion": WORKSPACE.api_version,
        "kind": WORKSPACE.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_SET: inferenceset}},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": name}}},
        "inference": {"preset": {"name": "phi-4-mini-instruct"}},
    }


async def make_child(client: Client, namespace: str, name: str, *, ready: bool, inferenceset: str = "chat") -> None:
    await client.create(WORKSPACE, workspace(name, namespace, inferenceset=inferenceset))
    condition = {
        "type": "WorkspaceSucceeded",
        "status": "True" if ready else "False",
        "reason": "workspaceSucceeded" if ready else "workspacePending",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    await client.patch_status(WORKSPACE, name, {"status": {"conditions": [condition]}}, namespace=namespace)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"port": 80, "targetPort": 5000}], "selector": {"app": name}},
    }
    await client.create(SERVICE, service)


async def cluster_ip(client: Client, namespace: str, name: str) -> str:
    return str((await client.get(SERVICE, name, namespace=namespace))["spec"]["clusterIP"])


async def test_ready_children_of_the_set_at_their_service_addresses(kclient: Client, namespace: str) -> None:
    await install_crds(kclient, "kaito-system")
    await make_child(kclient, namespace, "chat-aaaaa", ready=True)
    await make_child(kclient, namespace, "chat-bbbbb", ready=False)
    await make_child(kclient, namespace, "other-ccccc", ready=True, inferenceset="other")
    discovery = ApiDiscovery(kclient, namespace=namespace, inferenceset="chat", clock=FakeClock())

    ip = await cluster_ip(kclient, namespace, "chat-aaaaa")
    assert await discovery.poll() == [Replica("chat-aaaaa", f"http://{ip}:80")]

    ready = {
        "type": "InferenceReady",
        "status": "True",
        "reason": "x",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    await kclient.patch_status(WORKSPACE, "chat-bbbbb", {"status": {"conditions": [ready]}}, namespace=namespace)
    assert [r.name for r in await discovery.poll()] == ["chat-aaaaa", "chat-bbbbb"]

    await kclient.delete(WORKSPACE, "chat-aaaaa", namespace=namespace)
    assert [r.name for r in await discovery.poll()] == ["chat-bbbbb"]


async def test_demand_is_written_on_the_set(kclient: Client, namespace: str) -> None:
    await install_crds(kclient, "kaito-system")  # the InferenceSet CRD as the manager installs it
    body = {
        "apiVersion": INFERENCESET.api_version,
        "kind": INFERENCESET.kind,
        "metadata": {"name": "chat", "namespace": namespace},
        "spec": {
            "labelSelector": {"matchLabels": {"app": "chat"}},
            "template": {
                "resource": {"instanceType": "Standard_NC24ads_A100_v4"},
                "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
            },
        },
    }
    await kclient.create(INFERENCESET, body)
    clock = FakeClock()
    await api_demand(kclient, namespace=namespace, inferenceset="chat")(clock.wall())
    annotations = (await kclient.get(INFERENCESET, "chat", namespace=namespace))["metadata"]["annotations"]
    assert annotations[ANNOTATION_DEMAND] == "2026-01-01T00:00:00Z"
