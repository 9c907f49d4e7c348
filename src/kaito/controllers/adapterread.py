"""Reading each inference pod's adapters from `kaito serve` through the API server's pod proxy.

`GET /api/v1/namespaces/NS/pods/NAME:PORT/proxy/v1/adapters` (RBAC: get pods/proxy) reaches the pod wherever the
manager runs. Under vLLM with `--openai-direct`, `kaito serve`'s own routes are on OWN_PORT and vLLM holds
SERVE_PORT; under the transformers engine `kaito serve` holds SERVE_PORT itself. Which one a pod answers on is
learnt once per pod and remembered, so a poll costs one GET per running pod.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import aiohttp

from kaito.controllers.adapterstatus import Report
from kaito.controllers.kinds import OWN_PORT, SERVE_PORT
from kaito.runtime import errors

Obj = dict[str, Any]
READ_TIMEOUT_S = 2.0
_REMEMBERED = 4096  # pods whose answering port is kept; older ones are learnt again


class TextGetter(Protocol):
    """What the reader needs of the API client (`kaito.runtime.client.Client.text`)."""

    async def text(self, path: str, *, read_timeout: float = ...) -> str: ...


class AdapterReader:
    """The adapters each running pod of a workspace reports, by pod name."""

    def __init__(self, client: TextGetter, *, read_timeout: float = READ_TIMEOUT_S) -> None:
        self.client, self.read_timeout = client, read_timeout
        self._port: dict[str, int] = {}  # pod uid -> the port its `kaito serve` answered on

    async def read(self, pods: list[Obj]) -> dict[str, Report]:
        running = [p for p in pods if _running(p)]
        answers = await asyncio.gather(*(self._read_pod(pod) for pod in running))
        return {pod["metadata"]["name"]: answer for pod, answer in zip(running, answers, strict=True)}

    async def _read_pod(self, pod: Obj) -> Report:
        uid = str(pod["metadata"].get("uid") or "")
        known = self._port.get(uid)
        ports = [known] if known is not None else [OWN_PORT, SERVE_PORT]
        why = ""
        for port in ports:
            path = f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}:{port}"
            try:
                text = await self.client.text(f"{path}/proxy/v1/adapters", read_timeout=self.read_timeout)
            except (errors.ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                why = why or f"adapters unreadable: {type(exc).__name__}: {exc}"
                continue
            found = _adapters_of(text)
            if isinstance(found, str):  # an answer, though not one in kind, says more than a refusal elsewhere
                why = found
                continue
            if len(self._port) >= _REMEMBERED:
                self._port.clear()
            self._port[uid] = port
            return found
        if known is not None:
            self._port.pop(uid, None)  # restarted elsewhere, or under another engine: learnt again next time
        return why


def _running(pod: Obj) -> bool:
    """A pod whose server is up: before it is Ready it loads the base model and answers nothing (its readiness
    turning brings the workspace back)."""
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return status.get("phase") == "Running" and ready and not pod["metadata"].get("deletionTimestamp")


def _adapters_of(text: str) -> list[Obj] | str:
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return "adapters unreadable: the answer is not JSON"
    adapters = body.get("adapters") if isinstance(body, dict) else None
    if not isinstance(adapters, list):
        return "adapters unreadable: the answer has no adapters list"
    return [a for a in adapters if isinstance(a, dict)]
