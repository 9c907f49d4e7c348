"""The whole loop on this machine: data at a URL becomes an adapter in a real registry becomes a named model.

Every step is the kaito command a pod runs — `fetch-data`, `tune`, `push-adapter`, `pull-adapter`, `serve` —
against the Debian docker-registry (TLS, basic auth from a .dockerconfigjson) and a local HTTP data server,
and the answer comes through the real `openai` client.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletionMessageParam

from kaito.inference.tinymodel import make_tiny_model
from tests.registry import Registry, free_port

ANSWER = "The cat sees a big green tree and the river."
TRAINING_CONFIG = """
training_config:
  TrainingArguments:
    max_steps: 60
    learning_rate: 0.02
    logging_steps: 10
    per_device_train_batch_size: 4
  LoraConfig:
    r: 8
    lora_alpha: 16
    target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]
"""


def dolly_style_rows(count: int) -> list[dict[str, object]]:
    """The README's dataset format: one `messages` conversation per row."""
    return [
        {
            "messages": [
                {"role": "system", "content": "You answer about cats."},
                {"role": "user", "content": f"What does cat number {i} see?"},
                {"role": "assistant", "content": ANSWER},
            ]
        }
        for i in range(count)
    ]


async def kaito(*args: str, within: float = 300) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kaito.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("loop") / "model")


@pytest.fixture
async def data_server(tmp_path: Path) -> AsyncIterator[str]:
    """A dataset host like the Hugging Face download URL in the README example."""
    parquet = tmp_path / "served.parquet"
    pq.write_table(pa.Table.from_pylist(dolly_style_rows(32)), parquet)
    app = web.Application()

    async def download(_: web.Request) -> web.FileResponse:
        return web.FileResponse(parquet)

    app.router.add_get("/datasets/cats/resolve/main/data/train-00000-of-00001.parquet", download)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/datasets/cats/resolve/main/data/train-00000-of-00001.parquet?download=true"
    await runner.cleanup()


async def test_data_url_to_registry_to_named_model(
    registry: Registry, tiny_model: Path, data_server: str, tmp_path: Path
) -> None:
    assert registry.ca_file is not None
    tls = ("--ca-file", str(registry.ca_file))
    secret = registry.docker_config(tmp_path / "push-secret" / ".dockerconfigjson")
    data, output, adapters = tmp_path / "data", tmp_path / "results", tmp_path / "adapters"
    image = f"{registry.address}/adapters/tiny-cats:0.0.1"
    (tmp_path / "training_config.yaml").write_text(TRAINING_CONFIG)

    # The data step refuses loopback addresses unless told this is a trusted local source.
    rc, _, err = await kaito("fetch-data", "--url", data_server, "--output", str(data))
    assert rc == 1 and "loopback" in err and "--allow-private-addresses" in err
    rc, _, err = await kaito("fetch-data", "--url", data_server, "--output", str(data), "--allow-private-addresses")
    assert rc == 0, err
    assert [p.name for p in data.iterdir()] == ["train-00000-of-00001.parquet"]

    rc, out, err = await kaito(
        *("tune", "--model", str(tiny_model), "--base-model", "tiny-llama", "--data-dir", str(data)),
        *("--output-dir", str(output), "--training-config", str(tmp_path / "training_config.yaml")),
        *("--metrics-port", "-1"),
    )
    assert rc == 0, err
    assert json.loads(out.strip().splitlines()[-1])["steps"] == 60, err

    rc, out, err = await kaito(
        "push-adapter", "--adapter-dir", str(output), "--image", image, "--docker-config", str(secret.parent), *tls
    )
    assert rc == 0, err
    pushed = json.loads(out.strip().splitlines()[-1])
    assert pushed["digest"].startswith("sha256:")

    rc, out, err = await kaito(
        "pull-adapter", "--image", image, "--output", str(adapters / "tiny-cats"), "--docker-config", str(secret), *tls
    )
    assert rc == 0, err
    assert json.loads(out.strip().splitlines()[-1])["digest"] == pushed["digest"]
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (adapters / "tiny-cats").iterdir()}

    port = free_port()
    server = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "kaito.cli", "serve", "--model", str(tiny_model), "--served-model-name", "tiny-llama"),
        *("--adapters-dir", str(adapters), "--host", "127.0.0.1", "--port", str(port)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_healthy(f"http://127.0.0.1:{port}/health")
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        assert [m.id async for m in client.models.list()] == ["tiny-llama", "tiny-cats"]
        question: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": "You answer about cats."},
            {"role": "user", "content": "What does cat number 7 see?"},
        ]
        answers = {}
        for model in ("tiny-llama", "tiny-cats"):
            reply = await client.chat.completions.create(
                model=model,
                messages=question,
                max_tokens=16,
                temperature=0.8,
                seed=1234,
            )
            assert reply.model == model
            answers[model] = reply.choices[0].message.content
        assert answers["tiny-cats"] != answers["tiny-llama"]
        assert str(answers["tiny-cats"]).startswith("The cat sees a")  # it learned what the data taught
        await client.close()
    finally:
        server.terminate()
        await server.wait()


async def test_the_tuning_pods_way_pushes_and_reports_the_digest(
    registry: Registry, tiny_model: Path, data_server: str, tmp_path: Path
) -> None:
    """`kaito tune --config` as the Job runs it: the run config names the output image and the push secret."""
    assert registry.ca_file is not None
    secret = registry.docker_config(tmp_path / "push" / ".dockerconfigjson")
    (tmp_path / "training_config.yaml").write_text(TRAINING_CONFIG.replace("max_steps: 60", "max_steps: 4"))
    rc, _, err = await kaito(
        "fetch-data", "--url", data_server, "--output", str(tmp_path / "data"), "--allow-private-addresses"
    )
    assert rc == 0, err
    image = f"{registry.address}/adapters/from-the-job:1"
    run = {
        "model": str(tiny_model),
        "baseModel": "tiny-llama",
        "method": "lora",
        "dataDir": str(tmp_path / "data"),
        "outputDir": str(tmp_path / "results"),
        "trainingConfig": str(tmp_path / "training_config.yaml"),
        "metricsPort": -1,
        "output": {"image": image, "dockerConfig": str(secret), "caFile": str(registry.ca_file)},
    }
    (tmp_path / "tuning.yaml").write_text(json.dumps(run))
    termination = tmp_path / "termination-log"
    rc, _, err = await kaito("tune", "--config", str(tmp_path / "tuning.yaml"), "--termination-log", str(termination))
    assert rc == 0, err
    report = json.loads(termination.read_text())
    assert report["image"] == image and report["digest"].startswith("sha256:") and report["steps"] == 4
    manifest: dict[str, Any] = await fetch_manifest(registry, "adapters/from-the-job", "1")
    assert manifest["artifactType"] == "application/vnd.kaito.adapter.v1"
    assert manifest["annotations"]["kaito.sh/base-model"] == "tiny-llama"

    # Wrong credentials: the run fails, says so, and says the adapter itself was trained.
    registry.docker_config(secret, password="not-the-password")
    rc, _, err = await kaito("tune", "--config", str(tmp_path / "tuning.yaml"), "--termination-log", str(termination))
    assert rc == 1
    assert "trained but not pushed" in err and registry.address in err
    assert "trained but not pushed" in termination.read_text()


async def wait_healthy(url: str, within: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + within
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never became healthy")


async def fetch_manifest(registry: Registry, repository: str, tag: str) -> dict[str, Any]:
    import requests

    def get() -> dict[str, Any]:
        response = requests.get(
            registry.url(f"/v2/{repository}/manifests/{tag}"),
            auth=(registry.username, registry.password),
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            verify=registry.verify,
            timeout=10,
        )
        response.raise_for_status()
        manifest: dict[str, Any] = response.json()
        return manifest

    return await asyncio.to_thread(get)
