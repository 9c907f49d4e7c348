"""RBAC for the sim: a request's attributes checked against the stored Roles and ClusterRoles through their bindings.

Follows the apiserver's RequestInfo (verb from the method, list/watch/deletecollection for collections,
a `metadata.name=` field selector naming the object) and the RBAC authorizer's rule matching
(`*`, `*/subresource`, resourceNames, nonResourceURLs with a trailing `*`). The `system:masters` group
is allowed everything before RBAC is consulted, as the apiserver's privileged-group authorizer does.
Bootstrap roles (`cluster-admin`, `system:discovery`, `system:public-info-viewer`) and their default
bindings are built in rather than stored, so they never show up in what tests list. Role aggregation and
the escalation checks on writing Roles and bindings are not simulated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.store import Store
from kaito_sim.apiserver.tokens import AUTHENTICATED, UserInfo

GROUP = "rbac.authorization.k8s.io"
ROLES = (GROUP, "roles")
CLUSTER_ROLES = (GROUP, "clusterroles")
ROLE_BINDINGS = (GROUP, "rolebindings")
CLUSTER_ROLE_BINDINGS = (GROUP, "clusterrolebindings")
VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
Rule = Mapping[str, Any]

_DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/version/"]
_PUBLIC_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
BOOTSTRAP_ROLES: dict[str, list[Rule]] = {
    "cluster-admin": [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        {"nonResourceURLs": ["*"], "verbs": ["*"]},
    ],
    "system:discovery": [{"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}],
    "system:public-info-viewer": [{"nonResourceURLs": _PUBLIC_URLS, "verbs": ["get"]}],
}
# (role, group subjects) of the default ClusterRoleBindings.
BOOTSTRAP_BINDINGS: tuple[tuple[str, frozenset[str]], ...] = (
    ("cluster-admin", frozenset({"system:masters"})),
    ("system:discovery", frozenset({AUTHENTICATED})),
    ("system:public-info-viewer", frozenset({AUTHENTICATED, "system:unauthenticated"})),
)


@dataclass(frozen=True)
class Attributes:
    """What one request asks to do, in the authorizer's terms."""

    verb: str
    path: str
    resource_request: bool
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def qualified(self) -> str:
        """`resource[/subresource]` as rules name it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def with_verb(self, verb: str) -> Attributes:
        return replace(self, verb=verb)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() not in ("false", "0")


def _name_from_field_selector(selector: str) -> str:
    for term in selector.split(","):
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if sep and key.strip() == "metadata.name":
            return value.strip()
    return ""


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """The apiserver's RequestInfo for one request."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Attributes(method.lower(), path, False)
    verb = VERBS.get(method, method.lower())
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not name and verb == "get":
        verb = "watch" if _truthy(query.get("watch")) else "list"
        name = _name_from_field_selector(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(verb, path, True, group, version, rest[0], subresource, namespace, name)


def rule_allows(rule: Rule, attrs: Attributes) -> bool:
    """One PolicyRule against one request, as the RBAC authorizer matches them."""
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if not attrs.resource_request:
        return any(
            url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1]))
            for url in rule.get("nonResourceURLs") or []
        )
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    wanted, star_sub = attrs.qualified, f"*/{attrs.subresource}" if attrs.subresource else None
    if not any(r in ("*", wanted) or r == star_sub for r in rule.get("resources") or []):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def _applies(subjects: Iterable[Mapping[str, Any]], user: UserInfo, binding_namespace: str) -> bool:
    for subject in subjects:
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == user.name:
            return True
        if kind == "Group" and name in user.groups:
            return True
        if kind == "ServiceAccount":
            namespace = subject.get("namespace") or binding_namespace
            if namespace and user.name == f"system:serviceaccount:{namespace}:{name}":
                return True
    return False


class Authorizer:
    """Allows a request when any rule reachable from a binding that names the caller matches it."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def authorize(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason); the reason lists bindings whose role is missing, as `RBAC: ...`."""
        if user.is_master:
            return True, ""
        problems: list[str] = []
        for rules in self._rules_for(user, attrs.namespace, problems):
            if any(rule_allows(rule, attrs) for rule in rules):
                return True, ""
        if not problems:
            return False, ""
        return False, "RBAC: " + (problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]")

    def _rules_for(self, user: UserInfo, namespace: str, problems: list[str]) -> Iterable[list[Rule]]:
        for role, groups in BOOTSTRAP_BINDINGS:
            if groups & set(user.groups):
                yield self._cluster_role(role, problems)
        for binding in self.store.items(CLUSTER_ROLE_BINDINGS):
            if _applies(binding.get("subjects") or [], user, ""):
                yield self._referenced(binding.get("roleRef") or {}, "", problems)
        if namespace:
            for binding in self.store.items(ROLE_BINDINGS, namespace):
                if _applies(binding.get("subjects") or [], user, namespace):
                    yield self._referenced(binding.get("roleRef") or {}, namespace, problems)

    def _referenced(self, ref: Mapping[str, Any], namespace: str, problems: list[str]) -> list[Rule]:
        if ref.get("kind") == "Role" and namespace:
            role = self.store.get(ROLES, namespace, str(ref.get("name")))
            if role is None:
                problems.append(f'role.{GROUP} "{ref.get("name")}" not found')
                return []
            return list(role.get("rules") or [])
        if ref.get("kind") == "ClusterRole":
            return self._cluster_role(str(ref.get("name")), problems)
        return []

    def _cluster_role(self, name: str, problems: list[str]) -> list[Rule]:
        role = self.store.get(CLUSTER_ROLES, "", name)
        if role is not None:
            return list(role.get("rules") or [])
        if name in BOOTSTRAP_ROLES:
            return BOOTSTRAP_ROLES[name]
        problems.append(f'clusterrole.{GROUP} "{name}" not found')
        return []


def forbidden(user: UserInfo, attrs: Attributes, reason: str = "") -> errors.ApiError:
    """The 403 the apiserver answers, worded as its `Forbidden` response writer words it."""
    if not attrs.resource_request:
        message = f'forbidden: User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
        return errors.forbidden(message + (f": {reason}" if reason else ""), {})
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    why = f'User "{user.name}" cannot {attrs.verb} resource "{attrs.qualified}" in API group "{attrs.group}" {where}'
    if reason:
        why += f": {reason}"
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    details: dict[str, Any] = (
        {"group": attrs.group, "kind": attrs.resource} if attrs.group else {"kind": attrs.resource}
    )
    if attrs.name:
        details["name"] = attrs.name
    return errors.forbidden(f"{subject} is forbidden: {why}", details)
