"""Validating admission webhooks called over real HTTPS: verdicts, matching, failure policy, timeouts and TLS."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kaito_sim.apiserver.admission import AdmissionAttributes, validate_admission
from kaito_sim.apiserver.errors import ApiError, JsonObj


# ----------------------------------------------------------------------------------------------- certificates
@dataclass(frozen=True)
class Pki:
    """A throwaway CA (PEM) and the cert/key files of a 127.0.0.1 server it signed."""

    ca_pem: bytes
    cert_file: Path
    key_file: Path

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca_pem).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _sign(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """Generate a CA and a server certificate for 127.0.0.1/localhost signed by it."""
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = _sign("test-ca", ca_key, "test-ca", ca_key, ca=True)
    server_cert = _sign("webhook", server_key, "test-ca", ca_key, ca=False)
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Pki(ca_cert.public_bytes(serialization.Encoding.PEM), cert_file, key_file)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other-pki"))


# ----------------------------------------------------------------------------------------------- webhook server
Verdict = Callable[[JsonObj], Awaitable[JsonObj]]


async def _allow_with_warning(request: JsonObj) -> JsonObj:
    return {"uid": request["uid"], "allowed": True, "warnings": ["spec.foo is deprecated"]}


async def _deny(request: JsonObj) -> JsonObj:
    return {"uid": request["uid"], "allowed": False, "status": {"code": 403, "message": "replicas must be even"}}


async def _deny_silently(request: JsonObj) -> JsonObj:
    return {"uid": request["uid"], "allowed": False}


async def _deny_invalid(request: JsonObj) -> JsonObj:
    status = {"code": 422, "reason": "Invalid", "message": "name is reserved"}
    return {"uid": request["uid"], "allowed": False, "status": status}


async def _wrong_uid(request: JsonObj) -> JsonObj:
    return {"uid": "not-" + request["uid"], "allowed": True}


VERDICTS: dict[str, Verdict] = {
    "/allow": _allow_with_warning,
    "/deny": _deny,
    "/deny-silent": _deny_silently,
    "/deny-invalid": _deny_invalid,
    "/wrong-uid": _wrong_uid,
}


@dataclass
class WebhookServer:
    base: str
    seen: list[tuple[str, JsonObj]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return self.base + path


def _app(server: WebhookServer) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        review = await request.json()
        server.seen.append((request.path, review))
        if request.path == "/slow":
            await server.release.wait()
        if request.path == "/broken":
            return web.Response(status=500, text="boom")
        if request.path == "/garbage":
            return web.Response(text="this is not json")
        response = await VERDICTS.get(request.path, _allow_with_warning)(review["request"])
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    return app


@pytest.fixture
async def server(pki: Pki) -> AsyncIterator[WebhookServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    hook = WebhookServer(base="")
    runner = web.AppRunner(_app(hook), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    hook.base = f"https://127.0.0.1:{port}"
    yield hook
    hook.release.set()
    await runner.cleanup()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ----------------------------------------------------------------------------------------------- builders
ATTRS = AdmissionAttributes(
    operation="CREATE",
    group="kaito.sh",
    version="v1beta1",
    resource="workspaces",
    subresource="",
    kind="Workspace",
    name="ws",
    namespace="default",
    obj={"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "ws", "labels": {"tier": "gpu"}}},
    old_obj=None,
    namespace_labels={"env": "prod"},
    user="kaito-admin",
)
RULE: JsonObj = {
    "operations": ["CREATE", "UPDATE"],
    "apiGroups": ["kaito.sh"],
    "apiVersions": ["v1beta1"],
    "resources": ["workspaces"],
}


def webhook(name: str, url: str, ca_bundle: str | None = None, **extra: Any) -> JsonObj:
    client: JsonObj = {"url": url}
    if ca_bundle is not None:
        client["caBundle"] = ca_bundle
    hook: JsonObj = {"name": name, "clientConfig": client, "rules": [RULE], "sideEffects": "None"}
    hook.update(extra)
    return hook


def config(*hooks: JsonObj) -> JsonObj:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "cfg"},
        "webhooks": list(hooks),
    }


# ----------------------------------------------------------------------------------------------- verdicts
async def test_allow_returns_warnings_and_sends_a_full_review(server: WebhookServer, pki: Pki) -> None:
    hook = webhook("allow.kaito.sh", server.url("/allow"), pki.ca_bundle)
    warnings = await validate_admission([config(hook)], ATTRS)
    assert warnings == ["spec.foo is deprecated"]
    [(path, review)] = server.seen
    request = review["request"]
    assert (path, review["apiVersion"], review["kind"]) == ("/allow", "admission.k8s.io/v1", "AdmissionReview")
    assert request["kind"] == {"group": "kaito.sh", "version": "v1beta1", "kind": "Workspace"}
    assert request["resource"] == {"group": "kaito.sh", "version": "v1beta1", "resource": "workspaces"}
    assert request["requestKind"] == request["kind"] and request["requestResource"] == request["resource"]
    assert (request["name"], request["namespace"], request["operation"]) == ("ws", "default", "CREATE")
    assert request["userInfo"] == {"username": "kaito-admin"}
    assert request["object"] == ATTRS.obj and "oldObject" not in request
    assert request["dryRun"] is False and request["options"]["kind"] == "CreateOptions"
    assert len(request["uid"]) == 36


@pytest.mark.parametrize(
    ("path", "code", "reason", "message"),
    [
        pytest.param(
            "/deny",
            403,
            "Forbidden",
            'admission webhook "v.kaito.sh" denied the request: replicas must be even',
            id="deny-with-message",
        ),
        pytest.param(
            "/deny-silent",
            403,
            "Forbidden",
            'admission webhook "v.kaito.sh" denied the request without explanation',
            id="deny-without-explanation",
        ),
        pytest.param(
            "/deny-invalid",
            422,
            "Invalid",
            'admission webhook "v.kaito.sh" denied the request: name is reserved',
            id="deny-with-own-status",
        ),
    ],
)
async def test_denial_becomes_the_webhook_status(
    server: WebhookServer, pki: Pki, path: str, code: int, reason: str, message: str
) -> None:
    with pytest.raises(ApiError) as caught:
        await validate_admission([config(webhook("v.kaito.sh", server.url(path), pki.ca_bundle))], ATTRS)
    assert (caught.value.code, caught.value.reason, caught.value.message) == (code, reason, message)


async def test_first_denial_stops_later_webhooks(server: WebhookServer, pki: Pki) -> None:
    hooks = config(webhook("deny", server.url("/deny"), pki.ca_bundle), webhook("after", server.url("/allow")))
    with pytest.raises(ApiError):
        await validate_admission([hooks], ATTRS)
    assert [path for path, _ in server.seen] == ["/deny"]


# ----------------------------------------------------------------------------------------------- matching
NS_SELECTOR = {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}


@pytest.mark.parametrize(
    ("hook_extra", "attrs_change", "called"),
    [
        pytest.param({}, {}, True, id="plain-match"),
        pytest.param({}, {"operation": "DELETE"}, False, id="operation-not-listed"),
        pytest.param({"rules": [{**RULE, "operations": ["*"]}]}, {"operation": "DELETE"}, True, id="operation-star"),
        pytest.param({}, {"group": "apps"}, False, id="group-not-listed"),
        pytest.param({}, {"version": "v1alpha1"}, False, id="version-not-listed"),
        pytest.param({"rules": [{**RULE, "resources": ["*"]}]}, {"resource": "pods"}, True, id="resource-star"),
        pytest.param({}, {"subresource": "status"}, False, id="subresource-not-listed"),
        pytest.param({"rules": [{**RULE, "resources": ["*"]}]}, {"subresource": "status"}, False, id="star-no-sub"),
        pytest.param(
            {"rules": [{**RULE, "resources": ["*/status"]}]}, {"subresource": "status"}, True, id="star-status"
        ),
        pytest.param(
            {"rules": [{**RULE, "resources": ["workspaces/status"]}]}, {"subresource": "status"}, True, id="res-status"
        ),
        pytest.param({"rules": [{**RULE, "scope": "Cluster"}]}, {}, False, id="scope-cluster-vs-namespaced"),
        pytest.param({"rules": [{**RULE, "scope": "Namespaced"}]}, {}, True, id="scope-namespaced"),
        pytest.param({"namespaceSelector": NS_SELECTOR}, {}, True, id="ns-selector-match"),
        pytest.param({"namespaceSelector": NS_SELECTOR}, {"namespace_labels": {"env": "dev"}}, False, id="ns-no-match"),
        pytest.param(
            {"namespaceSelector": {"matchLabels": {"env": "dev"}}},
            {"namespace": "", "namespace_labels": None},
            True,
            id="ns-selector-ignored-cluster-scoped",
        ),
        pytest.param({"objectSelector": {"matchLabels": {"tier": "gpu"}}}, {}, True, id="object-selector-match"),
        pytest.param({"objectSelector": {"matchLabels": {"tier": "cpu"}}}, {}, False, id="object-selector-no-match"),
        pytest.param(
            {"objectSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}},
            {},
            False,
            id="object-selector-does-not-exist",
        ),
        pytest.param(
            {"objectSelector": {"matchLabels": {"tier": "gpu"}}, "rules": [{**RULE, "operations": ["DELETE"]}]},
            {"operation": "DELETE", "old_obj": ATTRS.obj, "obj": None},
            True,
            id="object-selector-old-object-on-delete",
        ),
    ],
)
async def test_rules_and_selectors_decide_who_is_called(
    server: WebhookServer, pki: Pki, hook_extra: JsonObj, attrs_change: dict[str, Any], called: bool
) -> None:
    hook = webhook("m.kaito.sh", server.url("/allow"), pki.ca_bundle, **hook_extra)
    warnings = await validate_admission([config(hook)], replace(ATTRS, **attrs_change))
    assert bool(server.seen) is called
    assert bool(warnings) is called


async def test_namespace_object_is_selected_by_its_own_labels(server: WebhookServer, pki: Pki) -> None:
    rule = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["namespaces"]}
    hook = webhook("ns.kaito.sh", server.url("/allow"), pki.ca_bundle, rules=[rule], namespaceSelector=NS_SELECTOR)
    namespace: JsonObj = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team", "labels": {"env": "prod"}},
    }
    attrs = replace(
        ATTRS,
        group="",
        version="v1",
        resource="namespaces",
        kind="Namespace",
        name="team",
        namespace="",
        obj=namespace,
        namespace_labels=None,
    )
    assert await validate_admission([config(hook)], attrs) == ["spec.foo is deprecated"]
    namespace["metadata"]["labels"] = {"env": "dev"}
    assert await validate_admission([config(hook)], attrs) == []
    assert len(server.seen) == 1


async def test_dry_run_refused_by_webhook_with_side_effects(server: WebhookServer, pki: Pki) -> None:
    hook = webhook("fx.kaito.sh", server.url("/allow"), pki.ca_bundle, sideEffects="Some")
    with pytest.raises(ApiError) as caught:
        await validate_admission([config(hook)], replace(ATTRS, dry_run=True))
    assert (caught.value.code, caught.value.message) == (
        400,
        'admission webhook "fx.kaito.sh" does not support dry run',
    )
    assert server.seen == []


# ----------------------------------------------------------------------------------------------- failures
def _unreachable() -> str:
    return f"https://127.0.0.1:{_closed_port()}/validate"


@pytest.mark.parametrize(
    ("make_hook", "detail"),
    [
        pytest.param(
            lambda s, p: webhook("f.kaito.sh", _unreachable(), p.ca_bundle), "connection refused", id="refused"
        ),
        pytest.param(
            lambda s, p: {**webhook("f.kaito.sh", ""), "clientConfig": {"service": {"name": "svc", "namespace": "ns"}}},
            'no endpoints available for service "svc"',
            id="service-reference",
        ),
        pytest.param(lambda s, p: webhook("f.kaito.sh", s.url("/broken"), p.ca_bundle), '("boom")', id="status-500"),
        pytest.param(lambda s, p: webhook("f.kaito.sh", s.url("/garbage"), p.ca_bundle), "decode", id="not-json"),
        pytest.param(lambda s, p: webhook("f.kaito.sh", s.url("/wrong-uid"), p.ca_bundle), "response.uid", id="uid"),
        pytest.param(lambda s, p: webhook("f.kaito.sh", s.url("/allow"), "bm90IHBlbQ=="), "root certificates", id="ca"),
    ],
)
@pytest.mark.parametrize("policy", [pytest.param("Fail", id="fail"), pytest.param(None, id="default-fail")])
async def test_call_failure_under_fail_policy_is_internal_error(
    server: WebhookServer,
    pki: Pki,
    make_hook: Callable[[WebhookServer, Pki], JsonObj],
    detail: str,
    policy: str | None,
) -> None:
    hook = make_hook(server, pki)
    if policy is not None:
        hook["failurePolicy"] = policy
    with pytest.raises(ApiError) as caught:
        await validate_admission([config(hook)], ATTRS)
    assert (caught.value.code, caught.value.reason) == (500, "InternalError")
    assert caught.value.message.startswith('Internal error occurred: failed calling webhook "f.kaito.sh": ')
    assert detail in caught.value.message


async def test_call_failure_under_ignore_policy_is_skipped(server: WebhookServer, pki: Pki) -> None:
    hooks = config(
        webhook("gone.kaito.sh", _unreachable(), pki.ca_bundle, failurePolicy="Ignore"),
        webhook("next.kaito.sh", server.url("/allow"), pki.ca_bundle),
    )
    assert await validate_admission([hooks], ATTRS) == ["spec.foo is deprecated"]


async def test_timeout_seconds_is_honoured(server: WebhookServer, pki: Pki) -> None:
    hook = webhook("slow.kaito.sh", server.url("/slow"), pki.ca_bundle, timeoutSeconds=1)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ApiError) as caught:
        await validate_admission([config(hook)], ATTRS)
    elapsed = asyncio.get_running_loop().time() - started
    assert 0.9 <= elapsed < 3
    assert caught.value.code == 500
    assert "?timeout=1s" in caught.value.message and "context deadline exceeded" in caught.value.message


async def test_tls_verification_fails_with_the_wrong_ca(server: WebhookServer, other_pki: Pki) -> None:
    hook = webhook("tls.kaito.sh", server.url("/allow"), other_pki.ca_bundle)
    with pytest.raises(ApiError) as caught:
        await validate_admission([config(hook)], ATTRS)
    assert caught.value.code == 500
    assert "tls: failed to verify certificate" in caught.value.message
    assert server.seen == []
