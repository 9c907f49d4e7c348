"""Container probes run against process pods' local processes, as a kubelet runs them against containers.

httpGet, tcpSocket and exec behave as on a node. gRPC health checking needs a gRPC client this package does
not carry, so a gRPC probe passes when its port accepts connections.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import aiohttp

from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.nodes.children import die_with_parent
from kaito_sim.nodes.launch import KAITO, Launch

Ports = Callable[[object], int]  # a probe's `port` (number or container port name) -> the local port


class Prober:
    """Runs single probes; one HTTP session serves every httpGet probe of a simulated cluster."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def check(self, probe: JsonObj, ports: Ports, launch: Launch | None) -> bool:
        """Whether `probe` passes now (a probe that cannot be run fails, as on a node)."""
        timeout = float(probe.get("timeoutSeconds") or 1)
        try:
            if isinstance(probe.get("httpGet"), dict):
                return await self._http(probe["httpGet"], ports, timeout)
            socket_probe = probe.get("tcpSocket") or probe.get("grpc")
            if isinstance(socket_probe, dict):
                port = ports(socket_probe.get("port"))
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
                writer.close()
                return True
            if isinstance(probe.get("exec"), dict) and launch is not None:
                return await _exec(probe["exec"], launch, timeout)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return False
        return False

    async def _http(self, get: JsonObj, ports: Ports, seconds: float) -> bool:
        scheme = str(get.get("scheme") or "HTTP").lower()
        url = f"{scheme}://127.0.0.1:{ports(get.get('port'))}{get.get('path') or '/'}"
        headers = {str(h.get("name")): str(h.get("value")) for h in get.get("httpHeaders") or []}
        if self._session is None:
            self._session = aiohttp.ClientSession()
        limit = aiohttp.ClientTimeout(total=seconds)
        async with self._session.get(url, headers=headers, ssl=False, timeout=limit, allow_redirects=True) as resp:
            return 200 <= resp.status < 400


async def _exec(action: JsonObj, launch: Launch, seconds: float) -> bool:
    argv = [launch.local(str(a)) for a in action.get("command") or []]
    argv = [*KAITO, *argv[1:]] if argv[:1] == ["kaito"] else argv
    if not argv:
        return False
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, **launch.env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    try:
        return await asyncio.wait_for(proc.wait(), seconds) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def follow(
    prober: Prober,
    container: JsonObj,
    ports: Ports,
    launch: Launch | None,
    *,
    interval: float,
    started: Callable[[], None],
    ready: Callable[[bool], None],
) -> None:
    """Run the startup probe until it passes, then the readiness probe for as long as the process lives.

    `started()` is called once the startup probe passes (at once without one); `ready(flag)` on every change of
    readiness (True at once without a readiness probe). Probes repeat every `interval` seconds while not ready,
    and every `periodSeconds` (at most one second, so tests notice quickly) once ready.
    """
    startup = container.get("startupProbe")
    if isinstance(startup, dict):
        while True:
            if await prober.check(startup, ports, launch):
                break
            await asyncio.sleep(interval)
    started()
    readiness = container.get("readinessProbe")
    if not isinstance(readiness, dict):
        ready(True)
        return
    is_ready, failures, threshold = False, 0, int(readiness.get("failureThreshold") or 3)
    period = max(interval, min(float(readiness.get("periodSeconds") or 10), 1.0))
    while True:
        passed = await prober.check(readiness, ports, launch)
        failures = 0 if passed else failures + 1
        now_ready = passed or (is_ready and failures < threshold)
        if now_ready != is_ready:
            is_ready = now_ready
            ready(is_ready)
        await asyncio.sleep(period if is_ready else interval)
