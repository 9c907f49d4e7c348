"""The webhook server, registered in the simulated cluster, gates what kubectl applies, and rotates its certificate."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from kubernetes_asyncio import client as k8s

from kaito.api.fielderrors import FieldError
from kaito.runtime.client import Client
from kaito.webhook.certs import CertBundle, generate_serving_cert, write_pair
from kaito.webhook.registration import VALIDATING_WEBHOOK_CONFIGURATION, ensure_validating_webhook
from kaito.webhook.server import (
    REVIEW_API_VERSION,
    AdmissionRequest,
    Verdict,
    WebhookServer,
    parse_review,
    review_response,
)
from tests.conftest import Kubectl

CONFIG_NAME = "kaito-test-webhook"
HOOK_NAME = "configmaps.test.kaito.sh"
CONFIGMAP_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["configmaps"],
        "scope": "Namespaced",
    }
]


class ToyValidator:
    """Refuses ConfigMaps holding key `forbidden`, warns about `deprecated`, crashes on `boom`."""

    def __init__(self) -> None:
        self.seen: list[AdmissionRequest] = []

    async def __call__(self, request: AdmissionRequest) -> Verdict:
        self.seen.append(request)
        data = (request.object or {}).get("data") or {}
        if "boom" in data:
            raise RuntimeError("validator exploded")
        errors = (FieldError("data.forbidden", "not allowed; remove the key"),) if "forbidden" in data else ()
        warnings = ("data.deprecated is ignored and will be removed",) if "deprecated" in data else ()
        return Verdict(errors=errors, warnings=warnings)


class Served:
    """A running WebhookServer, its validator and the CA clients must trust."""

    def __init__(self, server: WebhookServer, validator: ToyValidator, bundle: CertBundle, cert_dir: Path) -> None:
        self.server = server
        self.validator = validator
        self.bundle = bundle
        self.cert_dir = cert_dir

    def session(self, ca_pem: bytes | None = None) -> aiohttp.ClientSession:
        context = ssl.create_default_context(cadata=(ca_pem or self.bundle.ca_pem).decode())
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


@asynccontextmanager
async def _serve(cert_dir: Path, *, reload_interval: float) -> AsyncIterator[Served]:
    bundle = generate_serving_cert([], ["127.0.0.1"])
    cert_file, key_file = write_pair(cert_dir, bundle.cert_pem, bundle.key_pem)
    validator = ToyValidator()
    server = WebhookServer(
        {"/validate": validator},
        address="127.0.0.1:0",
        cert_file=cert_file,
        key_file=key_file,
        reload_interval=reload_interval,
    )
    await server.start()
    try:
        yield Served(server, validator, bundle, cert_dir)
    finally:
        await server.stop()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with _serve(tmp_path / "certs", reload_interval=0.05) as served:
        yield served


@pytest.fixture
async def kclient(api: k8s.ApiClient) -> Client:
    return Client(api, qps=0, burst=0)


async def _register(kclient: Client, served: Served, namespace: str, *, ca_pem: bytes | None = None) -> dict[str, Any]:
    return await ensure_validating_webhook(
        kclient,
        name=CONFIG_NAME,
        webhook_name=HOOK_NAME,
        ca_pem=ca_pem or served.bundle.ca_pem,
        url=served.server.url("/validate"),
        rules=CONFIGMAP_RULES,
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        timeout_seconds=5,
    )


@pytest.fixture
async def registered(kclient: Client, served: Served, namespace: str) -> Served:
    await _register(kclient, served, namespace)
    return served


def _configmap(name: str, data: dict[str, str]) -> str:
    lines = "".join(f"  {key}: {value!r}\n" for key, value in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{lines}"


# ----------------------------------------------------------------------------------------------- via kubectl
async def test_bad_configmap_is_denied_with_the_field(kubectl: Kubectl, registered: Served) -> None:
    out = await kubectl("apply", "-f", "-", stdin=_configmap("bad", {"forbidden": "x"}), check=False)
    assert out.rc != 0
    assert f'admission webhook "{HOOK_NAME}" denied the request' in out.stderr
    assert "data.forbidden: not allowed; remove the key" in out.stderr
    assert (await kubectl("get", "configmap", "bad", check=False)).rc != 0


async def test_good_configmap_passes_and_the_request_is_parsed(kubectl: Kubectl, registered: Served) -> None:
    out = await kubectl("apply", "-f", "-", stdin=_configmap("good", {"fine": "x"}))
    assert "configmap/good created" in out.stdout
    request = registered.validator.seen[-1]
    assert (request.operation, request.namespace, request.name) == ("CREATE", kubectl.namespace, "good")
    assert request.kind == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert request.resource["resource"] == "configmaps"
    assert request.old_object is None and request.object is not None and request.user


async def test_update_to_a_bad_configmap_is_denied(kubectl: Kubectl, registered: Served) -> None:
    await kubectl("apply", "-f", "-", stdin=_configmap("cm", {"fine": "x"}))
    out = await kubectl("apply", "-f", "-", stdin=_configmap("cm", {"forbidden": "x"}), check=False)
    assert out.rc != 0 and "data.forbidden: not allowed" in out.stderr
    assert registered.validator.seen[-1].operation == "UPDATE"
    assert registered.validator.seen[-1].old_object is not None


async def test_warnings_reach_kubectl(kubectl: Kubectl, registered: Served) -> None:
    out = await kubectl("apply", "-f", "-", stdin=_configmap("warned", {"deprecated": "x"}))
    assert "Warning: data.deprecated is ignored and will be removed" in out.stderr


async def test_server_dry_run_reaches_the_validator(kubectl: Kubectl, registered: Served) -> None:
    out = await kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=_configmap("dry", {"forbidden": "x"}), check=False
    )
    assert out.rc != 0 and "data.forbidden" in out.stderr
    assert registered.validator.seen[-1].dry_run is True


async def test_validator_crash_denies_with_internal_error(kubectl: Kubectl, registered: Served) -> None:
    out = await kubectl("apply", "-f", "-", stdin=_configmap("crash", {"boom": "x"}), check=False)
    assert out.rc != 0
    assert f"internal error validating ConfigMap {kubectl.namespace}/crash: validator exploded" in out.stderr


async def test_other_namespaces_are_not_gated(kubectl: Kubectl, registered: Served) -> None:
    await kubectl("create", "namespace", "elsewhere", namespaced=False)
    out = await kubectl(
        "apply", "-n", "elsewhere", "-f", "-", stdin=_configmap("free", {"forbidden": "x"}), namespaced=False
    )
    assert "configmap/free created" in out.stdout


# ----------------------------------------------------------------------------------------------- raw HTTP
def _review(uid: str = "0c5f-uid", data: dict[str, str] | None = None) -> dict[str, Any]:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"}, "data": data or {}}
    request = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "namespace": "ns",
        "name": "cm",
        "operation": "CREATE",
        "userInfo": {"username": "alice"},
        "object": obj,
        "dryRun": False,
    }
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "request": request}


async def _post(served: Served, body: bytes) -> tuple[int, Any]:
    async with (
        served.session() as session,
        session.post(served.server.url("/validate"), data=body, headers={"Content-Type": "application/json"}) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_allowed_review_echoes_the_uid(served: Served) -> None:
    status, body = await _post(served, json.dumps(_review("uid-123", {"ok": "1"})).encode())
    assert status == 200
    assert body == {
        "apiVersion": REVIEW_API_VERSION,
        "kind": "AdmissionReview",
        "response": {"uid": "uid-123", "allowed": True},
    }
    assert served.validator.seen[-1].user == "alice"


async def test_denial_is_422_invalid_listing_the_errors(served: Served) -> None:
    status, body = await _post(served, json.dumps(_review("uid-9", {"forbidden": "1", "deprecated": "1"})).encode())
    assert status == 200
    response = body["response"]
    assert response["uid"] == "uid-9" and response["allowed"] is False
    assert response["warnings"] == ["data.deprecated is ignored and will be removed"]
    assert response["status"] == {
        "code": 422,
        "reason": "Invalid",
        "message": "data.forbidden: not allowed; remove the key",
    }


def test_status_causes_on_request() -> None:
    errors = (FieldError("spec.a", "must be set"), FieldError("spec.b", "too big"))
    request = parse_review(_review("u1"))
    body = review_response("u1", Verdict(errors=errors), request, causes=True)
    status = body["response"]["status"]
    assert status["message"] == "spec.a: must be set; spec.b: too big"
    assert status["details"] == {
        "name": "cm",
        "group": "",
        "kind": "ConfigMap",
        "causes": [
            {"field": "spec.a", "message": "must be set", "reason": "FieldValueInvalid"},
            {"field": "spec.b", "message": "too big", "reason": "FieldValueInvalid"},
        ],
    }


@pytest.mark.parametrize(
    ("body", "word"),
    [
        pytest.param(b"{not json", "malformed", id="not-json"),
        pytest.param(b"[]", "JSON object", id="not-an-object"),
        pytest.param(b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}', "v1beta1", id="v1beta1"),
        pytest.param(b'{"apiVersion": "admission.k8s.io/v1", "kind": "TokenReview"}', "TokenReview", id="wrong-kind"),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "no request", id="no-request"
        ),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}',
            "uid",
            id="no-uid",
        ),
        pytest.param(b"\xff\xfe", "malformed", id="not-utf8"),
    ],
)
async def test_malformed_reviews_are_400(served: Served, body: bytes, word: str) -> None:
    status, answer = await _post(served, body)
    assert status == 400
    assert word in answer["message"]


async def test_healthz_and_unknown_paths(served: Served) -> None:
    async with served.session() as session:
        async with session.get(served.server.url("/healthz")) as resp:
            assert resp.status == 200 and await resp.text() == "ok"
        async with session.post(served.server.url("/nowhere"), json=_review()) as resp:
            assert resp.status == 404


async def test_run_serves_until_stopped(tmp_path: Path) -> None:
    bundle = generate_serving_cert(["localhost"], ["127.0.0.1"])
    cert_file, key_file = write_pair(tmp_path, bundle.cert_pem, bundle.key_pem)
    server = WebhookServer({}, address="127.0.0.1:0", cert_file=cert_file, key_file=key_file)
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    for _ in range(500):
        if server.port:
            break
        await asyncio.sleep(0.01)
    port = server.port
    context = ssl.create_default_context(cadata=bundle.ca_pem.decode())
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.get(f"https://localhost:{port}/healthz") as resp,
    ):
        assert resp.status == 200
    stop.set()
    await asyncio.wait_for(task, 5)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


# ----------------------------------------------------------------------------------------------- registration
async def test_reregistering_with_a_new_ca_updates_in_place(kclient: Client, served: Served, namespace: str) -> None:
    first = await _register(kclient, served, namespace)
    new_ca = generate_serving_cert([], ["127.0.0.1"]).ca_pem
    second = await _register(kclient, served, namespace, ca_pem=new_ca)
    stored = (await kclient.list(VALIDATING_WEBHOOK_CONFIGURATION)).items
    assert [o["metadata"]["name"] for o in stored] == [CONFIG_NAME]
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    [webhook] = stored[0]["webhooks"]
    assert webhook["clientConfig"]["caBundle"] == base64.b64encode(new_ca).decode()
    assert webhook["clientConfig"]["url"] == served.server.url("/validate")
    assert webhook["name"] == HOOK_NAME and webhook["failurePolicy"] == "Fail" and webhook["sideEffects"] == "None"


async def test_service_client_config(kclient: Client) -> None:
    ca = generate_serving_cert(["kaito-webhook.kaito-system.svc"], []).ca_pem
    stored = await ensure_validating_webhook(
        kclient,
        name="kaito-svc",
        webhook_name="svc.kaito.sh",
        ca_pem=ca,
        service=("kaito-system", "kaito-webhook", 9443, "/validate"),
        rules=CONFIGMAP_RULES,
        failure_policy="Ignore",
    )
    config = stored["webhooks"][0]["clientConfig"]
    assert config["service"] == {
        "namespace": "kaito-system",
        "name": "kaito-webhook",
        "port": 9443,
        "path": "/validate",
    }
    assert "url" not in config


async def test_registration_needs_exactly_one_target(kclient: Client) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        await ensure_validating_webhook(kclient, name="x", webhook_name="x.kaito.sh", ca_pem=b"", rules=[])


# ----------------------------------------------------------------------------------------------- certificates
async def _presented_cert(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert isinstance(der, bytes)
        return der
    finally:
        writer.close()
        await writer.wait_closed()


async def _presents(port: int, der: bytes) -> bool:
    return await _presented_cert(port) == der


async def _wait_for(check: Callable[[], Awaitable[bool]], *, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def test_generated_certificates() -> None:
    bundle = generate_serving_cert(["webhook.kaito-system.svc"], ["127.0.0.1", "::1"])
    ca = x509.load_pem_x509_certificate(bundle.ca_pem)
    cert = x509.load_pem_x509_certificate(bundle.cert_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["webhook.kaito-system.svc"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert cert.issuer == ca.subject
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 365 <= lifetime.days <= 366
    cert.verify_directly_issued_by(ca)


async def test_rotated_certificate_is_served(served: Served) -> None:
    old = await _presented_cert(served.server.port)
    assert old == _der(served.bundle.cert_pem)
    rotated = generate_serving_cert([], ["127.0.0.1"])
    cert_file, _ = write_pair(served.cert_dir, rotated.cert_pem, rotated.key_pem)
    os.utime(cert_file, ns=(os.stat(cert_file).st_atime_ns, os.stat(cert_file).st_mtime_ns + 10**9))
    new = _der(rotated.cert_pem)
    await _wait_for(lambda: _presents(served.server.port, new))
    async with served.session(rotated.ca_pem) as session, session.get(served.server.url("/healthz")) as resp:
        assert resp.status == 200


async def test_broken_rotation_keeps_the_current_certificate(tmp_path: Path) -> None:
    async with _serve(tmp_path, reload_interval=3600) as served:
        other = generate_serving_cert([], ["127.0.0.1"])
        # A new certificate beside the old key: what a reader may see halfway through a rotation.
        write_pair(tmp_path, other.cert_pem, served.bundle.key_pem)
        assert served.server.certs.reload_if_changed() is False
        assert await _presented_cert(served.server.port) == _der(served.bundle.cert_pem)
        # Once the key arrives the next check picks the pair up.
        write_pair(tmp_path, other.cert_pem, other.key_pem)
        assert served.server.certs.reload_if_changed() is True
        assert served.server.certs.reload_if_changed() is False
        assert await _presented_cert(served.server.port) == _der(other.cert_pem)
