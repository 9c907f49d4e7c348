"""The manager's RBAC from deploy/ is sufficient (nothing it asks is denied) and minimal (every grant is used).

The manager runs under a token minted for kaito-system/kaito-manager, bound only by the rendered
`deploy/overlays/sim` ClusterRole and Role. The sim records who asked what and whether it was allowed;
each granted (verb, group, resource) is matched to the first named step whose requests used it.
Dropping a rule shows the step that needs it failing. The model image grants (a pull secret read at admission,
the puller's log read for progress) are proven by their own test, whose pods run the puller as a real process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from kaito.operator import OperatorOptions, build
from kaito.provisioner.azure import AzureProvider
from kaito.runtime.client import Client
from kaito_sim.aks import SimulatedAks
from kaito_sim.apiserver.http import RequestRecord
from kaito_sim.apiserver.kubeconfig import kubeconfig_dict, write_kubeconfig
from kaito_sim.demo.operator import simulated_azure_provider
from kaito_sim.nodes.processes import ProcessPods
from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.deploy.rendered import ROOT, Obj, find, render
from tests.e2e.conftest import wait_workspace
from tests.e2e.test_inferenceset import demand
from tests.e2e.test_model_images import pull_secret, push_tiny_model
from tests.e2e.test_model_images import workspace as model_workspace
from tests.registry import Registry

MANAGER = "system:serviceaccount:kaito-system:kaito-manager"
INSTALLED = {"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "Role"}
INSTALLED |= {"ClusterRoleBinding", "RoleBinding", "ConfigMap"}
PHI3 = "workspace-phi-3-mini"
TUNING = "workspace-phi-3-tuning"
LLAMA = "workspace-llama-3-1-8b"
REVISION_LABEL = "workspace.kaito.io/name"
# Used only where pods run their model puller as a real process, so proven by their own test below.
MODEL_IMAGE_GRANTS = {("get", "", "secrets"), ("get", "", "pods/log")}
# Binding the gateway's role is checked by a real API server's escalation check, which the sim does not run.
UNCHECKED_GRANTS = {("bind", "rbac.authorization.k8s.io", "clusterroles")}
GATEWAY_ROLE = "kaito-gateway"  # bound to the gateways, not to the manager
ISET = "inferenceset-phi-3-mini"


class Grant(NamedTuple):
    """One verb on one resource, as a Role or ClusterRole rule grants it."""

    role: str
    verb: str
    group: str
    resource: str
    names: tuple[str, ...]

    def used_by(self, record: RequestRecord) -> bool:
        return record.allowed and any(
            (c.verb, c.group, c.qualified) == (self.verb, self.group, self.resource)
            and (not self.names or c.name in self.names)
            and (self.role == "ClusterRole" or c.namespace == "kaito-system")
            for c in record.checks
        )

    def __str__(self) -> str:
        names = f" {list(self.names)}" if self.names else ""
        return f"{self.role:11} {self.verb:6} {self.group or 'core'}/{self.resource}{names}"


def grants(objs: list[Obj]) -> list[Grant]:
    return [
        Grant(obj["kind"], verb, group, resource, tuple(rule.get("resourceNames") or ()))
        for obj in objs
        if obj["kind"] in ("ClusterRole", "Role") and obj["metadata"]["name"] != GATEWAY_ROLE
        for rule in obj["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]


def manifests(*, drop: tuple[str, str, str] | None = None) -> list[Obj]:
    """The rendered sim overlay's CRDs, namespace, identity, RBAC and templates; `drop` removes one granted verb."""
    objs = [o for o in render("overlays/sim") if o["kind"] in INSTALLED]
    if drop is not None:
        group, resource, verb = drop
        rules = find(objs, "ClusterRole", "kaito-manager")["rules"]
        rule = next(r for r in rules if group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"])
        assert rule["apiGroups"] == [group] and rule["resources"] == [resource], "drop from a one-resource rule"
        rule["verbs"].remove(verb)
    return objs


@dataclass
class Cluster:
    """The simulated AKS cluster with the kaito RBAC installed, and the manager running under its own token."""

    sim: SimServer
    aks: SimulatedAks
    kubectl: Kubectl
    tmp_path: Path
    steps: list[tuple[str, int]] = field(default_factory=list)
    _stop: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None
    _client: Client | None = None
    _provider: AzureProvider | None = None

    async def install(self, objs: list[Obj]) -> None:
        await self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objs), namespaced=False)

    def step(self, name: str) -> None:
        self.steps.append((name, len(self.sim.requests)))

    async def start_manager(self, *, model_registry_ca: Path | None = None) -> None:
        minted = await self.kubectl("create", "token", "kaito-manager", "-n", "kaito-system", namespaced=False)
        config = kubeconfig_dict(server=self.sim.url, ca_pem=self.sim.ca_pem, token=minted.stdout.strip())
        path = write_kubeconfig(self.tmp_path / "manager.kubeconfig", config)
        self._client = await Client.from_config(kubeconfig=path, qps=0, burst=0)
        self._provider = simulated_azure_provider(self.aks)
        options = OperatorOptions(
            namespace="kaito-system",
            metrics_address="127.0.0.1:0",
            health_address="127.0.0.1:0",
            webhook_address="127.0.0.1:0",
            leader_election=True,
            nodeclaim_poll_interval=0.2,
            nodeclaim_retry_interval=0.5,
            model_registry_ca=model_registry_ca,
        )
        manager = build(self._client, self._provider, options)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(manager.run(self._stop))
        await asyncio.wait_for(manager.elected.wait(), 15)

    async def stop_manager(self) -> None:
        if self._stop is not None and self._task is not None:
            self._stop.set()
            await asyncio.wait_for(self._task, 30)
        if self._provider is not None:
            await self._provider.close()
        if self._client is not None:
            await self._client.close()
        self._task = self._stop = None
        self._client = self._provider = None

    def manager_requests(self) -> list[tuple[str, RequestRecord]]:
        """The manager's requests, each with the name of the step it was made in."""
        records = self.sim.requests
        bounds = [*self.steps[1:], ("", len(records))]
        return [
            (name, record)
            for (name, start), (_, end) in zip(self.steps, bounds, strict=True)
            for record in records[start:end]
            if record.user == MANAGER
        ]

    def denials(self) -> list[str]:
        return [
            f"{r.method} {r.path} ({c.verb} {c.qualified})"
            for _, r in self.manager_requests()
            if not r.allowed
            for c in r.checks[-1:]
        ]


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[SimServer]:
    """The simulated cluster; a test parametrized with `ProcessPods` (indirectly) gets real init containers."""
    async with SimServer(bookmark_interval=0.5, process_pods=getattr(request, "param", None)) as server:
        yield server


@pytest.fixture
async def cluster(sim: SimServer, kubectl: Kubectl, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with SimulatedAks(sim, provisioning_delay=0.1) as aks:
        made = Cluster(sim, aks, kubectl, tmp_path)
        yield made
        await made.stop_manager()


async def json_of(kubectl: Kubectl, *args: str) -> Any:
    return (await kubectl("get", *args, "-o", "json")).json()


async def until(probe: Any, what: str, within: float = 30) -> None:
    for _ in range(int(within / 0.2)):
        if await probe():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def workspace(source: str, name: str, **changes: Any) -> str:
    ws = yaml.safe_load((ROOT / source).read_text())
    ws["metadata"]["name"] = name
    for section, values in changes.items():
        ws[section] = {**ws.get(section, {}), **values}
    return yaml.safe_dump(ws)


async def seed_revisions(kubectl: Kubectl, name: str, count: int) -> None:
    """Revisions from earlier specs, so the manager's next one must prune the oldest (it keeps ten)."""
    docs = [
        {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {"name": f"{name}-old{i:02d}", "labels": {REVISION_LABEL: name}},
            "data": {"spec": i},
            "revision": i + 1,
        }
        for i in range(count)
    ]
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


async def test_manager_rbac_is_sufficient_and_every_grant_is_used(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    objs = manifests()
    await cluster.install(objs)

    cluster.step("start: cache sync, leader election, webhook registration")
    await cluster.start_manager()

    cluster.step("inference: the phi-3 example to WorkspaceSucceeded, 10 older revisions on record")
    await seed_revisions(kubectl, PHI3, 10)
    await kubectl("apply", "-f", str(ROOT / "examples/inference/kaito_workspace_phi_3.yaml"))
    ws = await wait_workspace(kubectl, PHI3, "WorkspaceSucceeded", "True")
    assert ws["status"]["state"] == "Ready"
    revisions = await json_of(kubectl, "controllerrevisions", "-l", f"{REVISION_LABEL}={PHI3}")
    names = {r["metadata"]["name"] for r in revisions["items"]}
    assert len(names) == 10 and f"{PHI3}-old00" not in names, names

    cluster.step("tuning: admission reads the qlora template copied into the namespace, the Job starts")
    template = find(objs, "ConfigMap", "qlora-params-template")
    copied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "qlora-params"}, "data": template["data"]}
    await kubectl("apply", "-f", "-", stdin=json.dumps(copied))
    tuning = workspace("examples/tuning/kaito_workspace_tuning_phi_3.yaml", TUNING, tuning={"config": "qlora-params"})
    await kubectl("apply", "-f", "-", stdin=tuning)
    await wait_workspace(kubectl, TUNING, "JobStarted", "True")

    cluster.step("multi-node: llama-3.1-8b on T4 nodes runs as a StatefulSet")
    await kubectl("create", "secret", "generic", "hf", "--from-literal=HF_TOKEN=x")
    llama = workspace(
        "examples/inference/kaito_workspace_phi_3.yaml",
        LLAMA,
        resource={"instanceType": "Standard_NC4as_T4_v3"},
        inference={"preset": {"name": "llama-3.1-8b-instruct", "presetOptions": {"modelAccessSecret": "hf"}}},
    )
    await kubectl("apply", "-f", "-", stdin=llama)

    async def statefulset() -> bool:
        return (await kubectl("get", "statefulset", LLAMA, check=False)).rc == 0

    await until(statefulset, "the llama StatefulSet")

    cluster.step("inferenceset: at zero, back to one replica on demand, then scaled to zero again")
    iset = yaml.safe_load((ROOT / "examples/inference/inferenceset_phi_3.yaml").read_text())
    iset["spec"].update(replicas=0, autoscaling={"minReplicas": 0, "maxReplicas": 1})
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(iset))

    async def reason(expected: str) -> bool:
        status = (await json_of(kubectl, "inferenceset", ISET)).get("status") or {}
        return status.get("lastScaleReason") == expected

    await until(lambda: reason("ScaleToZero"), "the set at zero")
    await demand(kubectl, ISET)
    await until(lambda: reason("ScaleFromZero"), "the set back to one replica")
    await kubectl("scale", "inferenceset", ISET, "--replicas=0")

    async def no_children() -> bool:
        return not (await json_of(kubectl, "workspaces", "-l", f"kaito.sh/inferenceset={ISET}"))["items"]

    await until(no_children, "the set's children to go")
    await kubectl("delete", "inferenceset", ISET)

    cluster.step("delete: workspaces finalized, NodeClaims, instances and Nodes gone")
    await kubectl("delete", "workspaces", "--all", "--timeout=60s")

    async def all_gone() -> bool:
        claims = await json_of(kubectl, "nodeclaims")
        nodes = (await json_of(kubectl, "nodes"))["items"]
        gpu = [n for n in nodes if "nvidia.com/gpu" in (n["status"].get("capacity") or {})]
        return not claims["items"] and not gpu and not cluster.aks.arm.pools

    await until(all_gone, "NodeClaims, agent pools and GPU nodes to go")
    assert (await json_of(kubectl, "workspaces"))["items"] == []

    cluster.step("stop: the lease is released")
    await cluster.stop_manager()

    requests = cluster.manager_requests()
    assert len(requests) > 50, "the manager should have run under its service account token"
    assert not cluster.denials(), "the manager was refused:\n" + "\n".join(cluster.denials())
    runtime = [r for r in cluster.sim.requests if r.user_agent.startswith("kaito-runtime")]
    assert runtime and {r.user for r in runtime} == {MANAGER}
    first_use = {g: next((step for step, r in requests if g.used_by(r)), None) for g in grants(objs)}
    for g in first_use:
        if (g.verb, g.group, g.resource) in MODEL_IMAGE_GRANTS and first_use[g] is None:
            first_use[g] = "(test_model_image_grants_are_used: the puller runs as a real process there)"
        if (g.verb, g.group, g.resource) in UNCHECKED_GRANTS and first_use[g] is None:
            first_use[g] = "(an escalation check the sim does not run)"
    report = "\n".join(f"{g}  <-  {step or 'NEVER USED'}" for g, step in first_use.items())
    print(f"\nRBAC grants and the first step that used each:\n{report}")
    assert all(first_use.values()), f"grants nobody used:\n{report}"


@pytest.mark.parametrize(
    ("drop", "denied"),
    [
        (("kaito.sh", "workspaces/status", "patch"), "patch workspaces/status"),
        (("karpenter.sh", "nodeclaims", "create"), "create nodeclaims"),
    ],
)
async def test_without_a_rule_its_step_fails(cluster: Cluster, drop: tuple[str, str, str], denied: str) -> None:
    kubectl = cluster.kubectl
    await cluster.install(manifests(drop=drop))
    cluster.step("start")
    await cluster.start_manager()
    cluster.step("inference: the phi-3 example")
    await kubectl("apply", "-f", str(ROOT / "examples/inference/kaito_workspace_phi_3.yaml"))

    async def refused() -> bool:
        return any(d.endswith(f"({denied})") for d in cluster.denials())

    await until(refused, f"the manager to be refused {denied}", within=15)
    await asyncio.sleep(1.5)  # room for retries: nothing may get past the missing rule
    ws = await json_of(kubectl, "workspace", PHI3)
    claims = (await json_of(kubectl, "nodeclaims"))["items"]
    if drop[1] == "workspaces/status":
        assert "status" not in ws, "the workspace must never get a status"
        assert len(claims) == 1, "everything but the status write still works"
    else:
        assert claims == [] and not cluster.aks.arm.pools, "no NodeClaim, so no node"
        assert (ws.get("status") or {}).get("state") != "Ready"
    assert {d.split("(")[1] for d in cluster.denials()} == {f"{denied})"}


@pytest.mark.parametrize("sim", [ProcessPods()], indirect=True, ids=["process-pods"])
async def test_model_image_grants_are_used(
    cluster: Cluster, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubectl = cluster.kubectl
    objs = manifests()
    await cluster.install(objs)
    assert registry.ca_file is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(registry.ca_file))  # what the puller's process trusts
    cluster.step("start")
    await cluster.start_manager(model_registry_ca=registry.ca_file)

    cluster.step("model image: admission sizes an uncatalogued image with its pull secret; the pull's progress is read")
    image = push_tiny_model(registry, tmp_path, "rbac")
    await pull_secret(kubectl, registry, tmp_path, name="model-pull", password=None)
    await kubectl("apply", "-f", "-", stdin=model_workspace("tiny", "tiny-llama", image))
    with registry.paused():  # the puller's requests hang: it stays in its init step until the registry goes on

        async def progress_read() -> bool:
            return any(c.qualified == "pods/log" for _, r in cluster.manager_requests() for c in r.checks if r.allowed)

        await wait_workspace(kubectl, "tiny", "InferenceReady", "False", reason="PullingModel", within=60)
        await until(progress_read, "the manager to read the puller's log")
    cluster.step("stop")
    await cluster.stop_manager()

    assert not cluster.denials(), "the manager was refused:\n" + "\n".join(cluster.denials())
    used = {(g.verb, g.group, g.resource) for g in grants(objs) for _, r in cluster.manager_requests() if g.used_by(r)}
    assert used >= MODEL_IMAGE_GRANTS, used
