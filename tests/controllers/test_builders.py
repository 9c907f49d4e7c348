"""The pure builders: objects valid against the Kubernetes 1.32 schemas, shaped by the plan and the workspace."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from kaito.api.engine import EngineConfig
from kaito.api.workspace import Workspace
from kaito.controllers.build_job import build_job, build_tuning_configmap
from kaito.controllers.build_nodeclaims import build_nodeclaims, nodeclaim_name
from kaito.controllers.build_workload import build_engine_configmap, build_services, build_workload
from kaito.controllers.context import Settings, Target
from kaito.presets.catalog import Catalog
from kaito.workspaces.plan import plan_workspace

CATALOG = Catalog.builtin()


def workspace(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "phi", "namespace": "team-a", "uid": "1111-2222"},
        "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"apps": "phi-3"}}},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
    }
    raw.update(changes)
    return raw


def target_for(raw: dict[str, Any], settings: Settings | None = None) -> Target:
    ws = Workspace.parse(raw)
    plan, model = plan_workspace(ws, catalog=CATALOG, cloud="azure")
    return Target(ws=ws, uid=raw["metadata"]["uid"], plan=plan, model=model, settings=settings or Settings())


def valid(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, desired_version="1.32", strict=True)


def test_single_node_plan_builds_a_valid_deployment_and_services() -> None:
    target = target_for(workspace())
    workload = build_workload(target, revision="1")
    assert workload["kind"] == "Deployment" and workload["spec"]["replicas"] == 1
    for obj in [workload, build_engine_configmap(target), *build_services(target)]:
        valid(obj)
    pod = workload["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert server["command"][:2] == ["kaito", "serve"]
    assert {t["key"] for t in pod["tolerations"]} == {"sku", "nvidia.com/gpu"}
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    keys = {e["key"] for e in terms[0]["matchExpressions"]}
    assert {"apps", "kaito.sh/workspace", "kaito.sh/workspacenamespace"} <= keys
    assert {v["name"] for v in pod["volumes"]} >= {"dshm", "engine-config"}
    assert server["startupProbe"]["failureThreshold"] * 10 >= 30 * 60  # download + load of 7 GiB
    [service] = build_services(target)  # one pod needs no headless Service
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 5000, "protocol": "TCP"}]
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == "1111-2222" for o in [workload, service])


def test_engine_config_carries_the_plan() -> None:
    target = target_for(workspace())
    config = yaml.safe_load(build_engine_configmap(target)["data"]["engine.yaml"])
    assert config["model"] == "microsoft/Phi-3-mini-4k-instruct"
    flags = EngineConfig.parse(config).plan_flags()
    assert "--dtype=float16" in flags and "--max-model-len=4096" in flags
    assert config["servedModelName"] == "phi-3-mini-4k-instruct"


def test_multi_node_plan_builds_a_statefulset_led_by_pod_zero() -> None:
    raw = workspace(
        inference={"preset": {"name": "llama-3.1-8b-instruct", "presetOptions": {"modelAccessSecret": "hf"}}},
    )
    raw["resource"]["instanceType"] = "Standard_NC4as_T4_v3"
    target = target_for(raw)
    assert target.nodes > 1
    workload = build_workload(target, revision="3")
    valid(workload)
    assert workload["kind"] == "StatefulSet" and workload["spec"]["replicas"] == target.nodes
    assert workload["spec"]["serviceName"] == "phi-headless"
    server = workload["spec"]["template"]["spec"]["containers"][0]
    assert "--leader-address" in server["command"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}} in server["env"]
    service, headless = build_services(target)
    assert service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == "phi-0"
    assert headless["metadata"]["name"] == workload["spec"]["serviceName"]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    for obj in (service, headless):
        valid(obj)
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "1111-2222"
    claims = build_nodeclaims(target)
    assert len(claims) == target.nodes and len({c["metadata"]["name"] for c in claims}) == target.nodes


def template_with(adapters: list[dict[str, Any]]) -> dict[str, Any]:
    target = target_for(workspace(inference={"preset": {"name": "phi-3-mini-4k-instruct"}, "adapters": adapters}))
    template: dict[str, Any] = build_workload(target, revision="1")["spec"]["template"]
    return template


def image_adapter(name: str, image: str, *secrets: str) -> dict[str, Any]:
    return {"source": {"name": name, "image": image, "imagePullSecrets": list(secrets)}}


def test_the_pod_template_stays_as_it_is_when_image_adapters_are_added_replaced_or_removed() -> None:
    one = [image_adapter("a0", "registry.example.com/a0:1", "pull")]
    before = template_with(one)
    assert not before["spec"].get("initContainers")
    assert template_with([*one, image_adapter("a1", "registry.example.com/a1:1", "pull")]) == before
    assert template_with([image_adapter("a0", "registry.example.com/a0:2", "pull")]) == before
    assert template_with([image_adapter("b", "registry.example.com/b:1", "pull")]) == before


def test_a_new_pull_secret_or_turning_lora_on_changes_the_template() -> None:
    one = [image_adapter("a0", "registry.example.com/a0:1", "pull")]
    with_other_secret = template_with([*one, image_adapter("a1", "registry.example.com/a1:1", "other")])
    volumes = {v["name"]: v for v in with_other_secret["spec"]["volumes"]}
    sources = volumes["adapter-pull-secrets"]["projected"]["sources"]
    assert [s["secret"]["name"] for s in sources] == ["other", "pull"]
    assert all(s["secret"]["optional"] for s in sources)  # a missing Secret fails its adapters alone
    assert with_other_secret != template_with(one)
    assert "kaito.sh/lora-rank" not in (template_with([])["metadata"].get("annotations") or {})
    assert template_with(one)["metadata"]["annotations"]["kaito.sh/lora-rank"] == "16"


def test_nodeclaims_are_deterministic_and_carry_the_workspace() -> None:
    target = target_for(workspace())
    [claim] = build_nodeclaims(target)
    assert claim["metadata"]["name"] == nodeclaim_name(target, 0) == nodeclaim_name(target_for(workspace()), 0)
    labels = claim["metadata"]["labels"]
    assert labels["kaito.sh/workspace"] == "phi" and labels["kaito.sh/workspacenamespace"] == "team-a"
    assert labels["apps"] == "phi-3"
    assert {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["Standard_NC6s_v3"]} in claim[
        "spec"
    ]["requirements"]
    assert claim["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    other = target_for(workspace(metadata={"name": "phi", "namespace": "team-b", "uid": "x"}))
    assert nodeclaim_name(other, 0) != claim["metadata"]["name"]


def test_bring_your_own_nodes_affinity_uses_only_the_label_selector() -> None:
    target = target_for(workspace(), Settings(bring_your_own_nodes=True))
    terms = build_workload(target, revision="1")["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    expressions = terms["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
    assert expressions == [{"key": "apps", "operator": "In", "values": ["phi-3"]}]


@pytest.mark.parametrize("method", ["lora", "QLoRA"])
def test_tuning_job_is_valid(method: str) -> None:
    raw = workspace(
        tuning={
            "preset": {"name": "phi-3-mini-4k-instruct"},
            "method": method,
            "input": {"urls": ["https://example.com/d.parquet"]},
            "output": {"image": "r.example.com/a:1", "imagePushSecret": "push"},
        }
    )
    del raw["inference"]
    target = target_for(raw)
    job = build_job(target, revision="1")
    valid(job)
    valid(build_tuning_configmap(target))
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    config = yaml.safe_load(build_tuning_configmap(target)["data"]["tuning.yaml"])
    assert config["method"] == method.lower()


def test_a_user_pod_template_runs_as_written_on_the_gpu_nodes() -> None:
    containers = [{"name": "mine", "image": "example.com/my-server:1", "ports": [{"containerPort": 5000}]}]
    template: dict[str, Any] = {
        "metadata": {"labels": {"app": "custom"}},
        "spec": {"containers": containers},
    }
    raw = workspace(inference={"template": template})
    target = target_for(raw)
    workload = build_workload(target, revision="1")
    valid(workload)
    pod = workload["spec"]["template"]
    assert pod["spec"]["containers"] == containers
    assert pod["metadata"]["labels"]["app"] == "custom" and pod["metadata"]["labels"]["kaito.sh/workspace"] == "phi"
    assert {t["key"] for t in pod["spec"]["tolerations"]} == {"sku", "nvidia.com/gpu"}
    assert "nodeAffinity" in pod["spec"]["affinity"]
