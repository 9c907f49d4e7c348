"""The vLLM engine: runs vLLM's OpenAI server as a managed child process and streams generations from it.

A child process (rather than vLLM in-process) keeps `kaito serve`'s event loop and vLLM's own workers
apart: a vLLM crash is reported on /health instead of taking the server down, and vLLM's own
/metrics stay reachable on its internal port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from kaito.api.engine import EngineConfig
from kaito.inference.engine import BadParameter, Chunk, EngineError, NotReady, Overloaded, Request, UnknownModel
from kaito.inference.engine_report import DEFAULT_BLOCK_SIZE, EngineRefused, kv_tokens_in, refusal_in
from kaito.inference.engines.adapter_files import find_adapters, with_strength
from kaito.inference.engines.vllm_args import INTERNAL_HOST, INTERNAL_PORT, connect_host, vllm_args
from kaito.inference.sse import EventCutter, payloads

log = logging.getLogger(__name__)
VLLM_MODULE = "vllm.entrypoints.openai.api_server"


class VllmEngine:
    name = "vllm"

    def __init__(
        self,
        config: EngineConfig,
        *,
        host: str = INTERNAL_HOST,
        port: int = INTERNAL_PORT,
        command: Sequence[str] | None = None,
        startup_timeout: float = 3600.0,
        upstream: str | None = None,
    ) -> None:
        """`config` is what vLLM runs (model, plan, adapters); vLLM itself listens on `host`:`port` (by default only
        this pod reaches it; on the pod's public address, clients reach vLLM's OpenAI routes without a relay).

        With `upstream` (a base URL such as http://127.0.0.1:8000), no child is started: the engine relays to a vLLM
        OpenAI server that is already running there, and its adapters are the ones that server lists.
        """
        if not config.model:
            raise ValueError("the vLLM engine needs a model")
        self.config = config
        self.served_model_name = config.served_model_name or config.model
        self.max_model_len = config.max_model_len or 0
        self.kv_cache_tokens = 0  # from vLLM's start-up log; 0 until it says (or when relaying to a running server)
        block = config.vllm.get("block-size", config.vllm.get("block_size"))
        self._block_size = int(block) if isinstance(block, int | str) and str(block).isdigit() else DEFAULT_BLOCK_SIZE
        self.adapters_dir = Path(config.adapters_dir) if config.adapters_dir else None
        self.host = host
        self.port = port
        self.command = list(command or [sys.executable, "-m", VLLM_MODULE])
        self.startup_timeout = startup_timeout
        self.upstream = upstream.rstrip("/") if upstream else None
        self.process: asyncio.subprocess.Process | None = None
        self.log_tail: deque[str] = deque(maxlen=50)
        self._adapter_names: list[str] = []
        self._scratch = tempfile.TemporaryDirectory(prefix="kaito-adapters-")
        self._session: aiohttp.ClientSession | None = None
        self._log_task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return self.upstream or f"http://{connect_host(self.host)}:{self.port}"

    def models(self) -> list[str]:
        return [self.served_model_name, *self._adapter_names]

    def launch_args(self) -> list[str]:
        """The exact command line vLLM is started with (adapters registered with their strength baked in)."""
        adapters = find_adapters(self.adapters_dir, self.config.adapter_strengths) if self.adapters_dir else []
        self._adapter_names = [a.name for a in adapters]
        modules = [(a.name, str(with_strength(a, Path(self._scratch.name)))) for a in adapters]
        return [*self.command, *vllm_args(self.config, host=self.host, port=self.port, lora_modules=modules)]

    async def load(self) -> None:
        if self.upstream is None:
            argv = self.launch_args()
            log.info("starting vLLM: %s", " ".join(argv))
            self.process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            self._log_task = asyncio.create_task(self._pump_logs(), name="vllm-logs")
        else:
            log.info("relaying to the vLLM server at %s", self.upstream)
        # No cap on connections (aiohttp's default is 100): vLLM queues what it cannot run yet, and a cap here
        # would hold requests back before vLLM ever saw them.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)
        )
        await asyncio.wait_for(self._until_healthy(), self.startup_timeout)
        await self._discover_models()
        async for _ in self.generate(Request(model=self.served_model_name, prompt="Hello")):
            pass

    async def _pump_logs(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.log_tail.append(line)
            if (tokens := kv_tokens_in(line, block_size=self._block_size)) is not None:
                self.kv_cache_tokens = tokens
            log.info("vllm: %s", line)

    async def _until_healthy(self) -> None:
        assert self._session is not None
        while True:
            if self.process is not None and self.process.returncode is not None:
                if self._log_task is not None:
                    await asyncio.wait({self._log_task}, timeout=5)  # the last lines say why it died
                if (refusal := refusal_in(list(self.log_tail))) is not None:
                    raise EngineRefused(refusal)
                tail = "\n".join(list(self.log_tail)[-15:])
                raise NotReady(f"vLLM exited with code {self.process.returncode} while starting:\n{tail}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self._session.get(f"{self.base_url}/health") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(1.0)

    async def _discover_models(self) -> None:
        """The context length vLLM settled on; for a server kaito did not start, also the adapters it serves."""
        assert self._session is not None
        async with self._session.get(f"{self.base_url}/v1/models") as resp:
            body = await resp.json()
        listed = [model for model in body.get("data") or [] if model.get("id")]
        for model in listed:
            if model["id"] == self.served_model_name and model.get("max_model_len"):
                self.max_model_len = int(model["max_model_len"])
        if self.upstream is not None:
            self._adapter_names = [str(m["id"]) for m in listed if m["id"] != self.served_model_name]

    @property
    def running(self) -> bool:
        if self._session is None:
            return False
        return self.upstream is not None or (self.process is not None and self.process.returncode is None)

    async def generate(self, request: Request) -> AsyncIterator[Chunk]:
        chat = request.messages is not None
        async with self._post(request) as resp:
            async for chunk in _sse_chunks(_Body(resp), chat=chat):
                yield chunk

    @contextlib.asynccontextmanager
    async def open_events(self, request: Request) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self._post(request) as resp:
            yield _Body(resp)

    @contextlib.asynccontextmanager
    async def _post(self, request: Request) -> AsyncIterator[aiohttp.ClientResponse]:
        """vLLM's streamed answer to `request`, once it has accepted it (its refusals raise as EngineErrors)."""
        if request.model not in self.models():
            raise UnknownModel(
                f"The model `{request.model}` does not exist; available: {', '.join(self.models())}", param="model"
            )
        if self._session is None or not self.running:
            raise NotReady("the vLLM engine is not running")
        path = "/v1/chat/completions" if request.messages is not None else "/v1/completions"
        async with self._session.post(f"{self.base_url}{path}", json=_body(request)) as resp:
            if resp.status != 200:
                raise _error(resp.status, await resp.text())
            yield resp

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._session is not None:
            await self._session.close()
        self._scratch.cleanup()


def _body(request: Request) -> dict[str, Any]:
    s = request.sampling
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": s.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if s.stop:
        body["stop"] = list(s.stop)
    if s.seed is not None:
        body["seed"] = s.seed
    if request.messages is not None:
        body["messages"] = list(request.messages)
    else:
        body["prompt"] = request.prompt or ""
    return body


class _Body:
    """vLLM's response body as it arrives; a connection that breaks mid-stream is an EngineError."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._content = resp.content

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            data = await self._content.readany()
        except aiohttp.ClientError as exc:
            raise EngineError(f"vLLM's stream broke off: {exc}") from None
        if not data:
            raise StopAsyncIteration
        return data


async def _sse_chunks(body: AsyncIterator[bytes], *, chat: bool) -> AsyncIterator[Chunk]:
    """vLLM's SSE stream as Chunks; the usage-only final event carries the token counts."""
    finish: str | None = None
    cutter = EventCutter()
    async for data in body:
        for payload in payloads(cutter.feed(data)):
            if payload == b"[DONE]":
                return
            event = json.loads(payload)
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                finish = choice.get("finish_reason") or finish
                if text:
                    yield Chunk(text=text, prompt_tokens=0, completion_tokens=0)
            usage = event.get("usage")
            if usage:
                tokens = (usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
                yield Chunk("", *tokens, finish_reason="length" if finish == "length" else "stop")


def _error(status: int, text: str) -> EngineError:
    try:
        error = json.loads(text).get("error") or {}
        message, param = str(error.get("message") or text), error.get("param")
    except (ValueError, AttributeError):
        message, param = text, None
    if status == 404:
        return UnknownModel(message, param="model")
    if status == 429:
        return Overloaded(message)
    if status == 400:
        return BadParameter(message, param=param)
    return EngineError(f"vLLM answered {status}: {message}")
