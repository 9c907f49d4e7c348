"""A real Prometheus scrapes the operator and `kaito serve`, and the Grafana dashboard's queries answer from it."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml

from kaito.inference.tinymodel import make_tiny_model
from kaito.runtime.metrics import REGISTRY
from tests.conftest import Kubectl
from tests.docker import dashboard
from tests.e2e.conftest import Operator

ROOT = Path(__file__).resolve().parents[2]
PHI3 = ROOT / "examples/inference/kaito_workspace_phi_3.yaml"
NAME = "workspace-phi-3-mini"
PROMETHEUS = Path("/usr/bin/prometheus")
# Job names and target labels as the monitors in deploy/overlays/monitoring produce them: the ServiceMonitor's job is
# the Service's name, and the PodMonitor copies the pod's kaito.sh/workspace label to `workspace`.
MANAGER_JOB = "kaito-metrics"
INFERENCE_JOB = "kaito-workspaces"
SERVED = "tiny"
CHAT_ROUTE = "/v1/chat/completions"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def until(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, within: float, what: Callable[[T | None], str]
) -> T:
    """Calls `probe` until `done` holds; fails with `what(last value)` after `within` seconds."""
    deadline = time.monotonic() + within
    value: T | None = None
    while time.monotonic() < deadline:
        value = await probe()
        if done(value):
            return value
        await asyncio.sleep(0.25)
    pytest.fail(f"after {within:.0f} s: {what(value)}")


def printed_url(log: Path) -> str | None:
    found = re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
    return found.group(1) if found else None


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def status_of(http: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with http.get(url) as response:
            return response.status
    except aiohttp.ClientConnectionError:
        return None


@asynccontextmanager
async def kaito_serve(model: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`kaito serve` on a port it picks itself; its output goes to `log`, where it prints its URL."""
    argv = [sys.executable, "-m", "kaito.cli", "serve", "--model", str(model), "--served-model-name", SERVED]
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, "--host", "127.0.0.1", "--port", "0", stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        await stop(proc)


async def serve_url(proc: asyncio.subprocess.Process, log: Path, http: aiohttp.ClientSession) -> str:
    """The server's URL from its first line, once /health says the model is loaded."""

    async def url() -> str | None:
        assert proc.returncode is None, f"kaito serve exited with {proc.returncode}:\n{tail(log)}"
        return printed_url(log)

    base = await until(
        url, lambda u: u is not None, within=60, what=lambda _: f"kaito serve printed no URL:\n{tail(log)}"
    )
    assert base is not None
    await until(
        lambda: status_of(http, f"{base}/health"), lambda s: s == 200, within=60, what=lambda s: f"/health: {s}"
    )
    return base


async def chat(http: aiohttp.ClientSession, base: str) -> None:
    body = {"model": SERVED, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 4}
    async with http.post(f"{base}{CHAT_ROUTE}", json=body) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["choices"][0]["message"]["role"] == "assistant"


class Prometheus:
    """The Debian package's prometheus binary, scraping the given static targets every second."""

    def __init__(self, workdir: Path, http: aiohttp.ClientSession) -> None:
        self.workdir = workdir
        self.http = http
        self.log = workdir / "prometheus.log"
        self.url = ""
        self.proc: asyncio.subprocess.Process | None = None

    def write_config(self, jobs: dict[str, tuple[str, dict[str, str]]]) -> Path:
        scrape = [
            {"job_name": job, "static_configs": [{"targets": [target], "labels": labels}]}
            for job, (target, labels) in jobs.items()
        ]
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": scrape}
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    async def start(self, config: Path) -> None:
        for _ in range(3):  # the free port may be taken between choosing it and Prometheus binding it
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            with self.log.open("wb") as out:
                self.proc = await asyncio.create_subprocess_exec(
                    str(PROMETHEUS),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                )
            ready = await self._ready(within=20)
            if ready:
                return
            if "address already in use" not in tail(self.log):
                break
        pytest.fail(f"prometheus did not become ready:\n{tail(self.log)}")

    async def _ready(self, *, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.returncode is not None:
                return False
            if await status_of(self.http, f"{self.url}/-/ready") == 200:
                return True
            await asyncio.sleep(0.1)
        return False

    async def stop(self) -> None:
        if self.proc is not None:
            await stop(self.proc)

    async def api(self, path: str, **params: str) -> Any:
        async with self.http.get(f"{self.url}/api/v1/{path}", params=params) as response:
            body = await response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def targets(self) -> dict[str, dict[str, Any]]:
        data = await self.api("targets", state="active")
        return {t["labels"]["job"]: t for t in data["activeTargets"]}

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result


def total(result: list[dict[str, Any]]) -> float:
    return sum(float(sample["value"][1]) for sample in result)


def require_prometheus() -> None:
    if not PROMETHEUS.is_file():
        pytest.fail(f"{PROMETHEUS} is missing: scripts/system-deps installs it (Debian package prometheus)")


def workspace_reconciles() -> float:
    """controller_runtime_reconcile_total for the workspace controller, summed over results, in this process."""
    results = ("success", "error", "requeue", "requeue_after")
    labels = [{"controller": "workspace", "result": result} for result in results]
    return sum(REGISTRY.get_sample_value("controller_runtime_reconcile_total", ls) or 0.0 for ls in labels)


async def test_prometheus_scrapes_the_operator_and_the_inference_server(
    kubectl: Kubectl, operator: Operator, namespace: str, tmp_path: Path
) -> None:
    require_prometheus()
    assert operator.manager is not None
    manager_metrics = operator.manager.servers["metrics"]
    # The counters live in this process's registry, shared with earlier tests: only an increase counts.
    before = workspace_reconciles()
    model = await asyncio.to_thread(make_tiny_model, tmp_path / "model")

    async with aiohttp.ClientSession() as http, kaito_serve(model, tmp_path / "serve.log") as server:
        await kubectl("apply", "-f", str(PHI3))  # while the server loads
        base = await serve_url(server, tmp_path / "serve.log", http)
        await chat(http, base)

        prometheus = Prometheus(tmp_path, http)
        config = prometheus.write_config(
            {
                MANAGER_JOB: (f"127.0.0.1:{manager_metrics.port}", {"namespace": "kaito-system"}),
                INFERENCE_JOB: (base.removeprefix("http://"), {"namespace": namespace, "workspace": NAME}),
            }
        )
        try:
            await prometheus.start(config)
            await until(
                prometheus.targets,
                lambda t: {job: t[job]["health"] for job in t} == {MANAGER_JOB: "up", INFERENCE_JOB: "up"},
                within=15,
                what=lambda t: f"targets not up: { {j: (v['health'], v['lastError']) for j, v in (t or {}).items()} }",
            )
            await chat(http, base)  # a request Prometheus sees arrive, so the rates are above zero

            reconciles = f'sum(controller_runtime_reconcile_total{{job="{MANAGER_JOB}", controller="workspace"}})'
            result = await until(
                lambda: prometheus.query(reconciles),
                lambda r: total(r) > before,
                within=15,
                what=lambda r: f"{reconciles} = {total(r or [])}, not above {before}",
            )
            assert total(result) <= workspace_reconciles()

            requests = f'kaito_inference_requests_total{{job="{INFERENCE_JOB}", route="{CHAT_ROUTE}", code="200"}}'
            [series] = await until(
                lambda: prometheus.query(requests),
                lambda r: total(r) == 2,
                within=15,
                what=lambda r: f"{requests}: {r}",
            )
            assert series["metric"]["workspace"] == NAME

            await dashboard_answers(prometheus)
        finally:
            await prometheus.stop()


async def dashboard_answers(prometheus: Prometheus) -> None:
    """Every dashboard query runs; those of the manager and inference rows return series (failure-only panels
    excepted), and the request rate shows the request sent after the first scrape."""
    queries = dashboard.queries(dashboard.load())

    async def run_all() -> dict[dashboard.Query, list[dict[str, Any]]]:
        return {q: await prometheus.query(q.resolved()) for q in queries}

    def answered(results: dict[dashboard.Query, list[dict[str, Any]]]) -> bool:
        return not missing(results) and total(requests_panel(results)) > 0

    def missing(results: dict[dashboard.Query, list[dict[str, Any]]] | None) -> list[str]:
        return [
            f"{q.panel}: {q.resolved()}"
            for q, r in (results or {}).items()
            if not r and not q.row.startswith("Fine-tuning") and q.panel not in dashboard.FAILURE_PANELS
        ]

    def requests_panel(results: dict[dashboard.Query, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        [rate] = [r for q, r in results.items() if q.panel == "Requests per second"]
        return [s for s in rate if s["metric"].get("route") == CHAT_ROUTE]

    await until(
        run_all, answered, within=15, what=lambda r: "dashboard queries without data:\n" + "\n".join(missing(r))
    )
