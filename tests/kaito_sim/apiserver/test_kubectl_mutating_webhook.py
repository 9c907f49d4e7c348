"""A mutating admission webhook in the simulated cluster: its JSONPatch is applied before validation and stored."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kaito.runtime.client import Client
from kaito.runtime.errors import ApiError
from kaito.runtime.kinds import CONFIG_MAP
from kaito_sim.apiserver.tls import make_ca, make_server_cert
from tests.conftest import Kubectl

LABEL_OPS = [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]


def _encoded(operations: Any) -> str:
    return base64.b64encode(json.dumps(operations).encode()).decode()


class Webhook:
    """Answers by path: /mutate labels the object and makes `data.n` a string, /validate allows, others break."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []  # (path, request) in call order
        self.base = ""
        self.ca_bundle = ""

    async def handle(self, http: web.Request) -> web.Response:
        request = (await http.json())["request"]
        self.seen.append((http.path, request))
        response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
        if http.path == "/mutate":
            obj = request["object"]
            labels = obj["metadata"].get("labels")
            ops: list[dict[str, Any]] = (
                LABEL_OPS if labels is None else [{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]
            )
            if isinstance((obj.get("data") or {}).get("n"), int):
                ops.append({"op": "replace", "path": "/data/n", "value": str(obj["data"]["n"])})
            response.update(patchType="JSONPatch", patch=_encoded(ops))
        elif http.path == "/unappliable":
            response.update(patchType="JSONPatch", patch=_encoded([{"op": "remove", "path": "/metadata/nothing"}]))
        elif http.path == "/not-base64":
            response.update(patchType="JSONPatch", patch="%%% not base64 %%%")
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})

    def paths(self) -> list[str]:
        return [path for path, _ in self.seen]


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    ca = make_ca("webhook-ca")
    cert = make_server_cert(ca, ["127.0.0.1"])
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = cert.write(Path(tmp), "hook")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        hook.base = f"https://127.0.0.1:{runner.addresses[0][1]}"
        hook.ca_bundle = base64.b64encode(ca.cert_pem).decode()
        yield hook
    await runner.cleanup()


def _config(kind: str, hook: Webhook, path: str, namespace: str) -> str:
    return f"""apiVersion: admissionregistration.k8s.io/v1
kind: {kind}
metadata: {{name: {path.strip("/")}}}
webhooks:
- name: {path.strip("/")}.kaito.sh
  admissionReviewVersions: [v1]
  sideEffects: None
  timeoutSeconds: 2
  clientConfig:
    url: {hook.base}{path}
    caBundle: {hook.ca_bundle}
  namespaceSelector:
    matchLabels: {{kubernetes.io/metadata.name: {namespace}}}
  rules:
  - apiGroups: [""]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [configmaps]
"""


async def _register(kubectl: Kubectl, kind: str, hook: Webhook, path: str) -> None:
    await kubectl("apply", "-f", "-", stdin=_config(kind, hook, path, kubectl.namespace), namespaced=False)


async def test_patch_applies_before_schema_validation_and_validating_webhooks(
    kubectl: Kubectl, kclient: Client, webhook: Webhook
) -> None:
    await _register(kubectl, "ValidatingWebhookConfiguration", webhook, "/validate")
    await _register(kubectl, "MutatingWebhookConfiguration", webhook, "/mutate")
    # `data.n: 1` fails the ConfigMap schema (strings only) unless the mutating webhook fixes it first.
    body = {"metadata": {"name": "cm", "namespace": kubectl.namespace}, "data": {"n": 1}}
    created = await kclient.create(CONFIG_MAP, body)
    assert created["metadata"]["labels"] == {"mutated": "yes"} and created["data"] == {"n": "1"}
    assert webhook.paths() == ["/mutate", "/validate"]
    mutating_saw, validating_saw = (request["object"] for _, request in webhook.seen)
    assert mutating_saw["data"] == {"n": 1} and "uid" not in mutating_saw["metadata"]
    assert validating_saw["metadata"]["labels"] == {"mutated": "yes"} and validating_saw["data"] == {"n": "1"}
    stored = (await kubectl("get", "cm", "cm", "-o", "json")).json()
    assert stored["metadata"]["labels"] == {"mutated": "yes"}

    await kubectl("label", "cm", "cm", "mutated-", "other=1")  # an UPDATE: the webhook puts its label back
    stored = (await kubectl("get", "cm", "cm", "-o", "json")).json()
    assert stored["metadata"]["labels"] == {"mutated": "yes", "other": "1"}
    assert webhook.seen[-2][1]["operation"] == "UPDATE" and webhook.paths()[-2:] == ["/mutate", "/validate"]


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        pytest.param("/unappliable", "returned a patch that cannot be applied", id="unappliable"),
        pytest.param("/not-base64", "the patch is not base64-encoded JSON", id="not-base64"),
    ],
)
async def test_malformed_patch_is_an_internal_error_naming_the_webhook(
    kubectl: Kubectl, webhook: Webhook, path: str, detail: str
) -> None:
    await _register(kubectl, "MutatingWebhookConfiguration", webhook, path)
    out = await kubectl("create", "configmap", "x", check=False)
    assert out.rc == 1
    assert "Internal error occurred" in out.stderr and f'"{path.strip("/")}.kaito.sh"' in out.stderr
    assert detail in out.stderr
    assert (await kubectl("get", "cm", "x", check=False)).rc == 1


async def test_validating_webhooks_still_may_not_patch(kubectl: Kubectl, kclient: Client, webhook: Webhook) -> None:
    await _register(kubectl, "ValidatingWebhookConfiguration", webhook, "/mutate")
    with pytest.raises(ApiError) as caught:
        await kclient.create(CONFIG_MAP, {"metadata": {"name": "y", "namespace": kubectl.namespace}})
    assert caught.value.code == 500 and "validating webhooks may not return patches" in caught.value.message
