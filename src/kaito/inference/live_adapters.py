"""Brings the adapters an engine serves to what the engine config lists, while it serves: pull, check, load, replace,
unload, one adapter at a time each, and what became of each adapter for `GET /v1/adapters`.

Each adapter has its own task that converges on the latest wanted spec (level-based: edits that arrive while it
works are not lost, only collapsed). A bad adapter ends Failed with its reason and stays so until its spec changes;
nothing about it reaches the base model or the other adapters. A pull that failed is the exception: the registry
may be down, the image not pushed yet or the pull secret not fixed yet, so it is tried again, as a kubelet retries
an image pull, after a delay that doubles from `pull_backoff`'s first figure to its second, staying Failed (with
the next attempt in its message) meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kaito.api.adapter_report import FAILED, LOADED, PULLING, AdapterReport, AdapterState
from kaito.api.engine import EngineAdapter, EngineConfig
from kaito.inference.adapter_fetch import AdapterUnusable, Fetch, Fetched, check_adapter, pull_image, remove_tree
from kaito.inference.engine import AdapterRefused, Engine, LiveAdapters

log = logging.getLogger(__name__)
PULLS_DIR = ".kaito-pulls"  # under adaptersDir; no adapter_config.json at its top, so the start-up scan skips it
PULL_BACKOFF = (10.0, 300.0)  # seconds before the first retry of a failed pull, and the most between two (a kubelet's)


@dataclass
class _Adapter:
    wanted: EngineAdapter | None
    state: AdapterState = PULLING
    message: str = ""
    digest: str | None = None
    served: EngineAdapter | None = None  # the spec the engine serves now
    failed: EngineAdapter | None = None  # the spec that failed; not tried again until the spec changes
    no_slot: bool = False  # failed for want of a LoRA slot: tried again whenever the config changes
    pull_failures: int = 0  # failed pulls of the wanted spec in a row
    retry: asyncio.Task[None] | None = None  # the wait before the next pull
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class AdapterManager:
    def __init__(
        self,
        engine: Engine,
        *,
        adapters_dir: Path,
        base_names: Sequence[str],
        max_loras: int | None = None,
        max_rank: int | None = None,
        fetch: Fetch = pull_image,
        pull_backoff: tuple[float, float] = PULL_BACKOFF,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._engine = engine
        self._dir = adapters_dir
        self._pulls = adapters_dir / PULLS_DIR
        self._base_names = tuple(base_names)
        self._max_loras = max_loras
        self._max_rank = max_rank
        self._fetch = fetch
        self._pull_backoff = pull_backoff
        self._sleep = sleep
        self._adapters: dict[str, _Adapter] = {}
        self._order: list[str] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._serving = asyncio.Event()  # set once the engine is loaded
        self._serial = itertools.count(1)
        remove_tree(self._pulls)  # what a previous run of this container pulled is not served

    def follow(self, config: EngineConfig) -> None:
        """Make `config.adapters` the wanted set; the per-adapter tasks do the work."""
        self._max_loras = config.max_loras if config.max_loras is not None else self._max_loras
        self._max_rank = config.max_lora_rank if config.max_lora_rank is not None else self._max_rank
        wanted = {adapter.name: adapter for adapter in config.adapters}
        self._order = list(wanted)
        for name, adapter in self._adapters.items():
            if name not in wanted:
                adapter.wanted = None
                adapter.wake.set()
        for name, spec in wanted.items():
            adapter = self._adapters.setdefault(name, _Adapter(spec))
            if name not in self._tasks:
                self._tasks[name] = asyncio.create_task(self._run(name, adapter), name=f"kaito-adapter-{name}")
            if adapter.no_slot:
                adapter.failed = None
            if spec != adapter.wanted:
                _stop_retrying(adapter)
            adapter.wanted = spec
            adapter.wake.set()

    def start(self) -> None:
        """The engine is loaded: adapters may load from now on."""
        self._serving.set()

    def reports(self) -> list[AdapterReport]:
        reports = []
        for name in self._order:
            adapter = self._adapters.get(name)
            if adapter is None or adapter.wanted is None:
                continue
            image = adapter.wanted.image
            reports.append(
                AdapterReport(
                    name=name,
                    image=image,
                    digest=adapter.digest,
                    state=adapter.state,
                    message=adapter.message,
                    retrying=adapter.retry is not None,
                )
            )
        return reports

    async def close(self) -> None:
        for adapter in self._adapters.values():
            _stop_retrying(adapter)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    async def _run(self, name: str, adapter: _Adapter) -> None:
        await self._serving.wait()
        while True:
            await adapter.wake.wait()
            adapter.wake.clear()
            wanted = adapter.wanted
            try:
                if wanted is None:
                    await self._unload(name, adapter)
                    if adapter.wanted is None:  # not wanted again meanwhile
                        del self._adapters[name], self._tasks[name]
                        return
                elif wanted != adapter.served and wanted != adapter.failed:
                    await self._converge(name, adapter, wanted)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must cost this adapter only, never the server
                log.exception("adapter %s: unexpected failure", name)
                self._fail(adapter, wanted, f"{type(exc).__name__}: {exc}")

    async def _converge(self, name: str, adapter: _Adapter, wanted: EngineAdapter) -> None:
        adapter.no_slot = False
        if (holders := self._slot_holders(name)) is not None:
            await self._unload(name, adapter)
            adapter.no_slot = True
            self._fail(
                adapter, wanted, f"no LoRA slot left: the plan allows {self._max_loras} (max-loras), held by {holders}"
            )
            return
        if not isinstance(self._engine, LiveAdapters):
            self._fail(adapter, wanted, f"the {self._engine.name} engine cannot load adapters while it serves")
            return
        if wanted.image is None and adapter.served is None and name in self._engine.models():
            self._loaded(adapter, wanted, None, f"served from {self._dir / name} since start-up")
            return
        if adapter.pull_failures == 0:  # a retry stays Failed, with its reason, until it has an outcome
            adapter.state, adapter.message = PULLING, f"pulling {wanted.image}" if wanted.image else "loading"
        try:
            fetched = await self._fetched(name, wanted)
        except AdapterUnusable as exc:
            await self._unload(name, adapter)
            self._pull_failed(name, adapter, wanted, str(exc))
            return
        adapter.pull_failures = 0
        pulled = fetched.path if wanted.image else None
        try:
            check_adapter(fetched, base_names=self._base_names, max_rank=self._max_rank)
            await self._engine.load_adapter(name, fetched.path, strength=wanted.strength)
        except (AdapterUnusable, AdapterRefused) as exc:
            await self._unload(name, adapter)  # what it replaced goes too: /v1/models lists Loaded adapters only
            self._fail(adapter, wanted, str(exc))
            return
        finally:
            remove_tree(pulled)  # the engine holds what it loaded; the files are not needed after load_adapter
        self._loaded(adapter, wanted, fetched.digest, f"loaded from {wanted.image or self._dir / name}")

    async def _fetched(self, name: str, wanted: EngineAdapter) -> Fetched:
        if wanted.image is None:
            path = self._dir / name
            if not (path / "adapter_config.json").is_file():
                raise AdapterUnusable(f"no image given and no adapter in {path} (no adapter_config.json)")
            return Fetched(path)
        return await self._fetch(wanted, self._pulls / f"{name}.{next(self._serial)}")

    async def _unload(self, name: str, adapter: _Adapter) -> None:
        if adapter.served is not None and isinstance(self._engine, LiveAdapters):
            await self._engine.unload_adapter(name)
        adapter.served = None

    def _slot_holders(self, name: str) -> str | None:
        """The adapters ahead of `name` in the config holding every LoRA slot, or None if one is free for it."""
        if self._max_loras is None or name not in self._order:
            return None
        ahead = [n for n in self._order[: self._order.index(name)] if self._holds_slot(n)]
        return ", ".join(ahead) if len(ahead) >= self._max_loras else None

    def _holds_slot(self, name: str) -> bool:
        adapter = self._adapters.get(name)
        return adapter is not None and adapter.state != FAILED

    def _loaded(self, adapter: _Adapter, wanted: EngineAdapter, digest: str | None, message: str) -> None:
        adapter.state, adapter.message, adapter.digest = LOADED, message, digest or wanted.digest
        adapter.served, adapter.failed = wanted, None

    def _pull_failed(self, name: str, adapter: _Adapter, wanted: EngineAdapter, message: str) -> None:
        """Failed, and the pull tried again after the next delay of the backoff, unless the spec changes first."""
        first, most = self._pull_backoff
        delay = min(most, first * 2**adapter.pull_failures)
        adapter.pull_failures += 1
        self._fail(adapter, wanted, f"{message}; pulling again in {delay:g}s")
        again = self._pull_again(adapter, wanted, delay)
        adapter.retry = asyncio.create_task(again, name=f"kaito-adapter-{name}-retry")

    async def _pull_again(self, adapter: _Adapter, wanted: EngineAdapter, delay: float) -> None:
        await self._sleep(delay)
        adapter.retry = None
        if adapter.failed == wanted and adapter.wanted == wanted:
            adapter.failed = None
            adapter.wake.set()

    def _fail(self, adapter: _Adapter, wanted: EngineAdapter | None, message: str) -> None:
        adapter.state, adapter.message, adapter.failed = FAILED, message, wanted
        adapter.digest = wanted.digest if wanted else None
        log.warning("adapter %s failed: %s", wanted.name if wanted else "?", message)


def _stop_retrying(adapter: _Adapter) -> None:
    """A new spec (or none) starts afresh: no pending retry, no failures counted."""
    if adapter.retry is not None:
        adapter.retry.cancel()
        adapter.retry = None
    adapter.pull_failures = 0
