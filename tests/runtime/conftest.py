"""Runtime test helpers (the `kclient` fixture lives in tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(check: Callable[[], bool], *, within: float = 10.0, message: str = "") -> None:
    """Poll `check` until it holds; fail with `message` after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(message or "condition not met in time")
        await asyncio.sleep(0.01)
