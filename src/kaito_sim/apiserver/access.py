"""The sim's front door: who is calling (tokens), whether they may (RBAC), and the TokenRequest subresource.

`ApiServer._middleware` asks `Access.check` about every request before any handler runs, as the
apiserver's authentication and authorization filters do. The admin token short-circuits to an allow
without parsing the request, so the suite's admin traffic pays one set lookup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.protobuf import PROTOBUF, decode_k8s_protobuf
from kaito_sim.apiserver.rbac import Attributes, Authorizer, forbidden, request_attributes
from kaito_sim.apiserver.routing import parse_resource_path
from kaito_sim.apiserver.tokens import ADMIN, ANONYMOUS, Authenticator, UserInfo

APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True)
class Decision:
    """The verdict on one request: who asked, every authorization check made, and the refusal if any."""

    user: UserInfo | None
    checks: tuple[Attributes, ...] = ()
    error: errors.ApiError | None = None
    token_for: tuple[str, str] | None = None  # (namespace, service account) of a TokenRequest

    @property
    def allowed(self) -> bool:
        return self.error is None


ADMIN_ALLOWED = Decision(ADMIN)
ANONYMOUS_PUBLIC = Decision(ANONYMOUS)


def _token_target(attrs: Attributes) -> tuple[str, str] | None:
    wanted = ("create", "", "serviceaccounts", "token")
    if (attrs.verb, attrs.group, attrs.resource, attrs.subresource) == wanted and attrs.namespace and attrs.name:
        return attrs.namespace, attrs.name
    return None


class Access:
    """Authentication and authorization for one simulated cluster."""

    def __init__(self, cluster: Cluster, *, admin_tokens: set[str]) -> None:
        self.cluster = cluster
        self.authenticator = Authenticator(cluster.store, admin_tokens=admin_tokens)
        self.authorizer = Authorizer(cluster.store)

    def check(self, request: web.Request, *, public: bool) -> Decision:
        """Decide on `request`; `public` paths (health, version) need no credentials."""
        user = self.authenticator.authenticate(request.headers.get("Authorization", ""))
        if user is None:
            return (
                ANONYMOUS_PUBLIC
                if public
                else Decision(None, error=errors.ApiError(401, "Unauthorized", "Unauthorized"))
            )
        if user.is_master:
            if request.method == "POST" and request.path.endswith("/token"):
                attrs = request_attributes(request.method, request.path, request.query)
                return Decision(user, (attrs,), token_for=_token_target(attrs))
            return ADMIN_ALLOWED
        if public:
            return Decision(user)
        attrs = request_attributes(request.method, request.path, request.query)
        checks = [attrs]
        allowed, reason = self.authorizer.authorize(user, attrs)
        if allowed and self._creates_by_apply(request, attrs):
            # A server-side apply that creates the object needs `create` as well as `patch`.
            attrs = attrs.with_verb("create")
            checks.append(attrs)
            allowed, reason = self.authorizer.authorize(user, attrs)
        if not allowed:
            return Decision(user, tuple(checks), forbidden(user, attrs, reason))
        return Decision(user, tuple(checks), token_for=_token_target(attrs))

    def _creates_by_apply(self, request: web.Request, attrs: Attributes) -> bool:
        if request.method != "PATCH" or request.content_type != APPLY_PATCH or not attrs.name:
            return False
        try:
            target = parse_resource_path(self.cluster.registry, request.path)
        except errors.ApiError:
            return False
        if target is None or target.name is None or target.subresource:
            return False
        return self.cluster.store.get(target.rt.storage_key, target.namespace or "", target.name) is None

    async def serve_token_request(self, request: web.Request, namespace: str, name: str) -> web.Response:
        """`POST /api/v1/namespaces/NS/serviceaccounts/NAME/token` (what `kubectl create token NAME` sends)."""
        raw = await request.read()
        try:
            body = decode_k8s_protobuf(raw) if request.content_type == PROTOBUF else json.loads(raw or b"{}")
        except ValueError as exc:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc
        answer = self.authenticator.token_request(namespace, name, body)
        return web.Response(body=json.dumps(answer).encode(), status=201, content_type="application/json")
