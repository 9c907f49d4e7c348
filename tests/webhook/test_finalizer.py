"""The Workspace mutating webhook adds kaito's finalizer: the patch it answers with, on the wire and in the sim."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.api.workspace import FINALIZER
from kaito.runtime.client import Client
from kaito.webhook import finalizer
from kaito.webhook.certs import write_serving_cert
from kaito.webhook.registration import MUTATING_WEBHOOK_CONFIGURATION, ensure_mutating_webhook
from kaito.webhook.server import AdmissionRequest, Verdict, WebhookServer, review_response
from tests.api.test_crds import install_crds
from tests.conftest import Kubectl

DELETED = "2024-01-01T00:00:00Z"


def _request(operation: str, obj: dict[str, Any] | None) -> AdmissionRequest:
    return AdmissionRequest(
        uid="u-1",
        operation=operation,
        kind={"group": "kaito.sh", "version": "v1beta1", "kind": "Workspace"},
        resource={"group": "kaito.sh", "version": "v1beta1", "resource": "workspaces"},
        namespace="default",
        name="ws",
        object=obj,
        old_object=None,
        dry_run=False,
        user="alice",
    )


def _workspace(**meta: Any) -> dict[str, Any]:
    return {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "ws", **meta}}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            _workspace(),
            [{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}],
            id="no-finalizers",
        ),
        pytest.param(
            _workspace(finalizers=[]),
            [{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}],
            id="empty-finalizers",
        ),
        pytest.param(
            _workspace(finalizers=["example.com/keep"]),
            [{"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}],
            id="appended-after-others",
        ),
        pytest.param(
            {"kind": "Workspace"},
            [{"op": "add", "path": "/metadata", "value": {"finalizers": [FINALIZER]}}],
            id="no-metadata",
        ),
        pytest.param(_workspace(finalizers=["example.com/keep", FINALIZER]), [], id="already-there"),
        pytest.param(_workspace(deletionTimestamp=DELETED), [], id="being-deleted"),
        pytest.param(None, [], id="no-object"),
    ],
)
def test_finalizer_patch(obj: dict[str, Any] | None, expected: list[dict[str, Any]]) -> None:
    assert list(finalizer.finalizer_patch(obj)) == expected


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
async def test_mutator_patches_creates_and_updates(operation: str) -> None:
    verdict = await finalizer.workspace_finalizer_mutator()(_request(operation, _workspace()))
    assert verdict.allowed and verdict.patch == finalizer.finalizer_patch(_workspace())


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
async def test_mutator_leaves_other_operations_alone(operation: str) -> None:
    verdict = await finalizer.workspace_finalizer_mutator()(_request(operation, _workspace()))
    assert verdict == Verdict()


def test_review_response_carries_a_base64_json_patch() -> None:
    ops = ({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},)
    response = review_response("u-1", Verdict(patch=ops))["response"]
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == list(ops)
    assert set(review_response("u-1", Verdict())["response"]) == {"uid", "allowed"}


@pytest.fixture
async def mutating(kubectl: Kubectl, kclient: Client, tmp_path: Path) -> AsyncIterator[WebhookServer]:
    await install_crds(kubectl)
    ca_pem, cert, key = write_serving_cert(tmp_path, ["localhost"], ["127.0.0.1"])
    handlers = {finalizer.PATH: finalizer.workspace_finalizer_mutator()}
    server = WebhookServer(handlers, address="127.0.0.1:0", cert_file=cert, key_file=key)
    await server.start()
    await ensure_mutating_webhook(
        kclient,
        name=finalizer.CONFIGURATION_NAME,
        webhook_name=finalizer.WEBHOOK_NAME,
        ca_pem=ca_pem,
        url=server.url(finalizer.PATH),
        rules=finalizer.RULES,
    )
    yield server
    await server.stop()


PHI3 = Path(__file__).resolve().parents[2] / "examples/inference/kaito_workspace_phi_3.yaml"


async def test_the_sim_stores_the_finalizer_and_lets_deletion_remove_it(
    kubectl: Kubectl, kclient: Client, mutating: WebhookServer
) -> None:
    [config] = (await kclient.list(MUTATING_WEBHOOK_CONFIGURATION)).items
    assert config["webhooks"][0]["reinvocationPolicy"] == "Never"
    manifest = yaml.safe_load(PHI3.read_text())
    manifest["metadata"]["finalizers"] = ["example.com/keep"]
    name = manifest["metadata"]["name"]
    out = await kubectl("apply", "-f", "-", "-o", "json", stdin=yaml.safe_dump(manifest))
    assert out.json()["metadata"]["finalizers"] == ["example.com/keep", FINALIZER]
    patch = json.dumps({"metadata": {"finalizers": None}})
    await kubectl("patch", "workspace", name, "--type=merge", "-p", patch)  # an UPDATE puts it back
    stored = (await kubectl("get", "workspace", name, "-o", "json")).json()
    assert stored["metadata"]["finalizers"] == [FINALIZER]
    await kubectl("delete", "workspace", name, "--wait=false")
    await kubectl("patch", "workspace", name, "--type=merge", "-p", patch)  # what the reconciler does last
    assert (await kubectl("get", "workspace", name, check=False)).rc == 1
