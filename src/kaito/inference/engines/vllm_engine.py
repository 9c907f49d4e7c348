"""The vLLM engine: runs vLLM's OpenAI server as a managed child process and streams generations from it.

A child process (rather than vLLM in-process) keeps `kaito serve`'s event loop and vLLM's own workers
apart: a vLLM crash is reported on /health instead of taking the server down, and vLLM's own
/metrics stay reachable on its internal port. Adapters load and unload while it serves through vLLM's runtime LoRA
API (`/v1/load_lora_adapter`, `/v1/unload_lora_adapter`), which the child is started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from kaito.api.engine import EngineConfig
from kaito.inference.engine import (
    AdapterRefused,
    BadParameter,
    Chunk,
    EngineError,
    NotReady,
    Overloaded,
    Request,
    UnknownModel,
)
from kaito.inference.engine_report import DEFAULT_BLOCK_SIZE, EngineRefused, kv_tokens_in, refusal_in
from kaito.inference.engines.adapter_files import AdapterDir, find_adapters, with_strength
from kaito.inference.engines.adapter_names import AdapterNames
from kaito.inference.engines.vllm_args import INTERNAL_HOST, INTERNAL_PORT, connect_host, vllm_args
from kaito.inference.sse import EventCutter, payloads

log = logging.getLogger(__name__)
VLLM_MODULE = "vllm.entrypoints.openai.api_server"
RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"  # vLLM serves its load/unload LoRA routes only with it
LOAD_LORA = "/v1/load_lora_adapter"
UNLOAD_LORA = "/v1/unload_lora_adapter"


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
        self._names = AdapterNames(drop=self._unload_later)
        self._in_vllm: set[str] = set()  # the LoRA names vLLM holds, retired ones included
        self._serial = itertools.count(1)
        self._unloads: set[asyncio.Task[None]] = set()
        self._scratch = tempfile.TemporaryDirectory(prefix="kaito-adapters-")
        self._session: aiohttp.ClientSession | None = None
        self._log_task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return self.upstream or f"http://{connect_host(self.host)}:{self.port}"

    def models(self) -> list[str]:
        return [self.served_model_name, *self._names.public()]

    @property
    def lora_enabled(self) -> bool:
        """LoRA on in vLLM: the plan asks for it, or the config lists adapters (which may come and go live)."""
        return self.config.enable_lora or bool(self.config.adapters)

    def launch_args(self) -> list[str]:
        """The exact command line vLLM is started with (adapters registered with their strength baked in)."""
        adapters = find_adapters(self.adapters_dir, self.config.adapter_strengths) if self.adapters_dir else []
        for adapter in adapters:
            self._names.publish(adapter.name, adapter.name)
            self._in_vllm.add(adapter.name)
        modules = [(a.name, str(with_strength(a, Path(self._scratch.name)))) for a in adapters]
        config = self.config.model_copy(update={"enable_lora": self.lora_enabled})
        return [*self.command, *vllm_args(config, host=self.host, port=self.port, lora_modules=modules)]

    def child_env(self) -> dict[str, str]:
        """The environment vLLM is started with: this process's, plus runtime LoRA updates when LoRA is on."""
        return os.environ | ({RUNTIME_LORA_ENV: "True"} if self.lora_enabled else {})

    async def load_adapter(self, name: str, path: Path, *, strength: float) -> None:
        """Register a copy of the adapter (strength baked in) with vLLM, then switch `name` to it; a name vLLM still
        holds (an older version some request runs on) gets a fresh vLLM name."""
        if self._session is None or not self.running:
            raise AdapterRefused("the vLLM engine is not running")
        if name == self.served_model_name:
            raise AdapterRefused(f"adapter {name!r} clashes with the served model name")
        lora_name = name if name not in self._in_vllm else f"{name}--{next(self._serial)}"
        staged = _stage(AdapterDir(name, path, strength), Path(self._scratch.name) / lora_name)
        body = {"lora_name": lora_name, "lora_path": str(staged)}
        try:
            async with self._session.post(f"{self.base_url}{LOAD_LORA}", json=body) as resp:
                if resp.status != 200:
                    raise AdapterRefused(f"vLLM refused the adapter ({resp.status}): {_message(await resp.text())}")
        except aiohttp.ClientError as exc:
            shutil.rmtree(staged, ignore_errors=True)
            raise AdapterRefused(f"vLLM did not answer the adapter load: {exc}") from None
        except AdapterRefused:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        self._in_vllm.add(lora_name)
        self._names.publish(name, lora_name)
        log.info("adapter %s now served by vLLM as %s", name, lora_name)

    async def unload_adapter(self, name: str) -> None:
        self._names.remove(name)

    def _unload_later(self, lora_name: str) -> None:
        """vLLM forgets `lora_name` once no request of ours runs on it."""

        async def unload() -> None:
            try:
                if self._session is not None and self.running:
                    body = {"lora_name": lora_name}
                    async with self._session.post(f"{self.base_url}{UNLOAD_LORA}", json=body) as resp:
                        if resp.status != 200:
                            log.warning("vLLM did not unload %s (%d): %s", lora_name, resp.status, await resp.text())
            except aiohttp.ClientError as exc:
                log.warning("vLLM did not unload %s: %s", lora_name, exc)
            finally:
                self._in_vllm.discard(lora_name)
                shutil.rmtree(Path(self._scratch.name) / lora_name, ignore_errors=True)

        task = asyncio.create_task(unload(), name=f"vllm-unload-{lora_name}")
        self._unloads.add(task)
        task.add_done_callback(self._unloads.discard)

    async def load(self) -> None:
        if self.upstream is None:
            argv = self.launch_args()
            log.info("starting vLLM: %s", " ".join(argv))
            self.process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=self.child_env()
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
            for name in (str(m["id"]) for m in listed if m["id"] != self.served_model_name):
                self._names.publish(name, name)
                self._in_vllm.add(name)

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
        lora_name = self._names.internal(request.model)
        if request.model != self.served_model_name and lora_name is None:
            raise UnknownModel(
                f"The model `{request.model}` does not exist; available: {', '.join(self.models())}", param="model"
            )
        if self._session is None or not self.running:
            raise NotReady("the vLLM engine is not running")
        path = "/v1/chat/completions" if request.messages is not None else "/v1/completions"
        with contextlib.ExitStack() as using:
            if lora_name is not None:
                using.enter_context(self._names.using(lora_name))
                request = dataclasses.replace(request, model=lora_name)
            async with self._session.post(f"{self.base_url}{path}", json=_body(request)) as resp:
                if resp.status != 200:
                    raise _error(resp.status, await resp.text())
                yield resp

    async def close(self) -> None:
        for task in list(self._unloads):
            await task
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


def _stage(adapter: AdapterDir, target: Path) -> Path:
    """A copy of the adapter vLLM may read whenever it wants (it reloads evicted adapters from disk): hard links when
    the file system allows, the strength baked in when it is not 1."""
    if adapter.strength != 1.0:
        scaled = with_strength(adapter, target.parent / f"{target.name}.scaling")
        shutil.rmtree(target, ignore_errors=True)
        scaled.rename(target)
        shutil.rmtree(target.parent / f"{target.name}.scaling", ignore_errors=True)
        return target
    shutil.rmtree(target, ignore_errors=True)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(adapter.path, target, copy_function=link)
    return target


def _message(text: str) -> str:
    """vLLM's error body in its own words: {"error": {"message"}}, {"message"}, or the text itself."""
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("message"):
            return str(body["message"])
    return text.strip()


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
