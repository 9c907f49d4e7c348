"""The sim's authentication and RBAC: TokenRequest, Role/ClusterRole decisions and the apiserver's 403 wording."""

from __future__ import annotations

import base64
import json
import ssl
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kaito.api import crds
from kaito_sim.apiserver.kubeconfig import kubeconfig_dict, write_kubeconfig
from kaito_sim.apiserver.rbac import Attributes, request_attributes, rule_allows
from kaito_sim.server import SimServer
from tests.conftest import Kubectl

Q: dict[str, str] = {}
RBAC = "rbac.authorization.k8s.io"


def role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": meta, "rules": rules}


def binding(
    kind: str, name: str, ref: tuple[str, str], subjects: list[dict[str, str]], namespace: str = ""
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name} | ({"namespace": namespace} if namespace else {})
    role_ref = {"apiGroup": RBAC, "kind": ref[0], "name": ref[1]}
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": meta, "roleRef": role_ref, "subjects": subjects}


async def apply(admin: Kubectl, *objs: dict[str, Any]) -> None:
    """Apply as the admin; each object carries its own namespace (cluster-scoped ones none)."""
    await admin("apply", "-f", "-", stdin=yaml.safe_dump_all(objs), namespaced=False)


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


class Identity:
    """A service account in the test namespace, and a kubectl that uses a token minted for it."""

    def __init__(self, admin: Kubectl, sim: SimServer, tmp_path: Path, name: str = "bot") -> None:
        self.admin, self.sim, self.tmp_path, self.name = admin, sim, tmp_path, name
        self.user = f"system:serviceaccount:{admin.namespace}:{name}"
        self.subject = {"kind": "ServiceAccount", "name": name, "namespace": admin.namespace}
        self.token = ""

    async def grant(self, rules: list[dict[str, Any]]) -> None:
        """(Re)write the Role `bot` in the test namespace and bind it to this service account."""
        ns = self.admin.namespace
        ref = ("Role", self.name)
        await apply(
            self.admin, role("Role", self.name, rules, ns), binding("RoleBinding", self.name, ref, [self.subject], ns)
        )

    async def login(self, *token_args: str) -> Kubectl:
        await self.admin("create", "serviceaccount", self.name, check=False)
        self.token = (await self.admin("create", "token", self.name, *token_args)).stdout.strip()
        return self.kubectl(self.token)

    def kubectl(self, token: str) -> Kubectl:
        home = self.tmp_path / f"sa-{uuid.uuid4().hex[:6]}"
        config = kubeconfig_dict(server=self.sim.url, ca_pem=self.sim.ca_pem, token=token)
        path = write_kubeconfig(home / "kubeconfig", config)
        (home / "cache").mkdir()
        return Kubectl(path, home / "cache", self.admin.namespace)


@pytest.fixture
def bot(kubectl: Kubectl, sim: SimServer, tmp_path: Path) -> Identity:
    return Identity(kubectl, sim, tmp_path)


# ----- request attributes and rule matching, as the apiserver computes them


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/a/pods/p", Q, "get - pods a p"),
        ("GET", "/api/v1/namespaces/a/pods", Q, "list - pods a -"),
        ("GET", "/api/v1/pods", {"watch": "True"}, "watch - pods - -"),
        ("GET", "/api/v1/namespaces/a/pods", {"watch": "0"}, "list - pods a -"),
        ("GET", "/api/v1/namespaces/a/pods", {"fieldSelector": "metadata.name=p"}, "list - pods a p"),
        ("DELETE", "/apis/apps/v1/namespaces/a/deployments", Q, "deletecollection apps deployments a -"),
        ("PATCH", "/apis/kaito.sh/v1beta1/namespaces/a/workspaces/w/status", Q, "patch kaito.sh workspaces/status a w"),
        ("GET", "/api/v1/namespaces/a", Q, "get - namespaces a a"),
        ("PUT", "/api/v1/namespaces/a/finalize", Q, "update - namespaces/finalize a a"),
        ("POST", "/api/v1/namespaces/a/serviceaccounts/s/token", Q, "create - serviceaccounts/token a s"),
        ("DELETE", "/apis/karpenter.sh/v1/nodeclaims/c", Q, "delete karpenter.sh nodeclaims - c"),
    ],
)
def test_request_attributes(method: str, path: str, query: dict[str, str], expected: str) -> None:
    attrs = request_attributes(method, path, query)
    assert attrs.resource_request
    fields = (attrs.verb, attrs.group, attrs.qualified, attrs.namespace, attrs.name)
    assert " ".join(f or "-" for f in fields) == expected


def test_discovery_paths_are_not_resource_requests() -> None:
    for path in ("/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/openapi/v3", "/version"):
        attrs = request_attributes("GET", path, {})
        assert not attrs.resource_request and attrs.verb == "get" and attrs.path == path


def test_rule_matching() -> None:
    status = Attributes("patch", "", True, "kaito.sh", "v1beta1", "workspaces", "status", "a", "w")
    assert rule_allows({"apiGroups": ["kaito.sh"], "resources": ["workspaces/status"], "verbs": ["patch"]}, status)
    assert rule_allows({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]}, status)
    assert not rule_allows({"apiGroups": ["kaito.sh"], "resources": ["workspaces"], "verbs": ["patch"]}, status)
    assert not rule_allows({"apiGroups": [""], "resources": ["workspaces/status"], "verbs": ["patch"]}, status)
    named = {"apiGroups": ["kaito.sh"], "resources": ["workspaces/status"], "verbs": ["patch"], "resourceNames": ["x"]}
    assert not rule_allows(named, status)
    assert rule_allows({**named, "resourceNames": ["w"]}, status)
    path = Attributes("get", "/openapi/v3/apis/apps/v1", False)
    assert rule_allows({"nonResourceURLs": ["/openapi/*"], "verbs": ["get"]}, path)
    assert not rule_allows({"nonResourceURLs": ["/openapi"], "verbs": ["get"]}, path)
    assert not rule_allows({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, path)


# ----- tokens


async def test_kubectl_create_token_mints_a_service_account_token(kubectl: Kubectl, bot: Identity) -> None:
    await bot.login()
    minted = claims(bot.token)
    assert minted["sub"] == bot.user and minted["exp"] - minted["iat"] == 3600
    assert minted["kubernetes.io"]["namespace"] == kubectl.namespace
    request = (await kubectl("create", "token", "bot", "--duration=20m", "-o", "json")).json()
    assert (request["kind"], request["apiVersion"]) == ("TokenRequest", "authentication.k8s.io/v1")
    assert request["spec"]["expirationSeconds"] == 1200 and request["status"]["expirationTimestamp"].endswith("Z")
    assert claims(request["status"]["token"])["exp"] - claims(request["status"]["token"])["iat"] == 1200


async def test_token_requests_are_validated(kubectl: Kubectl) -> None:
    short = await kubectl("create", "token", "default", "--duration=5m", check=False)
    assert short.rc == 1
    assert (
        'TokenRequest.authentication.k8s.io "default" is invalid: spec.expirationSeconds: '
        "Invalid value: 300: may not specify a duration less than 10 minutes" in short.stderr
    )
    missing = await kubectl("create", "token", "nobody", check=False)
    assert 'serviceaccounts "nobody" not found' in missing.stderr


async def test_a_token_dies_with_its_service_account_and_is_only_for_this_audience(
    kubectl: Kubectl, bot: Identity, sim: SimServer
) -> None:
    await apply(kubectl, binding("ClusterRoleBinding", "bot-admin", ("ClusterRole", "cluster-admin"), [bot.subject]))
    as_bot = await bot.login()
    assert (await as_bot("get", "configmaps")).rc == 0
    elsewhere = await kubectl("create", "token", "bot", "--audience=https://vault.example.com")
    assert "You must be logged in" in (await bot.kubectl(elsewhere.stdout.strip())("get", "pods", check=False)).stderr
    forged = bot.token[:-4] + ("AAAA" if not bot.token.endswith("AAAA") else "BBBB")
    assert "You must be logged in" in (await bot.kubectl(forged)("get", "pods", check=False)).stderr
    await kubectl("delete", "serviceaccount", "bot")
    await kubectl("create", "serviceaccount", "bot")  # same name, new uid: the old token stays dead
    gone = await as_bot("get", "configmaps", check=False)
    assert gone.rc == 1 and "error: You must be logged in to the server (Unauthorized)" in gone.stderr
    record = next(r for r in reversed(sim.requests) if r.path.endswith("/configmaps"))
    assert (record.user, record.allowed) == ("", False)


# ----- decisions


async def test_service_account_identity_and_groups(kubectl: Kubectl, bot: Identity, sim: SimServer) -> None:
    as_bot = await bot.login()
    denied = await as_bot("get", "pods", check=False)
    assert denied.rc == 1
    record = next(r for r in reversed(sim.requests) if r.path.endswith("/pods"))
    assert (record.user, record.allowed) == (bot.user, False)
    assert record.checks[0].verb == "list" and record.checks[0].namespace == kubectl.namespace
    group = {"kind": "Group", "name": f"system:serviceaccounts:{kubectl.namespace}"}
    ns = kubectl.namespace
    reader = role("Role", "pod-reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}], ns)
    await apply(kubectl, reader, binding("RoleBinding", "ns-sas", ("Role", "pod-reader"), [group], ns))
    assert (await as_bot("get", "pods")).rc == 0
    assert sim.requests[-1].user == bot.user and sim.requests[-1].allowed


async def test_admin_is_a_master_and_skips_rbac(kubectl: Kubectl, sim: SimServer) -> None:
    await kubectl("get", "nodes", namespaced=False)
    record = sim.requests[-1]
    assert (record.user, record.allowed, record.checks) == ("kubernetes-admin", True, ())


async def test_role_is_namespaced_clusterrole_binding_is_not(kubectl: Kubectl, bot: Identity) -> None:
    other = f"{kubectl.namespace}-other"
    await kubectl("create", "namespace", other, namespaced=False)
    as_bot = await bot.login()
    reader = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]
    ns = kubectl.namespace
    await apply(
        kubectl, role("Role", "cm", reader, ns), binding("RoleBinding", "cm", ("Role", "cm"), [bot.subject], ns)
    )
    assert (await as_bot("get", "configmaps")).rc == 0
    assert (await as_bot("get", "configmaps", "-n", other, namespaced=False, check=False)).rc == 1
    # A ClusterRole through a RoleBinding still grants only in the binding's namespace ...
    services = role("ClusterRole", "svc", [{"apiGroups": [""], "resources": ["services"], "verbs": ["list"]}])
    await apply(kubectl, services, binding("RoleBinding", "svc", ("ClusterRole", "svc"), [bot.subject], other))
    assert (await as_bot("get", "services", "-n", other, namespaced=False)).rc == 0
    assert (await as_bot("get", "services", check=False)).rc == 1
    assert (await as_bot("get", "services", "-A", namespaced=False, check=False)).rc == 1
    # ... and through a ClusterRoleBinding in every namespace and across them.
    await apply(kubectl, binding("ClusterRoleBinding", "svc", ("ClusterRole", "svc"), [bot.subject]))
    assert (await as_bot("get", "services", "-A", namespaced=False)).rc == 0


async def test_resource_names_limit_gets_and_name_selected_lists(kubectl: Kubectl, bot: Identity) -> None:
    as_bot = await bot.login()
    for name in ("mine", "theirs"):
        await kubectl("create", "configmap", name, "--from-literal=k=v")
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"], "resourceNames": ["mine"]}]
    await bot.grant(rules)
    assert (await as_bot("get", "configmap", "mine")).rc == 0
    theirs = await as_bot("get", "configmap", "theirs", check=False)
    assert f'configmaps "theirs" is forbidden: User "{bot.user}" cannot get resource "configmaps"' in theirs.stderr
    assert (await as_bot("get", "configmaps", check=False)).rc == 1  # a list names nothing
    selected = await as_bot("get", "configmaps", "--field-selector", "metadata.name=mine", "-o", "name")
    assert selected.stdout.strip() == "configmap/mine"


async def test_status_subresource_is_its_own_resource(kubectl: Kubectl, bot: Identity) -> None:
    await kubectl("apply", "-f", "-", stdin=crds.rendered()["kaito.sh_workspaces.yaml"], namespaced=False)
    await kubectl("apply", "-f", "-", stdin=_workspace("ws"))
    as_bot = await bot.login()
    status_writer = [
        {"apiGroups": ["kaito.sh"], "resources": ["workspaces", "workspaces/status"], "verbs": ["get"]},
        {"apiGroups": ["kaito.sh"], "resources": ["workspaces/status"], "verbs": ["patch"]},
    ]
    await bot.grant(status_writer)
    status, labels = '{"status": {"state": "Pending"}}', '{"metadata": {"labels": {"a": "b"}}}'
    await as_bot("patch", "workspace", "ws", "--subresource=status", "--type=merge", "-p", status)
    assert (await kubectl("get", "workspace", "ws", "-o", "jsonpath={.status.state}")).stdout == "Pending"
    main = await as_bot("patch", "workspace", "ws", "--type=merge", "-p", labels, check=False)
    assert main.stderr.strip() == (
        f'Error from server (Forbidden): workspaces.kaito.sh "ws" is forbidden: User "{bot.user}" cannot patch '
        f'resource "workspaces" in API group "kaito.sh" in the namespace "{kubectl.namespace}"'
    )
    status_writer[1]["resources"] = ["workspaces"]
    await bot.grant(status_writer)
    await as_bot("patch", "workspace", "ws", "--type=merge", "-p", labels)
    denied = await as_bot("patch", "workspace", "ws", "--subresource=status", "--type=merge", "-p", status, check=False)
    assert denied.stderr.strip() == (
        f'Error from server (Forbidden): workspaces.kaito.sh "ws" is forbidden: User "{bot.user}" cannot patch '
        f'resource "workspaces/status" in API group "kaito.sh" in the namespace "{kubectl.namespace}"'
    )


def _workspace(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace",
            "metadata": {"name": name},
            "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"a": "b"}}},
            "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
        }
    )


async def test_forbidden_wording_at_cluster_scope_and_for_missing_roles(kubectl: Kubectl, bot: Identity) -> None:
    as_bot = await bot.login()
    nodes = await as_bot("get", "nodes", namespaced=False, check=False)
    assert nodes.stderr.strip() == (
        f'Error from server (Forbidden): nodes is forbidden: User "{bot.user}" cannot list resource "nodes" '
        'in API group "" at the cluster scope'
    )
    await apply(kubectl, binding("ClusterRoleBinding", "gone", ("ClusterRole", "no-such-role"), [bot.subject]))
    node = await as_bot("get", "node", "anything", namespaced=False, check=False)
    assert node.stderr.strip() == (
        f'Error from server (Forbidden): nodes "anything" is forbidden: User "{bot.user}" cannot get resource "nodes" '
        'in API group "" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io "no-such-role" not found'
    )


async def test_server_side_apply_that_creates_needs_create(kubectl: Kubectl, bot: Identity) -> None:
    as_bot = await bot.login()
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]}]
    await bot.grant(rules)
    manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"k": "1"}})
    new = await as_bot("apply", "--server-side", "-f", "-", stdin=manifest, check=False)
    assert (
        f'configmaps "cfg" is forbidden: User "{bot.user}" cannot create resource "configmaps" in API group "" '
        f'in the namespace "{kubectl.namespace}"' in new.stderr
    )
    await kubectl("create", "configmap", "cfg", "--from-literal=k=0")
    await as_bot("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest)
    assert (await kubectl("get", "configmap", "cfg", "-o", "jsonpath={.data.k}")).stdout == "1"


async def test_discovery_is_open_to_the_authenticated_other_paths_are_not(sim: SimServer, bot: Identity) -> None:
    await bot.login()
    context = ssl.create_default_context(cadata=sim.ca_pem.decode())
    headers = {"Authorization": f"Bearer {bot.token}"}
    async with aiohttp.ClientSession(sim.url, headers=headers, connector=aiohttp.TCPConnector(ssl=context)) as http:
        for path in ("/api", "/apis", "/api/v1", "/apis/apps/v1", "/openapi/v3", "/version"):
            assert (await http.get(path)).status == 200, path
        resp = await http.get("/logs")
        body = await resp.json()
        assert (resp.status, body["reason"]) == (403, "Forbidden")
        assert body["message"] == f'forbidden: User "{bot.user}" cannot get path "/logs"'
        resp = await http.post("/api/v1/namespaces/default/serviceaccounts/default/token", json={})
        assert resp.status == 403
        assert (await resp.json())["details"] == {"kind": "serviceaccounts", "name": "default"}
