"""`Client` against the simulated API server (CRUD, patches, apply, watch, errors, config) and a scripted server.

The scripted server answers with what a test queues (429s, 503s, a watch stream) and records every
request, so retries, rate limiting, metrics and the exact wire format can be checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from kubernetes_asyncio import client as k8s

from kaito.runtime import errors
from kaito.runtime.client import Client, PatchType, WatchEvent
from kaito.runtime.clock import FakeClock
from kaito.runtime.kinds import CONFIG_MAP, DEPLOYMENT, NAMESPACE
from kaito.runtime.metrics import RuntimeMetrics
from kaito.runtime.objects import Obj
from kaito.runtime.transport import parse_retry_after
from kaito_sim.server import SimServer

T = TypeVar("T")


def config_map(name: str, namespace: str, labels: dict[str, str] | None = None, **data: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "data": data,
    }


def deployment(name: str, namespace: str) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1"}]},
            },
        },
    }


def names(items: list[Obj]) -> list[str]:
    return sorted(item["metadata"]["name"] for item in items)


def managers(obj: Obj) -> list[tuple[str, str]]:
    return [(entry["manager"], entry["operation"]) for entry in obj["metadata"].get("managedFields") or []]


@pytest.fixture
def kc(api: k8s.ApiClient) -> Client:
    return Client(api)


# ----- CRUD, lists and patches against the simulated server


async def test_crud_round_trip(kc: Client, namespace: str) -> None:
    created = await kc.create(CONFIG_MAP, config_map("a", namespace, k="1"), field_manager="crud")
    assert created["metadata"]["uid"] and managers(created) == [("crud", "Update")]
    assert await kc.get(CONFIG_MAP, "a", namespace=namespace) == created
    created["data"]["k"] = "2"
    updated = await kc.update(CONFIG_MAP, created)
    assert updated["data"] == {"k": "2"}
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert names((await kc.list(CONFIG_MAP, namespace=namespace)).items) == ["a"]
    deleted = await kc.delete(CONFIG_MAP, "a", namespace=namespace)
    assert deleted["metadata"]["name"] == "a" or deleted["kind"] == "Status"
    with pytest.raises(errors.NotFound):
        await kc.get(CONFIG_MAP, "a", namespace=namespace)


async def test_dry_run_writes_change_nothing(kc: Client, namespace: str) -> None:
    dry = await kc.create(CONFIG_MAP, config_map("dry", namespace), dry_run=True)
    assert dry["metadata"]["name"] == "dry"
    assert (await kc.list(CONFIG_MAP, namespace=namespace)).items == []
    live = await kc.create(CONFIG_MAP, config_map("dry", namespace, k="1"))
    live["data"]["k"] = "2"
    await kc.update(CONFIG_MAP, live, dry_run=True)
    await kc.patch(CONFIG_MAP, "dry", {"data": {"k": "3"}}, namespace=namespace, dry_run=True)
    await kc.delete(CONFIG_MAP, "dry", namespace=namespace, dry_run=True)
    assert (await kc.get(CONFIG_MAP, "dry", namespace=namespace))["data"] == {"k": "1"}


async def test_cluster_scoped_kinds(kc: Client, namespace: str) -> None:
    assert (await kc.get(NAMESPACE, namespace))["metadata"]["name"] == namespace
    made = await kc.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{namespace}-b"}})
    assert made["metadata"]["name"] == f"{namespace}-b"
    assert f"{namespace}-b" in names((await kc.list(NAMESPACE)).items)


async def test_list_with_label_and_field_selectors(kc: Client, namespace: str) -> None:
    for name, app in (("a", "x"), ("b", "y"), ("c", "x")):
        await kc.create(CONFIG_MAP, config_map(name, namespace, labels={"app": app}))
    by_label = await kc.list(CONFIG_MAP, namespace=namespace, label_selector="app=x")
    assert names(by_label.items) == ["a", "c"] and by_label.resource_version
    assert all(item["kind"] == "ConfigMap" and item["apiVersion"] == "v1" for item in by_label.items)
    by_field = await kc.list(CONFIG_MAP, namespace=namespace, field_selector="metadata.name=b")
    assert names(by_field.items) == ["b"]
    both = await kc.list(CONFIG_MAP, namespace=namespace, label_selector="app=x", field_selector="metadata.name!=a")
    assert names(both.items) == ["c"]


async def test_list_pages_and_list_all(kc: Client, namespace: str, sim: SimServer) -> None:
    for i in range(5):
        await kc.create(CONFIG_MAP, config_map(f"cm-{i}", namespace))
    first = await kc.list(CONFIG_MAP, namespace=namespace, limit=2)
    assert len(first.items) == 2 and first.continue_token
    second = await kc.list(CONFIG_MAP, namespace=namespace, limit=2, continue_token=first.continue_token)
    third = await kc.list(CONFIG_MAP, namespace=namespace, limit=2, continue_token=second.continue_token)
    assert len(third.items) == 1 and third.continue_token == ""
    assert names(first.items + second.items + third.items) == [f"cm-{i}" for i in range(5)]
    before = len(sim.requests)
    everything = await kc.list_all(CONFIG_MAP, namespace=namespace, page_size=2)
    assert names(everything.items) == [f"cm-{i}" for i in range(5)]
    assert everything.resource_version and everything.continue_token == ""
    assert [r.query.get("limit") for r in sim.requests[before:]] == ["2", "2", "2"]


async def test_merge_json_and_strategic_patches(kc: Client, namespace: str) -> None:
    await kc.create(CONFIG_MAP, config_map("p", namespace, a="1", b="2"))
    merged = await kc.patch(CONFIG_MAP, "p", {"data": {"a": None, "c": "3"}}, namespace=namespace)
    assert merged["data"] == {"b": "2", "c": "3"}
    ops = [{"op": "replace", "path": "/data/b", "value": "20"}, {"op": "add", "path": "/data/d", "value": "4"}]
    patched = await kc.patch(CONFIG_MAP, "p", ops, namespace=namespace, patch_type=PatchType.JSON)
    assert patched["data"] == {"b": "20", "c": "3", "d": "4"}
    with pytest.raises(errors.BadRequest):
        await kc.patch(CONFIG_MAP, "p", {"data": {}}, namespace=namespace, patch_type=PatchType.JSON)

    await kc.create(DEPLOYMENT, deployment("web", namespace))
    sidecar = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1"}]}}}}
    strategic = await kc.patch(DEPLOYMENT, "web", sidecar, namespace=namespace, patch_type=PatchType.STRATEGIC)
    assert [c["name"] for c in strategic["spec"]["template"]["spec"]["containers"]] == ["main", "sidecar"]
    replaced = await kc.patch(DEPLOYMENT, "web", sidecar, namespace=namespace, patch_type=PatchType.MERGE)
    assert [c["name"] for c in replaced["spec"]["template"]["spec"]["containers"]] == ["sidecar"]


async def test_server_side_apply_owns_fields_and_conflicts(kc: Client, namespace: str) -> None:
    intent = {"metadata": {"name": "ssa", "namespace": namespace}, "data": {"k": "1"}}
    created = await kc.apply(CONFIG_MAP, intent, field_manager="alpha")
    assert created["data"] == {"k": "1"} and managers(created) == [("alpha", "Apply")]
    assert "f:k" in created["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]
    rival = {"metadata": {"name": "ssa", "namespace": namespace}, "data": {"k": "2"}}
    with pytest.raises(errors.Conflict) as conflict:
        await kc.apply(CONFIG_MAP, rival, field_manager="beta")
    assert conflict.value.reason == "Conflict" and "data.k" in conflict.value.causes[0]["field"]
    forced = await kc.apply(CONFIG_MAP, rival, field_manager="beta", force=True)
    assert forced["data"] == {"k": "2"}
    owners = {e["manager"]: e.get("fieldsV1", {}) for e in forced["metadata"]["managedFields"]}
    assert "f:k" in owners["beta"]["f:data"] and "f:k" not in owners.get("alpha", {}).get("f:data", {})


async def test_status_subresource(kc: Client, namespace: str) -> None:
    created = await kc.create(DEPLOYMENT, deployment("st", namespace))
    patched = await kc.patch_status(DEPLOYMENT, "st", {"status": {"readyReplicas": 1}}, namespace=namespace)
    assert patched["status"]["readyReplicas"] == 1
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]
    assert patched["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    patched["status"]["availableReplicas"] = 1
    patched["spec"]["replicas"] = 5  # the status endpoint must ignore this
    updated = await kc.update_status(DEPLOYMENT, patched)
    assert updated["status"]["availableReplicas"] == 1 and updated["spec"]["replicas"] == 1
    assert updated["metadata"]["generation"] == created["metadata"]["generation"]


async def test_delete_options(kc: Client, namespace: str) -> None:
    live = await kc.create(CONFIG_MAP, config_map("d", namespace))
    with pytest.raises(errors.Conflict):
        await kc.delete(CONFIG_MAP, "d", namespace=namespace, preconditions_uid="not-the-uid")
    with pytest.raises(errors.Conflict):
        await kc.delete(CONFIG_MAP, "d", namespace=namespace, preconditions_resource_version="1")
    await kc.get(CONFIG_MAP, "d", namespace=namespace)
    gone = await kc.delete(
        CONFIG_MAP,
        "d",
        namespace=namespace,
        propagation_policy="Foreground",
        preconditions_uid=live["metadata"]["uid"],
        grace_period_seconds=0,
    )
    assert "foregroundDeletion" in gone["metadata"]["finalizers"] and gone["metadata"]["deletionTimestamp"]
    since = gone["metadata"]["resourceVersion"]
    stream = kc.watch(CONFIG_MAP, namespace=namespace, resource_version=since, field_selector="metadata.name=d")
    async with asyncio.timeout(10), contextlib.aclosing(stream):
        async for event in stream:  # the garbage collector finishes a foreground delete without dependents
            if event.type == "DELETED":
                break
    assert await errors.ignore_not_found(kc.get(CONFIG_MAP, "d", namespace=namespace)) is None


async def test_errors_are_mapped(kc: Client, namespace: str) -> None:
    with pytest.raises(errors.NotFound) as missing:
        await kc.get(CONFIG_MAP, "nope", namespace=namespace)
    assert missing.value.code == 404 and missing.value.reason == "NotFound"
    assert '"nope" not found' in missing.value.message
    first = await kc.create(CONFIG_MAP, config_map("twice", namespace))
    with pytest.raises(errors.AlreadyExists) as again:
        await kc.create(CONFIG_MAP, config_map("twice", namespace))
    assert again.value.code == 409
    await kc.patch(CONFIG_MAP, "twice", {"data": {"k": "new"}}, namespace=namespace)
    with pytest.raises(errors.Conflict):
        await kc.update(CONFIG_MAP, first)
    nameless = config_map("", namespace)
    del nameless["metadata"]["name"]
    with pytest.raises(errors.Invalid) as invalid:
        await kc.create(CONFIG_MAP, nameless)
    assert invalid.value.code == 422 and [c["field"] for c in invalid.value.causes] == ["metadata.name"]


async def test_ignore_not_found(kc: Client, namespace: str) -> None:
    assert await errors.ignore_not_found(kc.get(CONFIG_MAP, "nope", namespace=namespace)) is None
    assert await errors.ignore_not_found(kc.delete(CONFIG_MAP, "nope", namespace=namespace)) is None
    await kc.create(CONFIG_MAP, config_map("here", namespace))
    found = await errors.ignore_not_found(kc.get(CONFIG_MAP, "here", namespace=namespace))
    assert found is not None and found["metadata"]["name"] == "here"


async def test_client_side_argument_errors(kc: Client, namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        await kc.create(CONFIG_MAP, config_map("x", ""))
    with pytest.raises(ValueError, match="name"):
        await kc.update(CONFIG_MAP, {"metadata": {"namespace": namespace}})
    with pytest.raises(ValueError, match="field_manager"):
        await kc.patch(CONFIG_MAP, "x", {}, namespace=namespace, patch_type=PatchType.APPLY)


# ----- watch against the simulated server


async def test_watch_from_list_version_sees_changes_in_order(kc: Client, namespace: str) -> None:
    start = (await kc.list(CONFIG_MAP, namespace=namespace)).resource_version
    await kc.create(CONFIG_MAP, config_map("w", namespace))
    await kc.patch(CONFIG_MAP, "w", {"data": {"k": "1"}}, namespace=namespace)
    await kc.delete(CONFIG_MAP, "w", namespace=namespace)
    seen: list[tuple[str, str]] = []
    versions: list[int] = []
    async with (
        asyncio.timeout(10),
        contextlib.aclosing(
            kc.watch(CONFIG_MAP, namespace=namespace, resource_version=start, timeout_seconds=30)
        ) as stream,
    ):
        async for event in stream:
            if event.type == "BOOKMARK":
                continue
            seen.append((event.type, event.object["metadata"]["name"]))
            versions.append(int(event.object["metadata"]["resourceVersion"]))
            if event.type == "DELETED":  # history replayed; now a live change
                await kc.create(CONFIG_MAP, config_map("w2", namespace))
            if len(seen) == 4:
                break
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w"), ("ADDED", "w2")]
    assert versions == sorted(versions) and len(set(versions)) == 4


async def test_watch_sends_bookmarks_when_asked(kc: Client, namespace: str) -> None:
    start = (await kc.list(CONFIG_MAP, namespace=namespace)).resource_version
    async with (
        asyncio.timeout(10),
        contextlib.aclosing(kc.watch(CONFIG_MAP, namespace=namespace, resource_version=start)) as stream,
    ):
        event = await anext(stream)
    assert event.type == "BOOKMARK" and int(event.object["metadata"]["resourceVersion"]) >= int(start)


async def test_watch_from_expired_version_raises_gone(kc: Client, namespace: str, sim: SimServer) -> None:
    sim.set_history_size(2)
    start = (await kc.list(CONFIG_MAP, namespace=namespace)).resource_version
    for i in range(5):
        await kc.create(CONFIG_MAP, config_map(f"old-{i}", namespace))
    async with (
        asyncio.timeout(10),
        contextlib.aclosing(
            kc.watch(CONFIG_MAP, namespace=namespace, resource_version=start, allow_bookmarks=False)
        ) as stream,
    ):
        with pytest.raises(errors.Gone) as gone:
            await anext(stream)
    assert gone.value.code == 410


# ----- configuration


async def test_from_config_with_a_kubeconfig_path(sim: SimServer, namespace: str) -> None:
    async with await Client.from_config(kubeconfig=str(sim.kubeconfig_path), qps=0) as kc:
        assert kc.host == f"127.0.0.1:{sim.port}"
        assert (await kc.get(NAMESPACE, namespace))["metadata"]["name"] == namespace
    assert kc.api_client.rest_client.pool_manager.closed


async def test_from_config_prefers_kubeconfig_env_over_in_cluster(
    sim: SimServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(sim.kubeconfig_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "203.0.113.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    async with await Client.from_config() as kc:
        assert (await kc.get(NAMESPACE, namespace))["metadata"]["name"] == namespace


@pytest.mark.parametrize("good_token", [pytest.param(True, id="token"), pytest.param(False, id="wrong-token")])
async def test_from_config_in_cluster(
    sim: SimServer, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, good_token: bool
) -> None:
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text(sim.token if good_token else "not-a-token")
    ca.write_bytes(sim.ca_pem)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(sim.port))
    async with await Client.from_config(incluster_token_path=token, incluster_ca_path=ca) as kc:
        if good_token:
            assert (await kc.get(NAMESPACE, namespace))["metadata"]["name"] == namespace
        else:
            with pytest.raises(errors.Unauthorized):
                await kc.get(NAMESPACE, namespace)


async def test_close_leaves_a_borrowed_api_client_open(api: k8s.ApiClient, namespace: str) -> None:
    async with Client(api):
        pass
    assert (await Client(api).get(NAMESPACE, namespace))["metadata"]["name"] == namespace


# ----- retries, rate limiting, metrics and the wire format, against a scripted server


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int
    body: Any
    retry_after: str | None = None


def status_body(code: int, reason: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "code": code,
        "message": reason,
    }


OK = Reply(200, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}})


class ScriptedServer:
    """Answers with the queued replies in order (the last one repeats) and records every request."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [OK]
        self.seen: list[Seen] = []
        self.watch_events: list[Obj] | None = None
        self.watch_closed = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, dict(request.query), dict(request.headers), body))
        if self.watch_events is not None and request.query.get("watch") == "true":
            return await self._stream(request, self.watch_events)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else {}
        return web.json_response(reply.body, status=reply.status, headers=headers)

    async def _stream(self, request: web.Request, events: list[Obj]) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for event in events:
                await response.write(json.dumps(event).encode() + b"\n")
            await asyncio.Event().wait()  # hold the stream open until the client goes away
        finally:
            self.watch_closed.set()
        return response


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


def api_client_for(url: str) -> k8s.ApiClient:
    cfg = k8s.Configuration(host=url, api_key={"BearerToken": "secret-token"}, api_key_prefix={"BearerToken": "Bearer"})
    return k8s.ApiClient(cfg)


@pytest.fixture
async def scripted_api(scripted: ScriptedServer) -> AsyncIterator[k8s.ApiClient]:
    async with api_client_for(scripted.url) as api_client:
        yield api_client


async def drive(clock: FakeClock, call: Awaitable[T]) -> T:
    """Run `call` to the end, jumping virtual time to each sleep's deadline while real I/O proceeds."""
    task = asyncio.ensure_future(call)
    give_up = time.monotonic() + 10
    try:
        while not task.done():
            assert time.monotonic() < give_up, "the call never finished"
            deadline = clock.next_deadline()
            if deadline is not None:
                clock.advance(deadline - clock.now())
            await asyncio.sleep(0.002)
        return task.result()
    finally:
        task.cancel()


def sample(kc: Client, name: str, **labels: str) -> float:
    """A sample from `kc`'s own metrics, which no other test records into."""
    return kc.metrics.registry.get_sample_value(name, labels) or 0.0


GetOrCreate = Callable[[Client], Awaitable[Obj]]
GET: GetOrCreate = lambda c: c.get(CONFIG_MAP, "x", namespace="ns")  # noqa: E731
POST: GetOrCreate = lambda c: c.create(CONFIG_MAP, config_map("x", "ns"))  # noqa: E731
VERBS = [pytest.param(GET, "GET", id="get"), pytest.param(POST, "POST", id="create")]


@pytest.mark.parametrize(("call", "method"), VERBS)
async def test_retry_after_is_honoured_for_every_verb(
    scripted: ScriptedServer, scripted_api: k8s.ApiClient, call: GetOrCreate, method: str
) -> None:
    scripted.replies = [Reply(429, status_body(429, "TooManyRequests"), "1")] * 2 + [OK]
    clock = FakeClock()
    kc = Client(scripted_api, clock=clock, metrics=RuntimeMetrics())
    result = await drive(clock, call(kc))
    assert result["metadata"]["name"] == "x"
    assert clock.now() - 1000.0 == pytest.approx(2.0)
    assert [s.method for s in scripted.seen] == [method] * 3
    assert sample(kc, "rest_client_requests_total", code="429", method=method, host=kc.host) == 2
    assert sample(kc, "rest_client_requests_total", code="200", method=method, host=kc.host) == 1
    assert sample(kc, "rest_client_request_duration_seconds_count", verb=method, host=kc.host) == 3


async def test_retry_after_wait_is_capped(scripted: ScriptedServer, scripted_api: k8s.ApiClient) -> None:
    scripted.replies = [Reply(503, status_body(503, "ServiceUnavailable"), "3600"), OK]
    clock = FakeClock()
    await drive(clock, GET(Client(scripted_api, clock=clock)))
    assert clock.now() - 1000.0 == pytest.approx(10.0)


@pytest.mark.parametrize(("call", "method"), VERBS)
async def test_503_without_retry_after_is_retried_only_for_reads(
    scripted: ScriptedServer, scripted_api: k8s.ApiClient, call: GetOrCreate, method: str
) -> None:
    scripted.replies = [Reply(503, status_body(503, "ServiceUnavailable")), OK]
    clock = FakeClock()
    kc = Client(scripted_api, clock=clock)
    if method == "GET":
        await drive(clock, call(kc))
        assert len(scripted.seen) == 2 and 0.1 <= clock.now() - 1000.0 <= 0.15
    else:
        with pytest.raises(errors.ServerError) as failed:
            await drive(clock, call(kc))
        assert failed.value.code == 503 and len(scripted.seen) == 1


async def test_gives_up_after_max_retries(scripted: ScriptedServer, scripted_api: k8s.ApiClient) -> None:
    scripted.replies = [Reply(429, status_body(429, "TooManyRequests"), "1")]
    clock = FakeClock()
    with pytest.raises(errors.TooManyRequests) as throttled:
        await drive(clock, GET(Client(scripted_api, clock=clock, max_retries=2)))
    assert throttled.value.retry_after == 1.0 and len(scripted.seen) == 3
    assert clock.now() - 1000.0 == pytest.approx(2.0)


async def test_client_errors_are_not_retried(scripted: ScriptedServer, scripted_api: k8s.ApiClient) -> None:
    scripted.replies = [Reply(403, status_body(403, "Forbidden"), "1")]
    with pytest.raises(errors.Forbidden):
        await GET(Client(scripted_api, clock=FakeClock()))
    assert len(scripted.seen) == 1


@pytest.mark.parametrize(("call", "method", "attempts"), [(GET, "GET", 4), (POST, "POST", 1)], ids=["get", "create"])
async def test_connection_errors_are_retried_only_for_reads(call: GetOrCreate, method: str, attempts: int) -> None:
    with socket.socket() as sock:  # a port nobody listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clock = FakeClock()
    async with api_client_for(f"http://127.0.0.1:{port}") as api_client:
        kc = Client(api_client, clock=clock, max_retries=3, metrics=RuntimeMetrics())
        with pytest.raises(aiohttp.ClientConnectionError):
            await drive(clock, call(kc))
    assert sample(kc, "rest_client_requests_total", code="<error>", method=method, host=kc.host) == attempts


async def test_rate_limit_spaces_requests(scripted: ScriptedServer, scripted_api: k8s.ApiClient) -> None:
    clock = FakeClock()
    kc = Client(scripted_api, qps=5, burst=1, clock=clock, metrics=RuntimeMetrics())

    async def three() -> None:
        for _ in range(3):
            await GET(kc)

    await drive(clock, three())
    assert clock.now() - 1000.0 == pytest.approx(0.4) and len(scripted.seen) == 3
    assert sample(kc, "rest_client_rate_limiter_duration_seconds_sum", verb="GET", host=kc.host) == pytest.approx(0.4)
    assert sample(kc, "rest_client_rate_limiter_duration_seconds_count", verb="GET", host=kc.host) == 3


WireCall = Callable[[Client], Awaitable[Any]]
WIRE = [
    pytest.param(
        lambda c: c.apply(CONFIG_MAP, {"metadata": {"name": "x", "namespace": "ns"}}, field_manager="m", force=True),
        ("PATCH", "/api/v1/namespaces/ns/configmaps/x", {"fieldManager": "m", "force": "true"}),
        "application/apply-patch+yaml",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}},
        id="apply",
    ),
    pytest.param(
        lambda c: c.create(CONFIG_MAP, config_map("x", "ns"), field_manager="m", dry_run=True),
        ("POST", "/api/v1/namespaces/ns/configmaps", {"fieldManager": "m", "dryRun": "All"}),
        "application/json",
        config_map("x", "ns"),
        id="create",
    ),
    pytest.param(
        lambda c: c.update_status(DEPLOYMENT, {"metadata": {"name": "d", "namespace": "ns"}}),
        ("PUT", "/apis/apps/v1/namespaces/ns/deployments/d/status", {}),
        "application/json",
        {"metadata": {"name": "d", "namespace": "ns"}},
        id="update-status",
    ),
    pytest.param(
        lambda c: c.patch(CONFIG_MAP, "x", {"data": {}}, namespace="ns", patch_type=PatchType.STRATEGIC, force=False),
        ("PATCH", "/api/v1/namespaces/ns/configmaps/x", {"force": "false"}),
        "application/strategic-merge-patch+json",
        {"data": {}},
        id="strategic-patch",
    ),
    pytest.param(
        lambda c: c.delete(
            CONFIG_MAP,
            "x",
            namespace="ns",
            propagation_policy="Foreground",
            preconditions_uid="u1",
            preconditions_resource_version="7",
            grace_period_seconds=0,
            dry_run=True,
        ),
        ("DELETE", "/api/v1/namespaces/ns/configmaps/x", {}),
        "application/json",
        {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Foreground",
            "preconditions": {"uid": "u1", "resourceVersion": "7"},
            "gracePeriodSeconds": 0,
            "dryRun": ["All"],
        },
        id="delete",
    ),
    pytest.param(
        lambda c: c.list(
            NAMESPACE, label_selector="a=b", field_selector="x!=y", limit=3, continue_token="tok", resource_version="9"
        ),
        (
            "GET",
            "/api/v1/namespaces",
            {"labelSelector": "a=b", "fieldSelector": "x!=y", "limit": "3", "continue": "tok", "resourceVersion": "9"},
        ),
        "application/json",
        None,
        id="list",
    ),
]


@pytest.mark.parametrize(("call", "request_line", "content_type", "body"), WIRE)
async def test_wire_format(
    scripted: ScriptedServer,
    scripted_api: k8s.ApiClient,
    call: WireCall,
    request_line: tuple[str, str, dict[str, str]],
    content_type: str,
    body: Any,
) -> None:
    await call(Client(scripted_api, user_agent="tester/1"))
    [seen] = scripted.seen
    assert (seen.method, seen.path, seen.query) == request_line
    assert seen.headers["Content-Type"] == content_type and seen.headers["Accept"] == "application/json"
    assert seen.headers["User-Agent"] == "tester/1" and seen.headers["Authorization"] == "Bearer secret-token"
    assert (json.loads(seen.body) if seen.body else None) == body


async def test_watch_stream_is_released_when_closed(scripted: ScriptedServer, scripted_api: k8s.ApiClient) -> None:
    added = {"type": "ADDED", "object": config_map("x", "ns")}
    scripted.watch_events = [added, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "5"}}}]
    stream = Client(scripted_api).watch(CONFIG_MAP, namespace="ns", resource_version="3", timeout_seconds=60)
    async with asyncio.timeout(5):
        assert await anext(stream) == WatchEvent("ADDED", config_map("x", "ns"))
        assert (await anext(stream)).type == "BOOKMARK"
        await stream.aclose()
        await scripted.watch_closed.wait()
    query = scripted.seen[0].query
    assert query == {"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": "3", "timeoutSeconds": "60"}


async def test_watch_error_event_raises_its_status(scripted: ScriptedServer, scripted_api: k8s.ApiClient) -> None:
    scripted.watch_events = [{"type": "ERROR", "object": status_body(410, "Expired")}]
    async with asyncio.timeout(5), contextlib.aclosing(Client(scripted_api).watch(CONFIG_MAP)) as stream:
        with pytest.raises(errors.Gone) as gone:
            await anext(stream)
    assert gone.value.reason == "Expired"


async def test_watch_refused_at_open_raises(scripted: ScriptedServer, scripted_api: k8s.ApiClient) -> None:
    scripted.replies = [Reply(403, status_body(403, "Forbidden"))]
    async with asyncio.timeout(5), contextlib.aclosing(Client(scripted_api).watch(CONFIG_MAP)) as stream:
        with pytest.raises(errors.Forbidden):
            await anext(stream)


async def test_list_fills_in_item_kinds_and_reads_list_metadata(
    scripted: ScriptedServer, scripted_api: k8s.ApiClient
) -> None:
    page = {
        "kind": "DeploymentList",
        "metadata": {"resourceVersion": "7", "continue": "c"},
        "items": [{"metadata": {}}],
    }
    scripted.replies = [Reply(200, page)]
    listed = await Client(scripted_api).list(DEPLOYMENT)
    assert listed.items == [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}}]
    assert (listed.resource_version, listed.continue_token) == ("7", "c")


NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("3", 3.0, id="seconds"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("Thu, 01 Jan 2026 12:00:30 GMT", 30.0, id="http-date"),
        pytest.param("Thu, 01 Jan 2026 11:00:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param("-5", 0.0, id="negative"),
        pytest.param("soon", None, id="unreadable"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds
