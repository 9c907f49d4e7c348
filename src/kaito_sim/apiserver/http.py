"""The aiohttp application: authentication, content negotiation and one handler per REST verb."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from kaito_sim.apiserver import discovery, errors, openapi, tables
from kaito_sim.apiserver.access import Access
from kaito_sim.apiserver.cluster import Cluster, WriteOptions
from kaito_sim.apiserver.deletion import Deleter, parse_delete_options
from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.protobuf import PROTOBUF, decode_k8s_protobuf
from kaito_sim.apiserver.rbac import Attributes
from kaito_sim.apiserver.reads import Filter, list_page
from kaito_sim.apiserver.routing import Target, parse_resource_path
from kaito_sim.apiserver.scale import get_scale, write_scale
from kaito_sim.apiserver.watch import WatchRequest, serve_watch
from kaito_sim.apiserver.writes import Writer
from kaito_sim.nodes.podlogs import serve_log
from kaito_sim.nodes.portforward import ROUTE as PORTFORWARD_ROUTE
from kaito_sim.nodes.portforward import PortForward
from kaito_sim.nodes.proxy import ROUTES as PROXY_ROUTES
from kaito_sim.nodes.proxy import Proxy
from kaito_sim.nodes.streams import Streams

log = logging.getLogger(__name__)

TABLE_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"
VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "kaito-sim",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}
BODY_TYPES = ("application/json", "application/yaml", PROTOBUF, "")
PUBLIC_PATHS = ("/version", "/healthz", "/readyz", "/livez")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_LOG_SIZE = 200_000
LIST_CHUNK = 200  # list items encoded (or Table rows rendered) between turns of the loop


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it, so tests can count what a client really sent."""

    method: str
    path: str
    query: dict[str, str]
    user_agent: str = ""
    user: str = ""  # who the token says called ("" when unauthenticated)
    allowed: bool = True
    checks: tuple[Attributes, ...] = ()  # the authorization checks made (none for system:masters)

    @property
    def is_watch(self) -> bool:
        return truthy(self.query.get("watch"))

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


def json_response(
    body: Any, *, status: int = 200, content_type: str = "application/json", warnings: list[str] | None = None
) -> web.Response:
    headers = {"Content-Type": content_type}
    resp = web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status, headers=headers)
    for warning in warnings or []:
        escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
        resp.headers.add("Warning", f'299 - "{escaped}"')
    return resp


async def list_response(head: JsonObj, items: list[JsonObj]) -> web.Response:
    """`{**head, "items": items}` as one JSON body, encoded a chunk of items at a time with the loop free in
    between; the bytes are those of encoding it whole."""
    opening = json.dumps({**head, "items": []}, separators=(",", ":"))[:-2]  # up to and with `"items":[`
    parts = [opening.encode()]
    for start in range(0, len(items), LIST_CHUNK):
        if start:
            await asyncio.sleep(0)
            parts.append(b",")
        parts.append(json.dumps(items[start : start + LIST_CHUNK], separators=(",", ":"))[1:-1].encode())
    parts.append(b"]}")
    return web.Response(body=b"".join(parts), headers={"Content-Type": "application/json"})


def error_response(exc: errors.ApiError) -> web.Response:
    return json_response(exc.status(), status=exc.code)


def _int_param(query: Any, name: str) -> int:
    try:
        return int(query.get(name) or 0)
    except ValueError as exc:
        raise errors.bad_request(f'invalid value for {name}: "{query.get(name)}"') from exc


def truthy(value: str | None) -> bool:
    """The apiserver reads only `false` and `0` as false."""
    return value is not None and value.lower() not in ("false", "0")


class ApiServer:
    """Serves the Kubernetes REST API for a `Cluster`."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        tokens: set[str],
        server_address: str,
        bookmark_interval: float = 5.0,
        proxy: Proxy | None = None,
        streams: Streams | None = None,
        portforward: PortForward | None = None,
    ) -> None:
        self.cluster = cluster
        self.proxy = proxy or Proxy(cluster, None)
        self.streams = streams or Streams(cluster, None)
        self.portforward = portforward or PortForward(cluster, None)
        self.tokens = tokens
        self.access = Access(cluster, admin_tokens=tokens)
        self.server_address = server_address
        self.bookmark_interval = bookmark_interval
        self.writer = Writer(cluster)
        self.deleter = Deleter(cluster)
        self.requests: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_SIZE)

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._middleware],
            client_max_size=64 * 1024 * 1024,
            handler_args={"max_field_size": 65536},
        )
        for route in PROXY_ROUTES:  # services/NAME/proxy/... and pods/NAME/proxy/...
            app.router.add_route("*", route, self.proxy.handle)
        app.router.add_route("*", PORTFORWARD_ROUTE, self.portforward.handle)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        agent = request.headers.get("User-Agent", "")
        decision = self.access.check(request, public=request.path in PUBLIC_PATHS)
        user = decision.user.name if decision.user else ""
        query = dict(request.query)
        self.requests.append(
            RequestRecord(request.method, request.path, query, agent, user, decision.allowed, decision.checks)
        )
        try:
            if decision.error is not None:
                raise decision.error
            if decision.token_for is not None:
                return await self.access.serve_token_request(request, *decision.token_for)
            return await handler(request)
        except errors.ApiError as exc:
            return error_response(exc)
        except Exception as exc:
            log.exception("request failed: %s %s", request.method, request.path_qs)
            return error_response(errors.internal_error(str(exc)))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        target = parse_resource_path(self.cluster.registry, request.path)
        if target is None:
            return self._non_resource(request)
        if target.subresource in ("exec", "attach"):  # upgraded to WebSocket streams
            return await self.streams.handle(request, target)
        handler = {
            "GET": self._get,
            "POST": self._post,
            "PUT": self._put,
            "PATCH": self._patch,
            "DELETE": self._delete,
        }.get(request.method)
        if handler is None:
            raise errors.method_not_allowed()
        return await handler(request, target)

    # ----- non-resource paths

    def _non_resource(self, request: web.Request) -> web.Response:
        if request.method != "GET":
            raise errors.method_not_allowed()
        path = request.path.rstrip("/") or "/"
        registry = self.cluster.registry
        aggregated = "v=v2" in request.headers.get("Accept", "") and "apidiscovery.k8s.io" in request.headers.get(
            "Accept", ""
        )
        if path == "/version":
            return json_response(VERSION_INFO)
        if path in PUBLIC_PATHS or path.startswith(("/healthz/", "/readyz/", "/livez/")):
            return web.Response(text="ok")
        if path == "/api":
            if aggregated:
                return json_response(discovery.aggregated(registry, core=True), content_type=discovery.AGGREGATED_V2)
            return json_response(discovery.core_versions(self.server_address))
        if path == "/apis":
            if aggregated:
                return json_response(discovery.aggregated(registry, core=False), content_type=discovery.AGGREGATED_V2)
            return json_response(discovery.group_list(registry))
        return json_response(self._discovery_doc(path))

    def _discovery_doc(self, path: str) -> JsonObj:
        registry = self.cluster.registry
        parts = [p for p in path.split("/") if p]
        if parts == ["api", "v1"]:
            return discovery.resource_list(registry, "", "v1")
        if len(parts) == 2 and parts[0] == "apis":
            group_doc = discovery.api_group(registry, parts[1])
            if group_doc is not None:
                return group_doc
        if len(parts) == 3 and parts[0] == "apis" and registry.in_group_version(parts[1], parts[2]):
            return discovery.resource_list(registry, parts[1], parts[2])
        if parts == ["openapi", "v3"]:
            return openapi.index(registry)
        if len(parts) >= 4 and parts[:2] == ["openapi", "v3"]:
            group, version = ("", parts[3]) if parts[2] == "api" else (parts[3], parts[4] if len(parts) > 4 else "")
            if registry.in_group_version(group, version):
                return openapi.document(registry, group, version)
        raise errors.path_not_found()

    # ----- helpers

    def _options(self, request: web.Request) -> WriteOptions:
        q = request.query
        dry = q.getall("dryRun", [])
        if any(d != "All" for d in dry):
            raise errors.bad_request(f"Invalid dryRun value: {dry}; the only supported value is All")
        validation = q.get("fieldValidation", "Warn")
        if validation not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(f'fieldValidation must be one of "Ignore", "Warn" or "Strict", got "{validation}"')
        agent = request.headers.get("User-Agent", "unknown")
        manager = q.get("fieldManager") or agent.split("/")[0][:128]
        return WriteOptions(
            field_manager=manager,
            field_validation=validation,
            dry_run=bool(dry),
            force=truthy(q.get("force")),
        )

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        ctype = request.content_type
        try:
            if ctype in ("application/yaml", "application/apply-patch+yaml"):
                return _yaml_or_json(raw)
            if ctype == PROTOBUF:
                return decode_k8s_protobuf(raw)
            if not raw:
                return None
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc

    def _accepts_table(self, request: web.Request) -> bool:
        accept = request.headers.get("Accept", "")
        return "as=Table" in accept

    async def _list_table(
        self, request: web.Request, target: Target, items: list[JsonObj], *, rv: str, token: str | None
    ) -> web.Response:
        """A list as a Table, its rows rendered a chunk at a time with the loop free in between."""
        rows: list[JsonObj] = []
        table: JsonObj = {}
        for start in range(0, max(len(items), 1), LIST_CHUNK):
            if start:
                await asyncio.sleep(0)
            table = self._table_body(request, target, items[start : start + LIST_CHUNK], rv=rv, token=token)
            rows += table["rows"]
        return json_response({**table, "rows": rows}, content_type=TABLE_TYPE)

    def _table(
        self, request: web.Request, target: Target, items: list[JsonObj], *, rv: str, token: str | None
    ) -> web.Response:
        return json_response(self._table_body(request, target, items, rv=rv, token=token), content_type=TABLE_TYPE)

    def _table_body(
        self, request: web.Request, target: Target, items: list[JsonObj], *, rv: str, token: str | None
    ) -> JsonObj:
        include = request.query.get("includeObject", "Metadata")
        now = datetime.datetime.now(datetime.UTC)
        rt = target.rt
        if rt.is_custom:
            table = tables.crd_table(
                list(rt.printer_columns),
                items,
                list_rv=rv,
                continue_token=token,
                include_object=include,
                now=now,
            )
        else:
            table = tables.builtin_table(
                rt.kind, items, list_rv=rv, continue_token=token, include_object=include, now=now
            )
        return table

    def _render_for_watch(self, request: web.Request, target: Target) -> Callable[[JsonObj, bool], JsonObj] | None:
        if not self._accepts_table(request):
            return None

        def render(obj: JsonObj, first: bool) -> JsonObj:
            table = self._table_body(request, target, [obj], rv=obj["metadata"]["resourceVersion"], token=None)
            if not first:
                table["columnDefinitions"] = []
            return table

        return render

    # ----- verbs

    async def _get(self, request: web.Request, target: Target) -> web.StreamResponse:
        rt, q = target.rt, request.query
        if target.name is None:
            flt = Filter.parse(rt, q.get("labelSelector", ""), q.get("fieldSelector", ""))
            if truthy(q.get("watch")):
                timeout = float(q.get("timeoutSeconds") or 1800)
                watch = WatchRequest(
                    rt,
                    target.namespace,
                    flt,
                    q.get("resourceVersion", ""),
                    timeout,
                    truthy(q.get("allowWatchBookmarks")),
                    self._render_for_watch(request, target),
                )
                return await serve_watch(request, self.cluster, watch, bookmark_interval=self.bookmark_interval)
            page = list_page(
                self.cluster,
                rt,
                target.namespace,
                flt,
                limit=_int_param(q, "limit"),
                continue_token=q.get("continue", ""),
            )
            if self._accepts_table(request):
                return await self._list_table(
                    request, target, page.items, rv=page.resource_version, token=page.continue_token or None
                )
            meta: JsonObj = {"resourceVersion": page.resource_version}
            if page.continue_token:
                meta["continue"] = page.continue_token
                meta["remainingItemCount"] = page.remaining
            head = {"kind": f"{rt.kind}List", "apiVersion": rt.group_version, "metadata": meta}
            return await list_response(head, page.items)
        ns = target.namespace or ""
        if target.subresource == "log":
            return await serve_log(request, self.cluster, self.cluster.get(rt, ns, target.name))
        obj = self.cluster.get(rt, ns, target.name)
        if target.subresource == "scale":
            return json_response(get_scale(rt, obj))
        if self._accepts_table(request):
            return self._table(request, target, [obj], rv=obj["metadata"]["resourceVersion"], token=None)
        return json_response(obj)

    async def _post(self, request: web.Request, target: Target) -> web.StreamResponse:
        if target.name is not None:
            raise errors.method_not_allowed()
        if target.rt.namespaced and target.namespace is None:
            raise errors.path_not_found()
        self._require_body_type(request, BODY_TYPES)
        opts = self._options(request)
        obj = await self.writer.create(target.rt, target.namespace or "", await self._body(request), opts)
        return json_response(obj, status=201, warnings=opts.warnings)

    def _require_body_type(self, request: web.Request, accepted: tuple[str, ...]) -> None:
        if request.content_type not in accepted and request.content_type != "application/octet-stream":
            raise errors.unsupported_media_type(request.content_type, [a for a in accepted if a])

    async def _put(self, request: web.Request, target: Target) -> web.StreamResponse:
        if target.name is None:
            raise errors.method_not_allowed()
        self._require_body_type(request, BODY_TYPES)
        opts, body = self._options(request), await self._body(request)
        ns = target.namespace or ""
        if target.subresource == "log":
            raise errors.method_not_allowed()
        if target.subresource == "scale":
            obj = await write_scale(self.writer, target.rt, ns, target.name, body, opts)
            return json_response(obj, warnings=opts.warnings)
        obj = await self.writer.update(target.rt, ns, target.name, body, opts, subresource=target.subresource)
        return json_response(obj, warnings=opts.warnings)

    async def _patch(self, request: web.Request, target: Target) -> web.StreamResponse:
        if target.name is None:
            raise errors.method_not_allowed()
        opts, body = self._options(request), await self._body(request)
        ns, ctype = target.namespace or "", request.content_type
        if target.subresource == "log":
            raise errors.method_not_allowed()
        if target.subresource == "scale":
            obj = await write_scale(self.writer, target.rt, ns, target.name, body, opts, patch_type=ctype)
            return json_response(obj, warnings=opts.warnings)
        obj, created = await self.writer.patch(
            target.rt, ns, target.name, ctype, body, opts, subresource=target.subresource
        )
        return json_response(obj, status=201 if created else 200, warnings=opts.warnings)

    async def _delete(self, request: web.Request, target: Target) -> web.StreamResponse:
        if target.subresource:
            raise errors.method_not_allowed()
        opts = self._options(request)
        body = await self._body(request)
        policy, pre = parse_delete_options(body, request.query.get("propagationPolicy"))
        if isinstance(body, dict) and body.get("dryRun"):
            if body["dryRun"] != ["All"]:
                raise errors.bad_request(f"Invalid dryRun value: {body['dryRun']}; the only supported value is All")
            opts.dry_run = True
        rt, ns = target.rt, target.namespace or ""
        if target.name is not None:
            obj = await self.deleter.delete(rt, ns, target.name, policy=policy, preconditions=pre, opts=opts)
            return json_response(obj, warnings=opts.warnings)
        q = request.query
        flt = Filter.parse(rt, q.get("labelSelector", ""), q.get("fieldSelector", ""))
        page = list_page(self.cluster, rt, target.namespace, flt, limit=0, continue_token="")
        deleted = [
            await self.deleter.delete(
                rt,
                o["metadata"].get("namespace", ""),
                o["metadata"]["name"],
                policy=policy,
                preconditions={},
                opts=opts,
            )
            for o in page.items
        ]
        return json_response(
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.group_version,
                "metadata": {"resourceVersion": str(self.cluster.store.rv)},
                "items": deleted,
            }
        )


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_or_json(raw: bytes) -> Any:
    """A YAML body; clients (kubectl, server-side apply) mostly send JSON, which is YAML and parses far faster."""
    if raw[:1] in (b"{", b"["):
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return yaml.load(raw, Loader=_YAML_LOADER)  # a safe loader: the C one where PyYAML was built with it
