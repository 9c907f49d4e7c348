"""A validating admission webhook registered in the simulated cluster gates what kubectl applies."""

from __future__ import annotations

import base64
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kaito_sim.apiserver.tls import make_ca, make_server_cert
from tests.conftest import Kubectl


class Webhook:
    """An HTTPS AdmissionReview server that denies ConfigMaps labelled `deny=yes`."""

    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []
        self.url = ""
        self.ca_bundle = ""

    async def handle(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        req = review["request"]
        labels = ((req.get("object") or {}).get("metadata") or {}).get("labels") or {}
        allowed = labels.get("deny") != "yes"
        response: dict[str, Any] = {"uid": req["uid"], "allowed": allowed}
        if not allowed:
            response["status"] = {
                "code": 403,
                "reason": "Forbidden",
                "message": "configmaps labelled deny=yes are refused",
            }
        else:
            response["warnings"] = ["checked by test webhook"]
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    ca = make_ca("webhook-ca")
    cert = make_server_cert(ca, ["127.0.0.1"])
    app = web.Application()
    app.router.add_post("/validate", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = cert.write(Path(tmp), "hook")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        hook.url = f"https://127.0.0.1:{runner.addresses[0][1]}/validate"
        hook.ca_bundle = base64.b64encode(ca.cert_pem).decode()
        yield hook
    await runner.cleanup()


def _config(hook: Webhook, namespace: str, *, url: str | None = None, policy: str = "Fail") -> str:
    return f"""apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: deny-labelled}}
webhooks:
- name: deny.kaito.sh
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: {policy}
  timeoutSeconds: 2
  clientConfig:
    url: {url or hook.url}
    caBundle: {hook.ca_bundle}
  namespaceSelector:
    matchLabels: {{kubernetes.io/metadata.name: {namespace}}}
  rules:
  - apiGroups: [""]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [configmaps]
"""


async def test_webhook_denial_reaches_kubectl(kubectl: Kubectl, webhook: Webhook) -> None:
    await kubectl("apply", "-f", "-", stdin=_config(webhook, kubectl.namespace), namespaced=False)
    out = await kubectl("create", "configmap", "ok")
    assert "configmap/ok created" in out.stdout and "checked by test webhook" in out.stderr
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  labels: {deny: 'yes'}\n"
    out = await kubectl("apply", "-f", "-", stdin=bad, check=False)
    assert out.rc == 1
    assert (
        'admission webhook "deny.kaito.sh" denied the request: configmaps labelled deny=yes are refused' in out.stderr
    )
    assert (await kubectl("get", "cm", "bad", check=False)).rc == 1
    review = webhook.reviews[-1]["request"]
    assert review["operation"] == "CREATE" and review["resource"]["resource"] == "configmaps"
    # Secrets are not covered by the rules, so the webhook never sees them.
    before = len(webhook.reviews)
    await kubectl("create", "secret", "generic", "s", "--from-literal=a=b")
    assert len(webhook.reviews) == before


@pytest.mark.parametrize(
    ("policy", "allowed"), [pytest.param("Fail", False, id="fail"), pytest.param("Ignore", True, id="ignore")]
)
async def test_unreachable_webhook_honours_failure_policy(
    kubectl: Kubectl, webhook: Webhook, policy: str, allowed: bool
) -> None:
    config = _config(webhook, kubectl.namespace, url="https://127.0.0.1:1/validate", policy=policy)
    await kubectl("apply", "-f", "-", stdin=config, namespaced=False)
    out = await kubectl("create", "configmap", "x", check=False)
    assert (out.rc == 0) is allowed
    if not allowed:
        assert 'failed calling webhook "deny.kaito.sh"' in out.stderr
