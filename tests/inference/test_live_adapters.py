"""Adapters follow the engine config file while the server runs: pulled from a real registry, loaded, replaced and
unloaded in the transformers engine without a restart; a bad one fails alone with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kaito.api.engine import EngineAdapter, EngineConfig
from kaito.inference.config_follower import ConfigFile, ConfigFollower
from kaito.inference.engines.transformers_engine import TransformersEngine
from kaito.inference.live_adapters import AdapterManager
from kaito.inference.tinymodel import make_tiny_adapter
from kaito.tuning.artifacts import push_adapter
from tests.inference.test_app import Server, running, until
from tests.registry import Registry, require_registry_binary

BASE = "tiny"


class MountedConfig:
    """The engine ConfigMap as the kubelet mounts it: `engine.yaml` -> `..data/engine.yaml`, `..data` -> a
    timestamped directory, replaced by an atomic rename of a new symlink."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "engine.yaml"
        self._writes = 0

    def write(self, config: EngineConfig) -> None:
        self._writes += 1
        version = self.root / f"..v{self._writes}"
        version.mkdir()
        (version / "engine.yaml").write_text(config.to_configmap_data()["engine.yaml"])
        (self.root / "..data_tmp").symlink_to(version.name)
        os.replace(self.root / "..data_tmp", self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to("..data/engine.yaml")


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry on loopback that speaks plain HTTP and asks for a password, as a test cluster's may."""
    require_registry_binary()
    with Registry(tmp_path_factory.mktemp("plain-registry"), auth="htpasswd", tls=False) as running_registry:
        yield running_registry


@pytest.fixture(scope="module")
def images(plain_registry: Registry, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Adapter images: `one` and `two` (different weights) for the tiny base, `other` trained for another model."""
    from kaito.oci.dockerconfig import Credentials

    work = tmp_path_factory.mktemp("adapter-images")
    auth = Credentials(plain_registry.username, plain_registry.password)
    pushed = {}
    for name, seed, base in (("one", 1, BASE), ("two", 2, BASE), ("other", 3, "other-model")):
        adapter = make_tiny_adapter(tiny_model_dir, work / name, seed=seed)
        image = f"{plain_registry.address}/adapters/{name}:v1"
        push_adapter(adapter, image, base_model=base, auth=auth, plain_http=True)
        pushed[name] = image
    return pushed


@pytest.fixture
def docker_config(plain_registry: Registry, tmp_path: Path) -> str:
    return str(plain_registry.docker_config(tmp_path / "pull-secret" / ".dockerconfigjson").parent)


@contextlib.asynccontextmanager
async def live_server(
    tiny_model_dir: Path,
    tmp_path: Path,
    config: EngineConfig,
    *,
    pull_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[tuple[Server, MountedConfig, ConfigFollower]]:
    mounted = MountedConfig(tmp_path / "config")
    mounted.root.mkdir()
    mounted.write(config)
    engine = TransformersEngine(tiny_model_dir, served_model_name=BASE, max_concurrency=2)
    manager = AdapterManager(
        engine,
        adapters_dir=tmp_path / "adapters",
        base_names=[BASE, str(tiny_model_dir)],
        max_loras=config.max_loras,
        max_rank=config.max_lora_rank,
        sleep=pull_sleep,
    )
    manager.follow(config)
    never = asyncio.Event()

    async def sleep(_: float) -> None:
        await never.wait()  # the test polls the file itself, step by step

    follower = ConfigFollower(manager, ConfigFile(mounted.path, text=mounted.path.read_text()), sleep=sleep)
    async with running(engine, follower=follower) as server:
        yield server, mounted, follower


def config_with(*adapters: EngineAdapter, **numbers: Any) -> EngineConfig:
    return EngineConfig(engine="transformers", served_model_name=BASE, adapters=list(adapters), **numbers)


async def adapters(server: Server) -> dict[str, dict[str, Any]]:
    status, body = await server.get("/v1/adapters")
    assert status == 200
    return {entry["name"]: entry for entry in body["adapters"]}


async def settled(server: Server) -> dict[str, dict[str, Any]]:
    """/v1/adapters once no adapter is Pulling any more."""
    value: dict[str, dict[str, Any]] = await until(
        lambda: adapters(server), lambda now: all(e["state"] != "Pulling" for e in now.values()), within=60
    )
    return value


async def models(server: Server) -> list[str]:
    _, body = await server.get("/v1/models")
    return [model["id"] for model in body["data"]]


async def answer(server: Server, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "the cat"}], "max_tokens": 8, "temperature": 0}
    status, reply = await server.post("/v1/chat/completions", body)
    assert status == 200, reply
    text: str = reply["choices"][0]["message"]["content"]
    return text


async def test_an_adapter_added_replaced_and_removed_live(
    tiny_model_dir: Path, tmp_path: Path, images: dict[str, str], docker_config: str
) -> None:
    async with live_server(tiny_model_dir, tmp_path, config_with()) as (server, mounted, follower):
        base = await answer(server, BASE)
        assert await models(server) == [BASE]

        one = EngineAdapter(name="mine", image=images["one"], docker_configs=[docker_config])
        mounted.write(config_with(one))
        assert follower.poll()
        state = await settled(server)
        assert state["mine"]["state"] == "Loaded", state
        assert state["mine"]["digest"].startswith("sha256:") and state["mine"]["image"] == images["one"]
        assert await models(server) == [BASE, "mine"]
        first = await answer(server, "mine")
        assert first != base
        assert await answer(server, BASE) == base

        mounted.write(config_with(one.model_copy(update={"image": images["two"]})))
        assert follower.poll()
        await until(lambda: adapters(server), lambda now: now["mine"]["image"] == images["two"])
        assert (await settled(server))["mine"]["state"] == "Loaded"
        second = await answer(server, "mine")
        assert second not in (first, base)

        mounted.write(config_with())
        assert follower.poll()
        await until(lambda: models(server), lambda now: now == [BASE])
        assert await adapters(server) == {}
        assert await answer(server, BASE) == base
        assert not follower.poll(), "an unchanged file is not handed out again"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        pytest.param({"image": "127.0.0.1:{port}/adapters/missing:v1"}, "not found", id="missing-image"),
        pytest.param({"image": "{other}"}, "trained for base model 'other-model'", id="another-base-model"),
        pytest.param({"image": "{one}", "docker_configs": []}, "401", id="no-pull-secret"),
    ],
)
async def test_a_bad_adapter_fails_alone(
    tiny_model_dir: Path,
    tmp_path: Path,
    images: dict[str, str],
    docker_config: str,
    plain_registry: Registry,
    spec: dict[str, Any],
    words: str,
) -> None:
    good = EngineAdapter(name="good", image=images["one"], docker_configs=[docker_config])
    fields = {"name": "bad", "docker_configs": [docker_config]} | spec
    fields["image"] = fields["image"].format(port=plain_registry.port, other=images["other"], one=images["one"])
    bad = EngineAdapter(**fields)
    async with live_server(tiny_model_dir, tmp_path, config_with(good, bad)) as (server, _, _):
        state = await settled(server)
        assert state["good"]["state"] == "Loaded", state
        assert state["bad"]["state"] == "Failed" and words in state["bad"]["message"], state
        assert await models(server) == [BASE, "good"]
        assert await answer(server, "good") != await answer(server, BASE)
        status, body = await server.post(
            "/v1/chat/completions", {"model": "bad", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert status == 404 and "does not exist" in body["error"]["message"]


async def test_more_adapters_than_slots_or_too_large_a_rank_are_refused_alone(
    tiny_model_dir: Path, tmp_path: Path, images: dict[str, str], docker_config: str
) -> None:
    one = EngineAdapter(name="a", image=images["one"], docker_configs=[docker_config])
    two = EngineAdapter(name="b", image=images["two"], docker_configs=[docker_config])
    async with live_server(tiny_model_dir, tmp_path, config_with(one, two, max_loras=1)) as (server, mounted, follower):
        state = await settled(server)
        assert state["a"]["state"] == "Loaded"
        assert state["b"]["state"] == "Failed" and "max-loras" in state["b"]["message"]
        mounted.write(config_with(two, max_loras=1))  # a slot frees up: b is tried again
        assert follower.poll()
        await until(lambda: adapters(server), lambda now: now["b"]["state"] == "Loaded", within=60)
        assert await models(server) == [BASE, "b"]
        mounted.write(config_with(two, max_loras=1, max_lora_rank=2))  # the tiny adapters have rank 4
        assert follower.poll()
        assert await models(server) == [BASE, "b"], "engine settings are read once; the adapter stays"


async def test_a_shape_mismatch_is_refused_before_the_model_changes(
    tiny_model_dir: Path, tmp_path: Path, tiny_adapters_dir: Path
) -> None:
    import json

    from safetensors.torch import load_file, save_file

    adapters_dir = tmp_path / "adapters"
    wrong = adapters_dir / "wrong"
    wrong.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (wrong / name).write_bytes((tiny_adapters_dir / "tiny-lora" / name).read_bytes())
    tensors = load_file(str(wrong / "adapter_model.safetensors"))
    key = next(k for k in tensors if ".lora_A." in k)
    tensors[key] = tensors[key][:, :-1].contiguous()
    save_file(tensors, str(wrong / "adapter_model.safetensors"))
    json.loads((wrong / "adapter_config.json").read_text())
    engine = TransformersEngine(tiny_model_dir, served_model_name=BASE)
    await engine.load()
    manager = AdapterManager(engine, adapters_dir=adapters_dir, base_names=[BASE])
    manager.start()
    try:
        manager.follow(config_with(EngineAdapter(name="live", image=None)))
        # "wrong" sits under adaptersDir but is not in the config; "live" has no directory there.
        reports = await until(lambda: _reports(manager), lambda now: now[0].state != "Pulling")
        assert reports[0].state == "Failed" and "no adapter" in reports[0].message
        with pytest.raises(Exception, match="shape mismatch"):
            await engine.load_adapter("wrong", wrong, strength=1.0)
        assert engine.models() == [BASE]
    finally:
        await manager.close()
        await engine.close()


async def _reports(manager: AdapterManager) -> Any:
    return manager.reports()


class Backoff:
    """The manager's sleep between pulls: records each delay asked for and returns when the test says."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._go = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        self.asked.append(delay)
        await self._go.wait()
        self._go.clear()

    async def release(self, asked: int) -> None:
        await until(lambda: _value(len(self.asked)), lambda n: n >= asked)
        self._go.set()


async def _value(value: int) -> int:
    return value


async def test_a_failed_pull_is_tried_again_with_a_growing_delay_until_the_image_is_there(
    tiny_model_dir: Path,
    tmp_path: Path,
    plain_registry: Registry,
    docker_config: str,
) -> None:
    from kaito.oci.dockerconfig import Credentials

    image = f"{plain_registry.address}/adapters/late:v1"  # applied before it was pushed
    backoff = Backoff()
    late = EngineAdapter(name="late", image=image, docker_configs=[docker_config])
    async with live_server(tiny_model_dir, tmp_path, config_with(late), pull_sleep=backoff.sleep) as (server, _, _):
        state = await settled(server)
        assert state["late"]["state"] == "Failed" and state["late"]["retrying"], state
        assert "pulling again in 10s" in state["late"]["message"], state
        await backoff.release(1)
        state = await until(lambda: adapters(server), lambda now: "pulling again in 20s" in now["late"]["message"])
        assert state["late"]["state"] == "Failed"  # still, and without a Pulling in between to re-announce
        adapter = make_tiny_adapter(tiny_model_dir, tmp_path / "late", seed=4)
        auth = Credentials(plain_registry.username, plain_registry.password)
        await asyncio.to_thread(push_adapter, adapter, image, base_model=BASE, auth=auth, plain_http=True)
        await backoff.release(2)
        state = await until(lambda: adapters(server), lambda now: now["late"]["state"] == "Loaded", within=60)
        assert not state["late"]["retrying"] and backoff.asked == [10.0, 20.0]
        assert await models(server) == [BASE, "late"]


async def test_an_adapter_pulls_with_whichever_of_its_pull_secrets_names_the_registry(
    tiny_model_dir: Path, tmp_path: Path, images: dict[str, str], docker_config: str
) -> None:
    other = tmp_path / "other-secret"
    other.mkdir()
    auths = {"auths": {"elsewhere.example.com": {"auth": "dXNlcjpwYXNz"}}}
    (other / ".dockerconfigjson").write_text(json.dumps(auths))
    never_created = str(tmp_path / "optional-secret-not-created")
    secrets = [never_created, str(other), docker_config]
    adapter = EngineAdapter(name="mine", image=images["one"], docker_configs=secrets)
    async with live_server(tiny_model_dir, tmp_path, config_with(adapter)) as (server, _, _):
        state = await settled(server)
        assert state["mine"]["state"] == "Loaded", state
