"""Pod logs: what containers in the simulated cluster printed, served as `pods/log` (with follow and tail)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from kaito_sim.apiserver import errors
from kaito_sim.apiserver.cluster import Cluster
from kaito_sim.apiserver.errors import JsonObj

FOLLOW_POLL_SECONDS = 0.2


def _container(pod: JsonObj, requested: str | None) -> str:
    names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
    name = pod["metadata"]["name"]
    if requested:
        if requested not in names:
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    if len(names) == 1:
        return str(names[0])
    raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]")


async def serve_log(request: web.Request, cluster: Cluster, pod: JsonObj) -> web.StreamResponse:
    container = _container(pod, request.query.get("container"))
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
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
    except ConnectionResetError:
        pass
    return resp
