"""The API server's proxy subresources, `services/NAME[:PORT]/proxy/...` and `pods/NAME[:PORT]/proxy/...`.

They resolve as kube-apiserver resolves them: `[scheme:]name[:port]`, a Service port given by number turns
into its name, and a ready address of the Service's Endpoints that carries that port name is picked. The
simulated pod IPs route nowhere, so the request goes to the local port of the pod's process (process pods,
`kaito_sim.nodes.processes`); a pod that is only simulated answers 503. Method, query, headers and body pass through,
and the answer streams back as it comes (server-sent events included).
"""

from __future__ import annotations

import random
from typing import Protocol

import aiohttp
from aiohttp import web
from yarl import URL

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.nodes.launch import declared_ports

ROUTES = (
    "/api/v1/namespaces/{namespace}/{kind:services|pods}/{name}/proxy",
    "/api/v1/namespaces/{namespace}/{kind:services|pods}/{name}/proxy/{path:.*}",
)
# Hop-by-hop headers (RFC 9110 section 7.6.1) and what this hop sets itself; Authorization is the caller's
# credential for the API server, which the apiserver's authentication filter removes before proxying.
_DROP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
}
_PREFIX_SEGMENTS = 8  # "", api, v1, namespaces, NS, KIND, NAME, proxy


class Backends(Protocol):
    def local_port(self, namespace: str, pod: str, uid: str, port: int) -> int | None:
        """Where on this machine the pod's `port` listens; None when the pod runs no local process."""


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def split_scheme_name_port(ident: str, kind: str) -> tuple[str, str, str]:
    """`name`, `name:port` or `scheme:name:port` (scheme http or https), as the apiserver splits them."""
    parts = ident.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        scheme, name, port = "", "", ""
    if not name or scheme not in ("", "http", "https"):
        raise errors.bad_request(f'invalid {kind} request "{ident}"')
    return scheme or "http", name, port


class Proxy:
    """Serves the proxy subresources of one simulated cluster."""

    def __init__(self, cluster: Cluster, backends: Backends | None) -> None:
        self.cluster = cluster
        self.backends = backends

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ns, kind = request.match_info["namespace"], request.match_info["kind"]
        scheme, name, port = split_scheme_name_port(request.match_info["name"], kind[:-1])
        if kind == "services":
            pod, target = self._service_target(ns, name, port, request.match_info["name"])
        else:
            pod = self._object("pods", ns, name)
            target = self._pod_port(pod, port, scheme)
        local = self._local_port(pod, target)
        segments = request.raw_path.split("?", 1)[0].split("/", _PREFIX_SEGMENTS)
        path = "/" + (segments[_PREFIX_SEGMENTS] if len(segments) > _PREFIX_SEGMENTS else "")
        query = request.rel_url.raw_query_string
        url = URL(f"{scheme}://127.0.0.1:{local}{path}{'?' + query if query else ''}", encoded=True)
        where = f"{(pod.get('status') or {}).get('podIP', '')}:{target}"
        return await _forward(request, url, where)

    def service_port(self, ns: str, name: str, port: int) -> int:
        """The local port of a ready process-pod endpoint behind Service port `port`; ApiError when there is none."""
        pod, target = self._service_target(ns, name, str(port), name)
        return self._local_port(pod, target)

    def _object(self, plural: str, ns: str, name: str) -> JsonObj:
        obj = self.cluster.store.get(("", plural), ns, name)
        if obj is None:
            raise errors.not_found(plural, "", name)
        return obj

    def _service_target(self, ns: str, name: str, port: str, ident: str) -> tuple[JsonObj, int]:
        """A ready endpoint of the Service on the named port: its pod and the pod's port."""
        if port.isdigit():
            service = self._object("services", ns, name)
            named = [p for p in (service.get("spec") or {}).get("ports") or [] if str(p.get("port")) == port]
            if not named:
                raise unavailable(f'no service port {port} found for service "{name}"')
            port = str(named[0].get("name") or "")
        endpoints = self._object("endpoints", ns, name)
        subsets = endpoints.get("subsets") or []
        if not subsets:
            raise unavailable(f'no endpoints available for service "{name}"')
        candidates: list[tuple[JsonObj, int]] = []
        for subset in subsets:
            number = next((int(p["port"]) for p in subset.get("ports") or [] if p.get("name", "") == port), None)
            if number is None:
                continue
            for address in subset.get("addresses") or []:  # ready ones only: notReadyAddresses get no traffic
                ref = address.get("targetRef") or {}
                pod = self.cluster.store.get(("", "pods"), ns, str(ref.get("name", "")))
                if ref.get("kind") == "Pod" and pod and (pod.get("status") or {}).get("podIP") == address.get("ip"):
                    candidates.append((pod, number))
        if not candidates:
            raise unavailable(f'no endpoints available for service "{ident}"')
        local = [c for c in candidates if self._local_port_or_none(*c) is not None]
        return random.choice(local or candidates)

    def _pod_port(self, pod: JsonObj, port: str, scheme: str) -> int:
        """The port asked for, else the first one a container declares, else the scheme's (as the apiserver picks)."""
        if not port:
            containers = (pod.get("spec") or {}).get("containers") or []
            first = next((c["ports"][0] for c in containers if c.get("ports")), None)
            return int(first["containerPort"]) if first is not None else 443 if scheme == "https" else 80
        if port.isdigit():
            return int(port)
        for container in (pod.get("spec") or {}).get("containers") or []:
            if port in declared_ports(container):
                return declared_ports(container)[port]
        raise unavailable(f'pod "{pod["metadata"]["name"]}" has no port named "{port}"')

    def _local_port_or_none(self, pod: JsonObj, port: int) -> int | None:
        if self.backends is None:
            return None
        meta = pod["metadata"]
        return self.backends.local_port(meta.get("namespace", ""), meta["name"], str(meta.get("uid", "")), port)

    def _local_port(self, pod: JsonObj, port: int) -> int:
        local = self._local_port_or_none(pod, port)
        if local is None:
            raise unavailable(
                f'pod "{pod["metadata"]["name"]}" is simulated, with no process behind port {port}: only process '
                "pods (SimServer(process_pods=...)) can be reached through the simulated API server's proxy"
            )
        return local


async def _forward(request: web.Request, url: URL, where: str) -> web.StreamResponse:
    """Send the request on to `url` and stream the answer back; `where` names the pod's address in errors."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP and k.lower() != "content-length"}
    forwarded = request.headers.get("X-Forwarded-For")
    peer = request.remote or ""
    headers["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
    body = await request.read() if request.body_exists else None
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        try:
            upstream = await session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False, ssl=False
            )
        except aiohttp.ClientError as exc:
            raise unavailable(f"error trying to reach service: dial tcp {where}: {_why(exc)}") from exc
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in _DROP:
                    response.headers.add(key, value)
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (aiohttp.ClientError, ConnectionResetError):
                return response  # either side went away mid-answer: nothing more can be said on this stream
            await response.write_eof()
            return response


def _why(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ConnectionRefusedError):
        return "connect: connection refused"
    return str(exc)
