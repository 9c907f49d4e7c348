"""Runtime fixtures: a runtime `Client` on the per-test simulated cluster, and waiting helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from kubernetes_asyncio import client as k8s

from kaito.runtime.client import Client


@pytest.fixture
async def kclient(api: k8s.ApiClient) -> AsyncIterator[Client]:
    """A runtime client sharing the test's ApiClient (the `api` fixture closes it)."""
    yield Client(api, qps=0, burst=0)


async def eventually(check: Callable[[], bool], *, within: float = 10.0, message: str = "") -> None:
    """Poll `check` until it holds; fail with `message` after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(message or "condition not met in time")
        await asyncio.sleep(0.01)
