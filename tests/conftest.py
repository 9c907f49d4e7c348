"""Shared fixtures: a fresh simulated cluster per test, a namespace per test, kubectl and kubernetes-asyncio clients."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from kaito.runtime import mutation
from kaito.runtime.client import Client
from kaito_sim.server import SimServer

# Every cache built in the suite (the e2e operator's included) keeps private copies of what it holds,
# so a reconciler that mutates a shared cached object fails the test that made it do so.
os.environ.setdefault(mutation.ENV, "1")


@pytest.fixture(autouse=True)
def no_cache_mutations() -> Iterator[None]:
    mutation.clear()
    yield
    found = mutation.clear()
    assert not found, f"objects read from the cache were mutated: {[str(m) for m in found]}"


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Kubectl:
    """Runs the real kubectl against one server, with its own discovery cache and namespace."""

    def __init__(self, kubeconfig: Path, cache_dir: Path, namespace: str) -> None:
        self.namespace = namespace
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "KUBECACHEDIR": str(cache_dir),
            "HOME": str(cache_dir.parent),
        }

    async def __call__(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        namespaced: bool = True,
        wait_s: float = 60,
    ) -> Result:
        argv = ["kubectl", *args] + (["-n", self.namespace] if namespaced else [])
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), wait_s)
        result = Result(proc.returncode or 0, out.decode(), err.decode())
        if check and result.rc != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.rc}):\n{result.stderr}{result.stdout}")
        return result

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        """A long-running kubectl (e.g. `get -w`) whose output the test reads as it comes."""
        return await asyncio.create_subprocess_exec(
            "kubectl",
            *args,
            "-n",
            self.namespace,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(bookmark_interval=0.5) as server:
        yield server


@pytest.fixture
async def api(sim: SimServer) -> AsyncIterator[client.ApiClient]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(sim.kubeconfig_path), client_configuration=cfg)
    async with client.ApiClient(cfg) as api_client:
        yield api_client


@pytest.fixture
async def kclient(api: client.ApiClient) -> AsyncIterator[Client]:
    """A runtime client sharing the test's ApiClient (the `api` fixture closes it)."""
    yield Client(api, qps=0, burst=0)


@pytest.fixture
async def namespace(api: client.ApiClient) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    await client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture
def kubectl(sim: SimServer, namespace: str, tmp_path: Path) -> Kubectl:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl must be on PATH for the conformance suite")
    cache = tmp_path / "home" / "kube-cache"
    cache.mkdir(parents=True)
    return Kubectl(sim.kubeconfig_path, cache, namespace)
