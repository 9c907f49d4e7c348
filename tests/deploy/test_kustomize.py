"""deploy/: both overlays render with the real kustomize, validate, hold least-privilege RBAC and apply to the sim."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kaito.api.inferenceset import GATEWAY_SERVICE_ACCOUNT
from kaito.api.tuningconfig import CONFIG_KEY, method_defaults, parse_training_config
from kaito.cli_manager import add_manager_arguments, operator_options
from kaito.webhook import finalizer
from kaito.webhook import inferenceset as inferenceset_webhook
from kaito.webhook.workspace import PATH, RULES, WEBHOOK_NAME
from kaito_sim import aks
from tests.conftest import Kubectl
from tests.deploy.rendered import OVERLAYS, ROOT, Obj, find, manager_container, render

OUR_GROUPS = ("kaito.sh/", "karpenter.sh/")
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
POD = {"metadata.namespace": "kaito-system", "metadata.name": "kaito-manager-7d9f-abcde"}
WEBHOOK_CONFIGURATION = "kaito-validating-webhook-configuration"  # the name kaito.operator applies
LEASE = "kaito-manager-lock"  # kaito.operator's leader_election_id


def _env(objs: list[Obj], extra: dict[str, str]) -> dict[str, str]:
    """The manager container's environment as the kubelet would build it (envFrom, then env with $(VAR))."""
    container = manager_container(objs)
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(find(objs, "ConfigMap", source["configMapRef"]["name"])["data"])
    env.update(extra)
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"])
        else:
            env[var["name"]] = POD[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def _manager_args(objs: list[Obj], monkeypatch: pytest.MonkeyPatch, extra: dict[str, str]) -> argparse.Namespace:
    container = manager_container(objs)
    for name, value in _env(objs, extra).items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    add_manager_arguments(parser)
    assert container["args"][0] == "manager"
    return parser.parse_args(container["args"][1:])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_against_kubernetes_1_32(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    kinds = {o["kind"] for o in objs}
    assert {"Namespace", "CustomResourceDefinition", "Deployment", "ValidatingWebhookConfiguration"} <= kinds
    assert "MutatingWebhookConfiguration" in kinds
    for obj in objs:
        assert not obj["apiVersion"].startswith(OUR_GROUPS), "custom resources are checked by applying them"
        kubernetes_validate.validate(obj, desired_version="1.32", strict=True)
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == "kaito-system", obj["metadata"]["name"]


def test_the_crds_are_the_generated_ones() -> None:
    rendered = {o["metadata"]["name"]: o for o in render("base") if o["kind"] == "CustomResourceDefinition"}
    for path in sorted((ROOT / "crds").glob("*_*.yaml")):
        generated = yaml.safe_load(path.read_text())
        ours = rendered.pop(generated["metadata"]["name"])
        ours["metadata"].pop("labels")  # the base labels every object part-of kaito
        assert ours == generated
    assert not rendered


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_has_no_wildcards_and_binds_the_manager(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    roles = [o for o in objs if o["kind"] in ("Role", "ClusterRole")]
    assert {(r["kind"], r["metadata"]["name"]) for r in roles} == {
        ("ClusterRole", "kaito-manager"),
        ("ClusterRole", "kaito-gateway"),
        ("Role", "kaito-manager-leader-election"),
    }
    for role in roles:
        for rule in role["rules"]:
            for key in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
                assert not any("*" in value for value in rule.get(key) or []), f"{role['metadata']['name']}: {rule}"
    sa = {"kind": "ServiceAccount", "name": "kaito-manager", "namespace": "kaito-system"}
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = next(o for o in objs if o["kind"] == kind)
        assert binding["subjects"] == [sa] and binding["roleRef"]["kind"] == role_kind
        assert find(objs, role_kind, binding["roleRef"]["name"])
    webhook_rule = next(
        r
        for r in find(objs, "ClusterRole", "kaito-manager")["rules"]
        if "validatingwebhookconfigurations" in r["resources"]
    )
    assert webhook_rule["resourceNames"] == [WEBHOOK_CONFIGURATION]
    mutating_rule = next(
        r
        for r in find(objs, "ClusterRole", "kaito-manager")["rules"]
        if "mutatingwebhookconfigurations" in r["resources"]
    )
    assert mutating_rule["resourceNames"] == [finalizer.CONFIGURATION_NAME]
    lease_rules = find(objs, "Role")["rules"]
    assert [r.get("resourceNames") for r in lease_rules] == [None, [LEASE]]
    assert find(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "kaito-manager"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manager_runs_locked_down_with_probes(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    pod = find(objs, "Deployment")["spec"]["template"]["spec"]
    container = manager_container(objs)
    assert container["image"] == "kaito-manager:0.1.0"
    context = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8081}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8081}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081, "webhook": 9443}
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    for service, port, target in (("kaito-metrics", 8080, 8080), ("kaito-webhook", 443, 9443)):
        spec = find(objs, "Service", service)["spec"]
        assert spec["selector"].items() <= pod_labels(objs).items()
        assert [(p["port"], ports[p["targetPort"]]) for p in spec["ports"]] == [(port, target)]


def pod_labels(objs: list[Obj]) -> dict[str, str]:
    labels: dict[str, str] = find(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_webhook_registration_matches_what_the_manager_serves(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render(f"overlays/{overlay}")
    config = find(objs, "ValidatingWebhookConfiguration", WEBHOOK_CONFIGURATION)
    [webhook] = config["webhooks"]
    assert webhook["name"] == WEBHOOK_NAME and webhook["rules"] == RULES
    assert "caBundle" not in webhook["clientConfig"], "the manager fills the CA of the certificate it makes"
    service = webhook["clientConfig"]["service"]
    assert (service["namespace"], service["name"], service["port"], service["path"]) == (
        "kaito-system",
        "kaito-webhook",
        443,
        PATH,
    )
    [mutating] = find(objs, "MutatingWebhookConfiguration", finalizer.CONFIGURATION_NAME)["webhooks"]
    assert mutating["name"] == finalizer.WEBHOOK_NAME and mutating["rules"] == finalizer.RULES
    assert "caBundle" not in mutating["clientConfig"]
    assert mutating["clientConfig"]["service"] == {**service, "path": finalizer.PATH}
    args = _manager_args(objs, monkeypatch, {"ARM_URL": "https://127.0.0.1:1", "ARM_TOKEN": "t"})
    options = operator_options(args)
    assert options.webhook_service == ("kaito-system", "kaito-webhook", 443)
    assert options.leader_election and options.namespace == "kaito-system"
    assert (options.metrics_address, options.health_address, options.webhook_address) == (":8080", ":8081", ":9443")


def test_sim_overlay_targets_the_simulated_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render("overlays/sim")
    args = _manager_args(objs, monkeypatch, {"ARM_URL": "https://127.0.0.1:1", "ARM_TOKEN": "t"})
    assert args.cloud == "sim"
    assert (args.subscription_id, args.resource_group, args.cluster_name) == (
        aks.SUBSCRIPTION,
        aks.RESOURCE_GROUP,
        aks.CLUSTER,
    )
    assert args.arm_ca == "/etc/kaito/arm/ca.crt" and args.arm_url == "https://127.0.0.1:1"
    assert manager_container(objs)["imagePullPolicy"] == "Never"


def test_azure_overlay_uses_workload_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render("overlays/azure")
    args = _manager_args(objs, monkeypatch, {})
    assert args.cloud == "azure" and args.arm_token is None
    assert args.subscription_id and args.resource_group and args.cluster_name
    client_id = _env(objs, {})["AZURE_CLIENT_ID"]
    annotations = find(objs, "ServiceAccount", "kaito-manager")["metadata"]["annotations"]
    assert annotations == {"azure.workload.identity/client-id": client_id}
    assert pod_labels(objs)["azure.workload.identity/use"] == "true"
    selector = find(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert "azure.workload.identity/use" not in selector


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_tuning_templates_hold_the_method_defaults(method: str) -> None:
    data = find(render("base"), "ConfigMap", f"{method}-params-template")["data"]
    assert list(data) == [CONFIG_KEY]
    assert yaml.safe_load(data[CONFIG_KEY]) == {"training_config": method_defaults(method)}
    parsed = parse_training_config(data[CONFIG_KEY], method)
    assert parsed == parse_training_config(None, method)


async def test_sim_overlay_applies_to_the_sim_with_kubectl(kubectl: Kubectl) -> None:
    overlay = str(ROOT / "deploy/overlays/sim")
    first = await kubectl("apply", "-k", overlay, namespaced=False)
    created = {line.split()[0] for line in first.stdout.splitlines() if line.endswith(" created")}
    assert {
        "clusterrole.rbac.authorization.k8s.io/kaito-manager",
        "customresourcedefinition.apiextensions.k8s.io/workspaces.kaito.sh",
        "deployment.apps/kaito-manager",
        f"validatingwebhookconfiguration.admissionregistration.k8s.io/{WEBHOOK_CONFIGURATION}",
        f"mutatingwebhookconfiguration.admissionregistration.k8s.io/{finalizer.CONFIGURATION_NAME}",
    } <= created
    again = await kubectl("apply", "-k", overlay, namespaced=False)
    assert all(line.endswith(" unchanged") for line in again.stdout.splitlines()), again.stdout
    crd = (await kubectl("get", "crd", "workspaces.kaito.sh", "-o", "json", namespaced=False)).json()
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established["Established"] == "True"
    stored = (await kubectl("get", "clusterrole", "kaito-manager", "-o", "json", namespaced=False)).json()
    assert stored["rules"] == find(render("overlays/sim"), "ClusterRole", "kaito-manager")["rules"]


def test_the_crds_kustomization_lists_every_generated_file() -> None:
    listed: dict[str, Any] = yaml.safe_load((ROOT / "crds/Kustomization").read_text())
    assert sorted(listed["resources"]) == sorted(p.name for p in Path(ROOT / "crds").glob("*_*.yaml"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_inferenceset_webhook_and_gateway_role_match_the_manager(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    config = find(objs, "ValidatingWebhookConfiguration", inferenceset_webhook.CONFIGURATION_NAME)
    [webhook] = config["webhooks"]
    assert webhook["name"] == inferenceset_webhook.WEBHOOK_NAME and webhook["rules"] == inferenceset_webhook.RULES
    assert webhook["clientConfig"]["service"]["path"] == inferenceset_webhook.PATH
    manager_rules = find(objs, "ClusterRole", "kaito-manager")["rules"]
    webhook_rules = [r for r in manager_rules if "validatingwebhookconfigurations" in r["resources"]]
    names = {name for rule in webhook_rules for name in rule["resourceNames"]}
    assert inferenceset_webhook.CONFIGURATION_NAME in names
    bind = next(r for r in manager_rules if "bind" in r["verbs"])
    assert bind["resources"] == ["clusterroles"] and bind["resourceNames"] == [GATEWAY_SERVICE_ACCOUNT]
    gateway = {
        (resource, verb)
        for rule in find(objs, "ClusterRole", GATEWAY_SERVICE_ACCOUNT)["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for resource in ("workspaces", "services", "endpoints"):
        assert {(resource, "get"), (resource, "list"), (resource, "watch")} <= gateway
    assert {("inferencesets", "get"), ("inferencesets", "patch")} <= gateway
