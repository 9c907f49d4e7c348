"""The ARM simulator's HTTP surface: the routes the SDKs call, operation status, auth, throttling, log.

Routes: the managed cluster (GET), its agentPools, their operations, and the region's Compute usages (vCPU quota
per VM family and in total, as `az vm list-usage` shows them).

Paths are matched case-insensitively, as ARM does. Every request needs `Authorization: Bearer <token>` and an
`api-version` query parameter; errors are ARM error bodies `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from kaito_sim.arm.errors import ArmError, throttled, unauthenticated
from kaito_sim.arm.faults import Faults
from kaito_sim.arm.pools import Operation
from kaito_sim.arm.provisioning import AgentPools

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_POOLS = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ContainerService/"
    r"managedClusters/(?P<cluster>[^/]+)/agentPools(?:/(?P<name>[^/]+))?/?$",
    re.IGNORECASE,
)
_OPERATIONS = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.ContainerService/locations/(?P<location>[^/]+)/"
    r"(?P<kind>operations|operationresults)/(?P<id>[^/]+)/?$",
    re.IGNORECASE,
)
_CLUSTER = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ContainerService/"
    r"managedClusters/(?P<cluster>[^/]+)/?$",
    re.IGNORECASE,
)
_USAGES = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Compute/locations/(?P<location>[^/]+)/usages/?$",
    re.IGNORECASE,
)
# Only agent pools accept writes, so the method and status say what a request did.
_ACTIONS = {("PUT", 201): "create", ("PUT", 200): "update", ("DELETE", 202): "delete"}


@dataclass(frozen=True)
class ArmRequest:
    """One request as the simulator answered it; `action` is create/update/delete for an accepted pool write."""

    method: str
    path: str
    status: int
    action: str | None = None


class RequestLog:
    """What clients really sent, for assertions like "never created a second agent pool"."""

    def __init__(self) -> None:
        self.records: list[ArmRequest] = []

    def count(self, method: str | None = None, *, status: int | None = None) -> int:
        return sum(
            1
            for r in self.records
            if (method is None or r.method == method.upper()) and (status is None or r.status == status)
        )

    def actions(self, action: str) -> int:
        return sum(1 for r in self.records if r.action == action)

    @property
    def creates(self) -> int:
        return self.actions("create")

    @property
    def updates(self) -> int:
        return self.actions("update")

    @property
    def deletes(self) -> int:
        return self.actions("delete")

    def clear(self) -> None:
        self.records.clear()


class ArmApp:
    """Builds the aiohttp application over one cluster's agent pools."""

    def __init__(self, *, pools: AgentPools, faults: Faults, token: str, requests: RequestLog) -> None:
        self.pools = pools
        self.faults = faults
        self.token = token
        self.requests = requests

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record, self._errors, self._authenticate, self._throttle])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        action = _ACTIONS.get((request.method, response.status))
        self.requests.records.append(ArmRequest(request.method, request.path, response.status, action))
        response.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ArmError as err:
            return web.json_response(err.body(), status=err.status, headers=err.headers)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("ARM simulator failed on %s %s", request.method, request.path)
            crash = ArmError(500, "InternalServerError", "An internal error occurred in the ARM simulator.")
            return web.json_response(crash.body(), status=crash.status)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.token:
            raise unauthenticated(bool(header))
        if "api-version" not in request.query:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        return await handler(request)

    @web.middleware
    async def _throttle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        retry_after = self.faults.take_throttle()
        if retry_after is not None:
            raise throttled(subscription_id=self.pools.cluster.subscription_id, retry_after=retry_after)
        return await handler(request)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if match := _POOLS.match(request.path):
            self._check_scope(match["sub"], match["rg"], match["cluster"])
            name = match["name"]
            if name is None:
                return await self._collection(request)
            return await self._pool(request, name)
        if match := _USAGES.match(request.path):
            self._check_scope(match["sub"], None, None)
            if request.method != "GET":
                raise _method_not_allowed(request)
            return await self._usages(match["location"])
        if match := _CLUSTER.match(request.path):
            self._check_scope(match["sub"], match["rg"], match["cluster"])
            if request.method != "GET":
                raise _method_not_allowed(request)
            return web.json_response(self.pools.cluster.body())
        if (match := _OPERATIONS.match(request.path)) and request.method == "GET":
            self._check_scope(match["sub"], None, None)
            return self._operation(request, match["id"], results=match["kind"].lower() == "operationresults")
        raise ArmError(404, "NotFound", f"No HTTP resource was found that matches the request URI '{request.path}'.")

    def _check_scope(self, subscription: str, resource_group: str | None, cluster: str | None) -> None:
        own = self.pools.cluster
        if subscription.lower() != own.subscription_id.lower():
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")
        if resource_group is not None and resource_group.lower() != own.resource_group.lower():
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{resource_group}' could not be found.")
        if cluster is not None and cluster.lower() != own.name.lower():
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.ContainerService/managedClusters/{cluster}' under resource group "
                f"'{resource_group}' was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
            )

    async def _usages(self, location: str) -> web.StreamResponse:
        """Quota and usage in `location`; only the cluster's region holds any of its pools."""
        failure = self.faults.take_usages_failure()
        if failure is not None:
            code = "AuthorizationFailed" if failure == 403 else "InternalServerError"
            raise ArmError(failure, code, f"The usages of location '{location}' could not be read.")
        own = _region(location) == _region(self.pools.cluster.location)
        pools = list(self.pools.pools.values()) if own else []
        usages = self.pools.limits.usages(pools, await self.pools.catalog())
        return web.json_response({"value": [u.body() for u in usages]})

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            raise _method_not_allowed(request)
        cluster = self.pools.cluster
        return web.json_response({"value": [p.body(cluster) for _, p in sorted(self.pools.pools.items())]})

    async def _pool(self, request: web.Request, name: str) -> web.StreamResponse:
        cluster = self.pools.cluster
        if request.method == "GET":
            return web.json_response(self.pools.get(name).body(cluster))
        if request.method == "PUT":
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ArmError(
                    400, "InvalidRequestContent", "The request content was invalid and could not be deserialized."
                ) from None
            record, operation, created = await self.pools.put(name, body)
            return web.json_response(
                record.body(cluster), status=201 if created else 200, headers=self._lro_headers(request, operation)
            )
        if request.method == "DELETE":
            deleting = self.pools.delete(name)
            if deleting is None:
                return web.Response(status=204)
            return web.Response(status=202, headers=self._lro_headers(request, deleting))
        raise _method_not_allowed(request)

    def _operation(self, request: web.Request, operation_id: str, *, results: bool) -> web.StreamResponse:
        operation = self.pools.operations.get(operation_id)
        if operation is None:
            raise ArmError(404, "NotFound", f"Operation '{operation_id}' was not found.")
        if not results:
            return web.json_response(operation.body(self.pools.cluster))
        # The Location flavour: 202 while running, then the outcome (the pool for a write, nothing for a delete).
        if not operation.done:
            return web.Response(status=202, headers={"Location": str(request.url)})
        if operation.error is not None:
            raise ArmError(400, operation.error["code"], operation.error["message"])
        record = self.pools.pools.get(operation.pool)
        if operation.kind == "delete" or record is None:
            return web.Response(status=204)
        return web.json_response(record.body(self.pools.cluster))

    def _lro_headers(self, request: web.Request, operation: Operation) -> dict[str, str]:
        cluster = self.pools.cluster
        base = (
            f"{request.url.origin()}/subscriptions/{cluster.subscription_id}/providers/Microsoft.ContainerService/"
            f"locations/{cluster.location}"
        )
        query = f"api-version={request.query['api-version']}"
        return {
            "Azure-AsyncOperation": f"{base}/operations/{operation.id}?{query}",
            "Location": f"{base}/operationresults/{operation.id}?{query}",
        }


def _region(location: str) -> str:
    """ARM accepts a location as its name or display name: "East US" is "eastus"."""
    return location.replace(" ", "").lower()


def _method_not_allowed(request: web.Request) -> ArmError:
    return ArmError(405, "MethodNotAllowed", f"The requested resource does not support http method '{request.method}'.")
