"""Raw HTTP against the simulated server: TLS, authentication, discovery and Status bodies for bad requests."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yaml

from kaito_sim.server import SimServer
from tests.kaito_sim.manifests import CRD


@pytest.fixture
async def http(sim: SimServer) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cadata=sim.ca_pem.decode())
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with aiohttp.ClientSession(
        base_url=sim.url, headers=headers, connector=aiohttp.TCPConnector(ssl=context)
    ) as session:
        yield session


async def _status(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json(content_type=None)
    assert body["kind"] == "Status" and body["code"] == resp.status
    return body


async def test_tls_is_verified_and_token_required(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"{sim.url}/version")
    context = ssl.create_default_context(cadata=sim.ca_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        resp = await session.get(f"{sim.url}/api/v1/namespaces")
        assert resp.status == 401 and (await _status(resp))["reason"] == "Unauthorized"
        resp = await session.get(f"{sim.url}/api/v1/namespaces", headers={"Authorization": "Bearer wrong"})
        assert resp.status == 401
        version = await (await session.get(f"{sim.url}/version")).json()
        assert (version["major"], version["minor"]) == ("1", "32")


async def test_discovery_documents(http: aiohttp.ClientSession) -> None:
    aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    resp = await http.get("/apis", headers={"Accept": aggregated})
    assert resp.headers["Content-Type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    groups = {item["metadata"]["name"] for item in (await resp.json(content_type=None))["items"]}
    assert {"apps", "apiextensions.k8s.io", "coordination.k8s.io", "batch"} <= groups
    legacy = await (await http.get("/apis")).json()
    assert legacy["kind"] == "APIGroupList"
    core = await (await http.get("/api/v1")).json()
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/status", "pods/log", "services", "namespaces", "events"} <= names
    index = await (await http.get("/openapi/v3")).json()
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    doc = await (await http.get(url)).json()
    assert any("fieldValidation" in str(op) for op in doc["paths"].values())
    for path in ("/healthz", "/readyz", "/livez"):
        assert (await http.get(path)).status == 200


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "code", "reason"),
    [
        pytest.param(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "BadRequest",
            id="malformed-json",
        ),
        pytest.param("GET", "/apis/nope.example.com/v1/widgets", {}, 404, "NotFound", id="unknown-resource"),
        pytest.param("GET", "/api/v1/namespaces/default/configmaps/missing", {}, 404, "NotFound", id="missing-object"),
        pytest.param(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/missing",
            {"data": b"{}", "headers": {"Content-Type": "text/plain"}},
            415,
            "UnsupportedMediaType",
            id="wrong-patch-type",
        ),
        pytest.param(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            {"data": b"{}", "headers": {"Content-Type": "text/csv"}},
            415,
            "UnsupportedMediaType",
            id="wrong-body-type",
        ),
        pytest.param(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            {"json": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}},
            422,
            "Invalid",
            id="missing-name",
        ),
        pytest.param(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            {"json": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}},
            400,
            "BadRequest",
            id="kind-mismatch",
        ),
        pytest.param(
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc",
            {},
            400,
            "BadRequest",
            id="bad-resource-version",
        ),
        pytest.param("GET", "/api/v1/pods?labelSelector=a%20in%20(b", {}, 400, "BadRequest", id="bad-selector"),
        pytest.param("GET", "/api/v1/pods?limit=abc", {}, 400, "BadRequest", id="bad-limit"),
        pytest.param(
            "DELETE", "/api/v1/namespaces/default/pods/p/status", {}, 405, "MethodNotAllowed", id="delete-subresource"
        ),
        pytest.param(
            "PUT", "/api/v1/namespaces/default/pods/p/log", {"json": {}}, 405, "MethodNotAllowed", id="put-log"
        ),
    ],
)
async def test_bad_requests_get_status_bodies(
    http: aiohttp.ClientSession, method: str, path: str, kwargs: dict[str, Any], code: int, reason: str
) -> None:
    resp = await http.request(method, path, **kwargs)
    assert resp.status == code
    assert (await _status(resp))["reason"] == reason


async def test_object_in_body_must_match_url_namespace(http: aiohttp.ClientSession) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "kube-system"}}
    resp = await http.post("/api/v1/namespaces/default/configmaps", json=body)
    assert resp.status == 400
    assert "does not match the namespace" in (await _status(resp))["message"]


async def test_strategic_merge_patch_on_custom_resource_is_415(http: aiohttp.ClientSession) -> None:
    crd = yaml.safe_load(CRD)
    assert (await http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)).status == 201
    card = {"apiVersion": "demo.kaito.sh/v1", "kind": "ModelCard", "metadata": {"name": "c"}, "spec": {"model": "m"}}
    path = "/apis/demo.kaito.sh/v1/namespaces/default/modelcards"
    assert (await http.post(path, json=card)).status == 201
    resp = await http.patch(
        f"{path}/c", data=b'{"spec":{"gpus":2}}', headers={"Content-Type": "application/strategic-merge-patch+json"}
    )
    assert resp.status == 415
    assert (await _status(resp))["reason"] == "UnsupportedMediaType"
    resp = await http.patch(
        f"{path}/c", data=b'{"spec":{"gpus":2}}', headers={"Content-Type": "application/json-patch+json"}
    )
    assert resp.status == 400 and (await _status(resp))["reason"] == "BadRequest"
