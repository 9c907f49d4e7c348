"""kubernetes-asyncio against the simulated server: CRUD, conflicts, watches, bookmarks and 410 Expired."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.kaito_sim.manifests import CRD, GROUP, PLURAL, VERSION

MERGE: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
APPLY: dict[str, Any] = {"_content_type": "application/apply-patch+yaml"}


def reason(exc: ApiException) -> str:
    """The `reason` of the Status body a failed call carried."""
    return str(json.loads(exc.body or "{}")["reason"])


@pytest.fixture
async def cards(kubectl: Kubectl, api: client.ApiClient) -> client.CustomObjectsApi:
    await kubectl("apply", "-f", "-", stdin=CRD, namespaced=False)
    return client.CustomObjectsApi(api)


def body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelCard",
        "metadata": {"name": name},
        "spec": {"model": "m", **spec},
    }


async def test_create_get_conflict_and_replace(cards: client.CustomObjectsApi, namespace: str) -> None:
    created = await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body("a"))
    assert created["metadata"]["generation"] == 1 and created["spec"]["gpus"] == 1
    with pytest.raises(ApiException) as exc:
        await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body("a"))
    assert exc.value.status == 409 and reason(exc.value) == "AlreadyExists"
    fresh = await cards.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "a", {"spec": {"gpus": 2}}, **MERGE
    )
    stale = dict(created, spec={"model": "m", "gpus": 3})
    with pytest.raises(ApiException) as exc:
        await cards.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a", stale)
    assert exc.value.status == 409 and reason(exc.value) == "Conflict"
    fresh["spec"]["gpus"] = 3
    replaced = await cards.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a", fresh)
    assert replaced["spec"]["gpus"] == 3 and replaced["metadata"]["generation"] == 3


async def test_replace_without_resource_version_is_invalid(cards: client.CustomObjectsApi, namespace: str) -> None:
    await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body("rv"))
    with pytest.raises(ApiException) as exc:
        await cards.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "rv", body("rv", gpus=2))
    assert exc.value.status == 422 and "metadata.resourceVersion" in str(exc.value.body)


async def test_json_patch_default_content_type_needs_a_list(cards: client.CustomObjectsApi, namespace: str) -> None:
    await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body("jp"))
    with pytest.raises(ApiException) as exc:
        await cards.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "jp", {"spec": {"gpus": 2}})
    assert exc.value.status == 400
    patched = await cards.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "jp", [{"op": "replace", "path": "/spec/gpus", "value": 2}]
    )
    assert patched["spec"]["gpus"] == 2


async def test_server_side_apply_from_a_controller(cards: client.CustomObjectsApi, namespace: str) -> None:
    applied = await cards.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "ssa",
        body("ssa", gpus=2),
        field_manager="controller",
        force=True,
        **APPLY,
    )
    # The object is created, so the server answers 201, which this client's patch call maps to no body.
    assert applied is None
    live = await cards.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "ssa")
    assert live["spec"]["gpus"] == 2
    assert [(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]] == [("controller", "Apply")]
    again = await cards.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "ssa", body("ssa", gpus=3), field_manager="controller", **APPLY
    )
    assert again["spec"]["gpus"] == 3 and again["metadata"]["generation"] == 2


async def test_dry_run_and_generate_name(cards: client.CustomObjectsApi, namespace: str) -> None:
    dry = await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body("dry"), dry_run="All")
    assert dry["metadata"]["name"] == "dry"
    listed = await cards.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert listed["items"] == []
    gen = body("")
    gen["metadata"] = {"generateName": "card-"}
    made = await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, gen)
    assert made["metadata"]["name"].startswith("card-") and len(made["metadata"]["name"]) == 10


async def test_watch_from_resource_version_sees_every_change(cards: client.CustomObjectsApi, namespace: str) -> None:
    listed = await cards.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    rv = listed["metadata"]["resourceVersion"]
    await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body("w"))
    await cards.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"gpus": 2}}, **MERGE)
    await cards.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    seen: list[tuple[str, Any]] = []
    async with watch.Watch().stream(
        cards.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, resource_version=rv, timeout_seconds=1
    ) as stream:
        async for event in stream:
            seen.append((event["type"], event["object"]["spec"].get("gpus")))
    assert seen == [("ADDED", 1), ("MODIFIED", 2), ("DELETED", 2)]


async def test_label_selector_watch_turns_updates_into_added_and_deleted(
    cards: client.CustomObjectsApi, namespace: str
) -> None:
    rv = (await cards.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL))["metadata"]["resourceVersion"]
    await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body("sel"))
    for value in ("yes", "no"):
        await cards.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "sel", {"metadata": {"labels": {"pick": value}}}, **MERGE
        )
    types = []
    async with watch.Watch().stream(
        cards.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        label_selector="pick=yes",
        resource_version=rv,
        timeout_seconds=1,
    ) as stream:
        async for event in stream:
            types.append(event["type"])
    assert types == ["ADDED", "DELETED"]


async def test_bookmarks_carry_resource_version(cards: client.CustomObjectsApi, namespace: str) -> None:
    events = []
    async with watch.Watch().stream(
        cards.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        allow_watch_bookmarks=True,
        timeout_seconds=2,
    ) as stream:
        async for event in stream:
            events.append(event)
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) > 0


async def test_expired_watch_then_relist_succeeds(
    cards: client.CustomObjectsApi, namespace: str, sim: SimServer
) -> None:
    sim.set_history_size(5)
    rv = (await cards.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL))["metadata"]["resourceVersion"]
    for i in range(8):
        await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body(f"e{i}"))
    with pytest.raises(ApiException) as exc:
        async with watch.Watch().stream(
            cards.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            resource_version=rv,
            timeout_seconds=1,
        ) as stream:
            async for _ in stream:
                pass
    assert exc.value.status == 410
    relisted = await cards.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert len(relisted["items"]) == 8
    new_rv = relisted["metadata"]["resourceVersion"]
    await cards.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "e0")
    async with watch.Watch().stream(
        cards.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        resource_version=new_rv,
        timeout_seconds=1,
    ) as stream:
        seen = [(e["type"], e["object"]["metadata"]["name"]) async for e in stream]
    assert seen == [("DELETED", "e0")]


async def test_watch_delivers_live_events_quickly(cards: client.CustomObjectsApi, namespace: str) -> None:
    async def collect() -> list[str]:
        names = []
        async with watch.Watch().stream(
            cards.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, timeout_seconds=3
        ) as stream:
            async for event in stream:
                names.append(event["object"]["metadata"]["name"])
                if len(names) == 2:
                    break
        return names

    task = asyncio.create_task(collect())
    await asyncio.sleep(0.2)
    await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body("l1"))
    await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body("l2"))
    assert await asyncio.wait_for(task, 5) == ["l1", "l2"]


async def test_typed_core_clients(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg", labels={"a": "b"}), data={"k": "v"})
    await core.create_namespaced_config_map(namespace, cm)
    listed = await core.list_namespaced_config_map(namespace, label_selector="a=b")
    assert [c.metadata.name for c in listed.items] == ["cfg"]
    apps = client.AppsV1Api(api)
    deploy: Any = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
            },
        },
    }
    await apps.create_namespaced_deployment(namespace, deploy)
    patched = await apps.patch_namespaced_deployment("d", namespace, {"spec": {"replicas": 3}})
    assert patched.spec.replicas == 3
    pods = await core.list_namespaced_pod(namespace, field_selector="status.phase=Succeeded")
    assert pods.items == []  # the deployment's pods run, but none of them ever succeeds


async def test_events_are_one_object_in_both_event_apis(
    api: client.ApiClient, namespace: str, kubectl: Kubectl
) -> None:
    event: Any = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "kaito.sh/workspace",
        "reportingInstance": "kaito-0",
        "action": "Provision",
        "reason": "NodeClaimCreated",
        "type": "Normal",
        "note": "created node claim ws-abc",
        "regarding": {"kind": "Workspace", "name": "ws", "namespace": namespace},
    }
    await client.EventsV1Api(api).create_namespaced_event(namespace, event)
    core = await client.CoreV1Api(api).list_namespaced_event(namespace, field_selector="involvedObject.name=ws")
    assert [(e.message, e.involved_object.kind, e.reporting_component) for e in core.items] == [
        ("created node claim ws-abc", "Workspace", "kaito.sh/workspace")
    ]
    out = await kubectl("get", "events")
    assert "NodeClaimCreated" in out.stdout and "workspace/ws" in out.stdout


async def test_watch_ends_when_its_crd_is_deleted(
    cards: client.CustomObjectsApi, namespace: str, api: client.ApiClient
) -> None:
    await cards.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body("gone"))

    async def drain() -> list[str]:
        async with watch.Watch().stream(
            cards.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, timeout_seconds=30
        ) as stream:
            return [event["type"] async for event in stream]

    task = asyncio.create_task(drain())
    await asyncio.sleep(0.3)
    await client.ApiextensionsV1Api(api).delete_custom_resource_definition(f"{PLURAL}.{GROUP}")
    assert await asyncio.wait_for(task, 10) == ["ADDED", "DELETED"]
