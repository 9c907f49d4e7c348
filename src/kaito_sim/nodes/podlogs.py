"""Pod logs: what containers in the simulated cluster printed, served as `pods/log` (with follow and tail).

Init containers' logs are asked for by name, as from kube-apiserver; following a container's log ends once
that container has terminated (as the runtime's log stream does), or with its pod.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj

FOLLOW_POLL_SECONDS = 0.2


def _names(pod: JsonObj, field: str) -> list[str]:
    return [str(c.get("name", "")) for c in (pod.get("spec") or {}).get(field) or [] if isinstance(c, dict)]


def container_name(pod: JsonObj, requested: str | None) -> str:
    """The container a request names, else the pod's only one; BadRequest worded as kube-apiserver words it."""
    names, inits = _names(pod, "containers"), _names(pod, "initContainers")
    name = pod["metadata"]["name"]
    if requested:
        if requested not in names + inits + _names(pod, "ephemeralContainers"):
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    if len(names) == 1:
        return names[0]
    message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
    if inits:
        message += f" or one of the init containers: [{' '.join(inits)}]"
    raise errors.bad_request(message)


def _terminated(pod: JsonObj, container: str) -> bool:
    status = pod.get("status") or {}
    for entry in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if entry.get("name") == container:
            return "terminated" in (entry.get("state") or {})
    return False


async def serve_log(request: web.Request, cluster: Cluster, pod: JsonObj) -> web.StreamResponse:
    container = container_name(pod, request.query.get("container"))
    key = (pod["metadata"].get("namespace", ""), pod["metadata"]["name"], container)
    lines = cluster.pod_logs.get(key, [])
    tail = request.query.get("tailLines")
    start = max(0, len(lines) - int(tail)) if tail is not None else 0
    follow = request.query.get("follow", "false").lower() not in ("false", "0")
    if not follow:
        return web.Response(text="".join(lines[start:]), content_type="text/plain")
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    sent = start
    uid = pod["metadata"].get("uid")
    try:
        while True:
            current = cluster.pod_logs.get(key, [])
            if len(current) > sent:
                await resp.write("".join(current[sent:]).encode())
                sent = len(current)
            live = cluster.store.get(("", "pods"), key[0], key[1])
            if live is None or live["metadata"].get("uid") != uid:
                break
            if _terminated(live, container):  # its last lines were logged before its end was reported
                await resp.write("".join(cluster.pod_logs.get(key, [])[sent:]).encode())
                break
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
    except ConnectionResetError:
        pass
    return resp
