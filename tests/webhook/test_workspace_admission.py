"""Bad Workspaces are refused at `kubectl apply` on the sim, with a message naming the field and what is allowed."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito.api.workspace import Workspace
from kaito.presets.catalog import Catalog
from kaito.runtime.client import Client
from kaito.webhook.certs import write_serving_cert
from kaito.webhook.registration import ensure_validating_webhook
from kaito.webhook.server import AdmissionRequest, WebhookServer
from kaito.webhook.workspace import PATH, RULES, WEBHOOK_NAME, workspace_validator
from kaito.workspaces.plan import plan_workspace
from tests.api.test_crds import install_crds
from tests.conftest import Kubectl
from tests.workspaces.counting import CountingSizing

ROOT = Path(__file__).resolve().parents[2]

INFERENCE: dict[str, Any] = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "Workspace",
    "metadata": {"name": "ws"},
    "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"app": "ws"}}},
    "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
}
TUNING: dict[str, Any] = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "Workspace",
    "metadata": {"name": "tune"},
    "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"app": "tune"}}},
    "tuning": {
        "preset": {"name": "phi-3-mini-4k-instruct"},
        "method": "lora",
        "input": {"urls": ["https://example.com/data.parquet"]},
        "output": {"image": "registry.example.com/adapters/phi:0.1", "imagePushSecret": "push"},
    },
}


def edit(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `base` with the dotted `path` set to `value` (None deletes it)."""
    doc = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return doc


def adapter(name: str = "a", **extra: Any) -> dict[str, Any]:
    return {"source": {"name": name, "image": "registry.example.com/adapters/a:1"}, **extra}


BAD: list[tuple[str, dict[str, Any], list[str]]] = [
    ("both-modes", {**INFERENCE, "tuning": TUNING["tuning"]}, ["exactly one of inference or tuning"]),
    ("neither-mode", edit(INFERENCE, "inference", None), ["exactly one of inference or tuning"]),
    (
        "unknown-preset",
        edit(INFERENCE, "inference.preset.name", "phi-3-mini-4k"),
        ["inference.preset.name", "unknown model", "did you mean"],
    ),
    ("deprecated-preset", edit(INFERENCE, "inference.preset.name", "phi-2"), ["inference.preset.name", "deprecated"]),
    ("deprecated-falcon", edit(INFERENCE, "inference.preset.name", "falcon-7b-instruct"), ["deprecated"]),
    (
        "unknown-sku",
        edit(INFERENCE, "resource.instanceType", "Standard_NC6s_v9"),
        ["resource.instanceType", "Standard_NC6s_v3"],
    ),
    (
        "does-not-fit",
        edit(INFERENCE, "inference.preset.name", "deepseek-v3-0324"),
        ["resource.instanceType", "does not fit", "instance types that fit"],
    ),
    (
        "no-label-selector",
        edit(INFERENCE, "resource.labelSelector", None),
        ["resource.labelSelector", "Required value"],
    ),
    (
        "empty-label-selector",
        edit(INFERENCE, "resource.labelSelector", {"matchLabels": {}}),
        ["resource.labelSelector", "matchLabels"],
    ),
    (
        "notin-operator",
        edit(
            INFERENCE,
            "resource.labelSelector",
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["b"]}]},
        ),
        ["matchExpressions[0].operator", "only In"],
    ),
    ("count-zero", edit(INFERENCE, "resource.count", 0), ["resource.count", "greater than or equal to 1"]),
    ("bad-name", edit(INFERENCE, "metadata.name", "ws.with.dots"), ["metadata.name", "DNS-1123 label"]),
    (
        "too-many-adapters",
        edit(INFERENCE, "inference.adapters", [adapter(f"a{i}") for i in range(11)]),
        ["inference.adapters", "10"],
    ),
    (
        "duplicate-adapters",
        edit(INFERENCE, "inference.adapters", [adapter("a"), adapter("a")]),
        ["inference.adapters[1].source.name", "another adapter"],
    ),
    (
        "adapter-name",
        edit(INFERENCE, "inference.adapters", [adapter("Bad_Name")]),
        ["inference.adapters[0].source.name", "DNS-1123"],
    ),
    (
        "adapter-no-source",
        edit(INFERENCE, "inference.adapters", [{"source": {"name": "a"}}]),
        ["inference.adapters[0].source", "exactly one of image or volumeSource"],
    ),
    (
        "adapter-image-and-workspace",
        edit(INFERENCE, "inference.adapters", [{"source": {"name": "a", "image": "r.io/a:1", "workspace": "t"}}]),
        ["inference.adapters[0].source", "or a tuning workspace"],
    ),
    (
        "adapter-workspace-name",
        edit(INFERENCE, "inference.adapters", [{"source": {"name": "a", "workspace": "Not_A_Name"}}]),
        ["inference.adapters[0].source.workspace", "not a Workspace name"],
    ),
    (
        "adapter-url-image",
        edit(INFERENCE, "inference.adapters", [{"source": {"name": "a", "image": "https://example.com/a.tar"}}]),
        ["inference.adapters[0].source.image"],
    ),
    (
        "adapter-strength-range",
        edit(INFERENCE, "inference.adapters", [adapter(strength="1.5")]),
        ["inference.adapters[0].strength", "outside [0, 1]"],
    ),
    (
        "adapter-strength-text",
        edit(INFERENCE, "inference.adapters", [adapter(strength="full")]),
        ["inference.adapters[0].strength", "not a number"],
    ),
    (
        "preset-and-template",
        edit(INFERENCE, "inference.template", {"spec": {"containers": []}}),
        ["inference", "exactly one of preset or template"],
    ),
    (
        "gated-without-secret",
        edit(INFERENCE, "inference.preset.name", "llama-3.1-8b-instruct"),
        ["presetOptions.modelAccessSecret", "HF_TOKEN"],
    ),
    (
        "bad-annotation",
        edit(INFERENCE, "metadata.annotations", {"kaito.sh/node-image-family": "windows"}),
        ["kaito.sh/node-image-family", "ubuntu, azurelinux"],
    ),
    (
        "quantized-on-t4",
        edit(edit(INFERENCE, "inference.preset.name", "gpt-oss-20b"), "resource.instanceType", "Standard_NC4as_T4_v3"),
        ["compute capability"],
    ),
    ("tuning-method", edit(TUNING, "tuning.method", "sft"), ["tuning.method", "lora, qlora"]),
    ("tuning-no-input", edit(TUNING, "tuning.input", None), ["tuning.input", "required"]),
    (
        "tuning-two-inputs",
        edit(TUNING, "tuning.input", {"urls": ["https://example.com/a"], "image": "r.io/data:1"}),
        ["tuning.input", "exactly one of urls, image or volumeSource"],
    ),
    (
        "tuning-private-url",
        edit(TUNING, "tuning.input", {"urls": ["http://10.1.2.3/data.json"]}),
        ["tuning.input.urls[0]", "private"],
    ),
    (
        "tuning-metadata-url",
        edit(TUNING, "tuning.input", {"urls": ["http://169.254.169.254/latest/meta-data"]}),
        ["tuning.input.urls[0]", "link-local"],
    ),
    (
        "tuning-localhost-url",
        edit(TUNING, "tuning.input", {"urls": ["http://localhost:8080/data.csv"]}),
        ["tuning.input.urls[0]", "localhost"],
    ),
    (
        "tuning-ftp-url",
        edit(TUNING, "tuning.input", {"urls": ["ftp://example.com/data.csv"]}),
        ["tuning.input.urls[0]", "http"],
    ),
    ("tuning-no-output", edit(TUNING, "tuning.output", None), ["tuning.output", "required"]),
    (
        "tuning-no-push-secret",
        edit(TUNING, "tuning.output", {"image": "registry.example.com/a:1"}),
        ["tuning.output.imagePushSecret", "required"],
    ),
    (
        "tuning-two-outputs",
        edit(TUNING, "tuning.output", {"image": "r.io/a:1", "imagePushSecret": "s", "volumeSource": {"emptyDir": {}}}),
        ["tuning.output", "exactly one of image or volumeSource"],
    ),
    ("tuning-count", edit(TUNING, "resource.count", 2), ["resource.count", "exactly one node"]),
    (
        "tuning-unsupported-model",
        edit(TUNING, "tuning.preset.name", "llama-3.3-70b-instruct"),
        ["tuning.preset.name", "no tuning preset"],
    ),
    ("tuning-no-preset", edit(TUNING, "tuning.preset", None), ["tuning.preset", "required"]),
]


@pytest.fixture
async def admission(kubectl: Kubectl, kclient: Client, tmp_path: Path) -> AsyncIterator[WebhookServer]:
    await install_crds(kubectl)
    ca_pem, cert, key = write_serving_cert(tmp_path, ["localhost"], ["127.0.0.1"])
    catalog = Catalog.builtin()
    validator = workspace_validator(catalog=lambda: catalog, cloud="azure", client=kclient)
    server = WebhookServer({PATH: validator}, address="127.0.0.1:0", cert_file=cert, key_file=key)
    await server.start()
    await ensure_validating_webhook(
        kclient,
        name="kaito-validating-webhook",
        webhook_name=WEBHOOK_NAME,
        ca_pem=ca_pem,
        url=server.url(PATH),
        rules=RULES,
    )
    yield server
    await server.stop()


async def test_bad_workspaces_are_refused_with_actionable_messages(kubectl: Kubectl, admission: WebhookServer) -> None:
    assert len(BAD) >= 30
    problems = []
    for case, manifest, expected in BAD:
        result = await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest), check=False)
        missing = [text for text in expected if text not in result.stderr]
        if result.rc == 0 or missing:
            problems.append(f"{case}: rc={result.rc} missing {missing} in: {result.stderr.strip()}")
    assert not problems, "\n".join(problems)
    listed = await kubectl("get", "workspaces", "-o", "name")
    assert listed.stdout.strip() == ""


async def test_readme_examples_pass_admission(kubectl: Kubectl, admission: WebhookServer) -> None:
    for path in sorted((ROOT / "examples").glob("inference/kaito_workspace_*.yaml")):  # the hub id's: test_hub_models
        await kubectl("apply", "-f", str(path))
    await kubectl("delete", "workspace", "workspace-phi-3-mini")
    await kubectl("apply", "-f", str(ROOT / "examples/tuning/kaito_workspace_tuning_phi_3.yaml"))


async def test_immutable_fields_are_refused_on_update(kubectl: Kubectl, admission: WebhookServer) -> None:
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(INFERENCE))
    changed = edit(INFERENCE, "inference.preset.name", "phi-3.5-mini-instruct")
    result = await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(changed), check=False)
    assert result.rc != 0 and "inference.preset.name: field is immutable" in result.stderr
    moved = edit(INFERENCE, "resource.instanceType", "Standard_NC48ads_A100_v4")
    result = await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(moved), check=False)
    assert result.rc != 0 and "resource.instanceType: field is immutable" in result.stderr
    # Adapters may change in place (no new GPU node needed).
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(edit(INFERENCE, "inference.adapters", [adapter("new")])))


async def test_inference_config_is_checked_against_the_plan(kubectl: Kubectl, admission: WebhookServer) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "too-long"},
        "data": {"inference_config.yaml": "vllm:\n  max-model-len: 65536\n"},
    }
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(config))
    manifest = edit(INFERENCE, "inference.config", "too-long")
    result = await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest), check=False)
    assert result.rc != 0 and "max-model-len 65536 exceeds" in result.stderr
    missing = edit(INFERENCE, "inference.config", "absent")
    result = await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(missing), check=False)
    assert result.rc != 0 and "inference.config: ConfigMap 'absent' not found" in result.stderr


async def test_a_training_config_with_4_and_8_bit_is_refused_at_apply(
    kubectl: Kubectl, admission: WebhookServer
) -> None:
    both = "training_config:\n  QuantizationConfig:\n    load_in_4bit: true\n    load_in_8bit: true\n"
    fine = "training_config:\n  LoraConfig:\n    r: 16\n"
    for name, text in (("both-widths", both), ("r16", fine)):
        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"training_config.yaml": text},
        }
        await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(config))
    result = await kubectl(
        "apply", "-f", "-", stdin=yaml.safe_dump(edit(TUNING, "tuning.config", "both-widths")), check=False
    )
    assert result.rc != 0
    assert "tuning.config: ConfigMap both-widths training_config.yaml: QuantizationConfig: load_in_4bit and" in (
        result.stderr
    )
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(edit(TUNING, "tuning.config", "r16")))


def admission_request(operation: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> AdmissionRequest:
    kind = {"group": "kaito.sh", "version": "v1beta1", "kind": "Workspace"}
    resource = {"group": "kaito.sh", "version": "v1beta1", "resource": "workspaces"}
    name = obj["metadata"]["name"]
    return AdmissionRequest("uid", operation, kind, resource, "default", name, obj, old, False, "tester")


async def test_admission_sizes_a_new_workspace_once_and_a_planned_one_not_again() -> None:
    sizing = CountingSizing()
    catalog = Catalog.builtin()
    validate = workspace_validator(catalog=lambda: catalog, cloud="azure", client=None, sizing=sizing)
    assert (await validate(admission_request("CREATE", INFERENCE))).allowed
    assert sizing.runs == 1
    too_big = edit(INFERENCE, "inference.preset.name", "deepseek-v3-0324")
    refused = await validate(admission_request("CREATE", too_big))
    assert not refused.allowed and "instance types that fit" in str(refused.errors[0])
    assert sizing.runs == 2
    plan, _ = plan_workspace(Workspace.parse(INFERENCE), catalog=catalog, cloud="azure")
    running = {**INFERENCE, "status": {"plan": plan.to_wire()}}
    relabelled = edit(running, "metadata.labels", {"team": "a"})
    assert (await validate(admission_request("UPDATE", relabelled, old=running))).allowed
    assert sizing.runs == 2
