"""Follows the mounted engine config file while `kaito serve` runs, so adapter edits take effect without a restart.

A ConfigMap volume changes by an atomic swap of its `..data` symlink: the file's path stays, what it resolves to is
new. One stat a second (it follows the symlink) notices; the text is read and parsed only when the stat changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from kaito.api.engine import EngineConfig, EngineConfigError
from kaito.inference.live_adapters import AdapterManager

log = logging.getLogger(__name__)
POLL_INTERVAL = 1.0


class ConfigFile:
    """The engine config at `path`, handed out again only when its content changed."""

    def __init__(self, path: Path, *, text: str | None = None) -> None:
        """`text`: what was read at start-up, so an unchanged file is not handed out again."""
        self.path = path
        self._stat: tuple[int, int, int, int] | None = None
        self._text = text

    def changed(self) -> EngineConfig | None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            log.warning("cannot stat the engine config %s: %s", self.path, exc)
            return None
        stat = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if stat == self._stat:
            return None
        self._stat = stat
        try:
            text = self.path.read_text()
        except OSError as exc:
            log.warning("cannot read the engine config %s: %s", self.path, exc)
            self._stat = None
            return None
        if text == self._text:
            return None
        self._text = text
        try:
            return EngineConfig.from_yaml(text, source=str(self.path))
        except EngineConfigError as exc:
            log.error("the engine config changed, but cannot be used (the adapters stay as they are): %s", exc)
            return None


class ConfigFollower:
    """Hands every change of the config file's adapters to the AdapterManager."""

    def __init__(
        self,
        manager: AdapterManager,
        config_file: ConfigFile | None,
        *,
        interval: float = POLL_INTERVAL,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.manager = manager
        self.config_file = config_file
        self.interval = interval
        self._sleep = sleep

    def poll(self) -> bool:
        """One look at the file; True when the manager got a new config."""
        if self.config_file is None or (config := self.config_file.changed()) is None:
            return False
        log.info("the engine config changed; adapters now: %s", [a.name for a in config.adapters] or "none")
        self.manager.follow(config)
        return True

    async def run(self) -> None:
        """Let adapters load, then poll until cancelled."""
        self.manager.start()
        while True:
            self.poll()
            await self._sleep(self.interval)
