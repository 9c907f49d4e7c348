"""`make demo-tuning`: the tuning loop on this machine, data at a URL to an adapter in a registry to a named model.

The steps are the ones a tuning pod and an inference pod run, as commands: `kaito fetch-data` from a local
HTTP server, `kaito tune` (LoRA, on CPU), `kaito push-adapter` to the Debian `docker-registry` on loopback,
`kaito pull-adapter`, and `kaito serve` answering as the base model and as the adapter. Then the live swap: a
`kaito serve` following its mounted engine config, a second tuning run pushed as the adapter's next version, the
config pointed at it, and the same server process answering with the new weights. The base model is the demo's
tiny stand-in, so training takes seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from kaito.api.engine import CONFIG_KEY, EngineAdapter, EngineConfig
from kaito_sim.demo.model import make_demo_model
from kaito_sim.demo.registry import DemoFailed, free_port, registry, wait_http

QUESTION = "Who trained you?"
ANSWER = "The kaito tuning demo trained me from a parquet file."
ADAPTER = "demo-adapter"
SECOND_ANSWER = "A second tuning run taught me this, and I changed without a restart."
TRAINING_CONFIG = """training_config:
  TrainingArguments:
    max_steps: 60
    learning_rate: 0.02
    logging_steps: 20
    per_device_train_batch_size: 4
  LoraConfig:
    r: 8
    lora_alpha: 16
    target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]
"""


async def step(*args: str) -> str:
    print(f"\n$ kaito {shlex.join(args)}", flush=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kaito.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    text = out.decode()
    for line in text.splitlines():
        print(f"  {_readable(line)}", flush=True)
    if proc.returncode != 0:
        raise DemoFailed(f"kaito {args[0]} exited {proc.returncode}")
    return text


def _readable(line: str) -> str:
    """The message of a JSON log line, or the line itself."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return line
    return str(record.get("msg", line)) if isinstance(record, dict) else line


@asynccontextmanager
async def data_server(parquet: Path) -> AsyncIterator[str]:
    """A local stand-in for the dataset URL of the README's tuning example; yields the download URL."""

    async def download(_: web.Request) -> web.FileResponse:
        return web.FileResponse(parquet)

    app = web.Application()
    app.router.add_get("/datasets/demo/resolve/main/data/train-00000-of-00001.parquet", download)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/datasets/demo/resolve/main/data/train-00000-of-00001.parquet?download=true"
    finally:
        await runner.cleanup()


def write_dataset(path: Path, answer: str = ANSWER) -> Path:
    """The README's format: a `messages` conversation per row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
        for question in (QUESTION, "Who taught you?", "Where did you learn?", "Who trained you, please?") * 8
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


async def ask(port: int, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 48, "temperature": 0}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as response:
        reply = await response.json()
    return str(reply["choices"][0]["message"]["content"])


async def serve_and_ask(base: Path, adapters: Path) -> None:
    port = free_port()
    args = ["serve", "--model", str(base), "--served-model-name", "demo-base", "--adapters-dir", str(adapters)]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    print(f"\n$ kaito {shlex.join(args)} &", flush=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kaito.cli", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_http(f"http://127.0.0.1:{port}/health")
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/v1/models") as response:
            models = [m["id"] for m in (await response.json())["data"]]
        print(f"  /v1/models: {models}", flush=True)
        for model in models:
            print(f"  {model} answers {QUESTION!r}: {await ask(port, model)!r}", flush=True)
    finally:
        proc.terminate()
        await proc.wait()


class MountedConfig:
    """The engine config as a ConfigMap volume holds it: each version in its own directory, swapped in by one rename
    of `..data`, which is what `kaito serve` follows while it runs."""

    def __init__(self, root: Path) -> None:
        self.root, self.path, self._versions = root, root / CONFIG_KEY, 0
        root.mkdir(parents=True)

    def write(self, config: EngineConfig) -> None:
        self._versions += 1
        version = self.root / f"..v{self._versions}"
        version.mkdir()
        (version / CONFIG_KEY).write_text(config.to_configmap_data()[CONFIG_KEY])
        (self.root / "..data_tmp").symlink_to(version.name)
        os.replace(self.root / "..data_tmp", self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to(f"..data/{CONFIG_KEY}")


def engine_config(base: Path, adapters: Path, image: str) -> EngineConfig:
    adapter = EngineAdapter(name=ADAPTER, image=image, insecure=True)
    return EngineConfig(model=str(base), served_model_name="demo-base", adapters_dir=str(adapters), adapters=[adapter])


async def adapter_report(port: int) -> list[dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/v1/adapters") as response:
        return list((await response.json())["adapters"])


async def serve_live(base: Path, work: Path, first: str, second: Callable[[], Awaitable[str]]) -> None:
    """`kaito serve` on a mounted engine config naming the first adapter image; then the config is pointed at the
    second image (as the operator rewrites the ConfigMap) and the same server process answers with it."""
    mounted = MountedConfig(work / "engine-config")
    adapters = work / "live-adapters"
    adapters.mkdir()
    mounted.write(engine_config(base, adapters, first))
    port = free_port()
    args = ["serve", "--config", str(mounted.path), "--host", "127.0.0.1", "--port", str(port)]
    print(f"\n$ kaito {shlex.join(args)} &   # its config lists {ADAPTER} = {first}", flush=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kaito.cli", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_http(f"http://127.0.0.1:{port}/health")
        await _until_loaded(port, first)
        print(f"  {ADAPTER} answers {QUESTION!r}: {await ask(port, ADAPTER)!r}", flush=True)
        image = await second()
        print(f"\nthe config now names {image} for {ADAPTER} (the ConfigMap edit `kubectl patch` makes)", flush=True)
        mounted.write(engine_config(base, adapters, image))
        waited = await _until_loaded(port, image)
        print(f"  pulled and loaded in {waited:.1f} s by the same server (pid {proc.pid}, never restarted)", flush=True)
        print(f"  {ADAPTER} answers {QUESTION!r}: {await ask(port, ADAPTER)!r}", flush=True)
        if proc.returncode is not None:
            raise DemoFailed("the server restarted during the swap")
    finally:
        proc.terminate()
        await proc.wait()


async def _until_loaded(port: int, image: str, *, within: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        report = {a["name"]: a for a in await adapter_report(port)}
        entry = report.get(ADAPTER) or {}
        if entry.get("image") == image and entry.get("state") == "Loaded":
            return time.monotonic() - started
        if entry.get("image") == image and entry.get("state") == "Failed":
            raise DemoFailed(f"{ADAPTER} failed to load {image}: {entry.get('message')}")
        await asyncio.sleep(0.3)
    raise DemoFailed(f"{ADAPTER} did not load {image} within {within:.0f} s")


async def run_demo_tuning() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kaito-demo-tuning-") as tmp:
        work = Path(tmp)
        print("teaching the tiny stand-in base model a few sentences (it replaces phi-3's weights: no GPU here)")
        base = await asyncio.to_thread(make_demo_model, work / "base")
        (work / "training_config.yaml").write_text(TRAINING_CONFIG)
        (work / "registry").mkdir()
        dataset = write_dataset(work / "served.parquet")
        image_dir = work / "adapters" / "demo-adapter"
        try:
            async with registry(work / "registry") as address, data_server(dataset) as url:
                image = f"{address}/adapters/demo-adapter:0.0.1"
                await step("fetch-data", "--url", url, "--output", str(work / "data"), "--allow-private-addresses")
                await step(
                    *("tune", "--model", str(base), "--base-model", "demo-base", "--data-dir", str(work / "data")),
                    *("--output-dir", str(work / "results"), "--training-config", str(work / "training_config.yaml")),
                    *("--metrics-port", "-1"),
                )
                await step("push-adapter", "--adapter-dir", str(work / "results"), "--image", image, "--plain-http")
                await step("pull-adapter", "--image", image, "--output", str(image_dir), "--plain-http")
                await serve_and_ask(base, image_dir.parent)

                async def second_run() -> str:
                    """A second tuning run on new data, pushed as the adapter's next version."""
                    print("\na second tuning run teaches the adapter another answer; the server keeps running:")
                    retrain = write_dataset(work / "second.parquet", SECOND_ANSWER)
                    async with data_server(retrain) as second_url:
                        await step(
                            *("fetch-data", "--url", second_url, "--output", str(work / "data2")),
                            "--allow-private-addresses",
                        )
                    await step(
                        *("tune", "--model", str(base), "--base-model", "demo-base"),
                        *("--data-dir", str(work / "data2"), "--output-dir", str(work / "results2")),
                        *("--training-config", str(work / "training_config.yaml"), "--metrics-port", "-1"),
                    )
                    second = f"{address}/adapters/demo-adapter:0.0.2"
                    await step(
                        "push-adapter", "--adapter-dir", str(work / "results2"), "--image", second, "--plain-http"
                    )
                    return second

                await serve_live(base, work, image, second_run)
        except DemoFailed as exc:
            print(f"\nkaito demo-tuning: {exc}", file=sys.stderr)
            return 1
    print(f"\nkaito demo-tuning: done in {time.monotonic() - started:.0f} s")
    return 0
