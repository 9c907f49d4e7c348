"""Under vLLM the pod's serving port is vLLM's own: OpenAI calls reach it with no relay hop; kaito's routes move."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import aiohttp
import openai
import pytest

from kaito.api.engine import EngineConfig
from kaito.controllers.build_workload import build_engine_configmap, build_services, build_workload
from kaito.inference.engines.vllm_args import connect_host
from kaito.inference.engines.vllm_engine import VllmEngine
from kaito.inference.serve import ServeError, add_serve_arguments, build_engine, load_config, own_port, resolve

from .test_vllm_engine import FAKE, free_port, planned_target


def serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_service_target_port_is_where_the_pods_vllm_listens(tmp_path: Path) -> None:
    """Controller-built container command and ConfigMap -> `kaito serve` -> vLLM's --host/--port; kaito moves aside."""
    target = planned_target("phi-3-mini-4k-instruct", "Standard_NC6s_v3")
    mounted = tmp_path / "engine.yaml"
    mounted.write_text(build_engine_configmap(target)["data"]["engine.yaml"])
    container = build_workload(target, revision="1")["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    flags = command[command.index("serve") + 1 :]
    flags[flags.index("--config") + 1] = str(mounted)
    args = serve_args(*flags)
    config = load_config(args.config)
    options = resolve(args, config)
    engine = build_engine(options, config, args)
    assert isinstance(engine, VllmEngine)
    launch = engine.launch_args()
    service_port = build_services(target)[0]["spec"]["ports"][0]["targetPort"]
    assert launch[launch.index("--host") + 1] == "0.0.0.0"
    assert int(launch[launch.index("--port") + 1]) == service_port
    assert engine.base_url == f"http://127.0.0.1:{service_port}"
    assert own_port(options, engine) == 5001 != service_port


def test_without_the_flag_or_with_engine_url_this_server_keeps_the_port() -> None:
    config = EngineConfig(model="org/m")
    for argv in (["--engine", "vllm"], ["--openai-direct", "--engine-url", "http://10.0.0.5:8000"]):
        args = serve_args("--port", "5000", *argv)
        options = resolve(args, config)
        engine = build_engine(options, config, args)
        assert own_port(options, engine) == 5000
    relayed = build_engine(resolve(serve_args("--engine", "vllm"), config), config, serve_args("--engine", "vllm"))
    assert isinstance(relayed, VllmEngine) and relayed.base_url == "http://127.0.0.1:5001"


@pytest.mark.parametrize("argv", [["--port", "0"], ["--port", "7000", "--own-port", "7000"]])
def test_direct_needs_a_fixed_port_of_its_own(argv: list[str]) -> None:
    config = EngineConfig(model="org/m")
    args = serve_args("--engine", "vllm", "--openai-direct", *argv)
    with pytest.raises(ServeError, match="--openai-direct"):
        build_engine(resolve(args, config), config, args)


def test_a_wildcard_address_is_reached_on_loopback() -> None:
    assert connect_host("0.0.0.0") == "127.0.0.1"
    assert connect_host("::") == "127.0.0.1"
    assert connect_host("10.1.2.3") == "10.1.2.3"
    assert connect_host("fd00::5") == "[fd00::5]"


async def test_clients_call_vllm_on_the_public_port_directly(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    port = free_port()
    config = EngineConfig(model=str(model), served_model_name="tiny", max_model_len=512)
    engine = VllmEngine(config, host="0.0.0.0", port=port, command=[sys.executable, FAKE])
    try:
        await engine.load()
        argv = json.loads((model / "argv.json").read_text())
        assert argv[argv.index("--host") + 1] == "0.0.0.0" and argv[argv.index("--port") + 1] == str(port)
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        stream = await client.completions.create(model="tiny", prompt="hi", max_tokens=3, stream=True)
        assert "".join([c.choices[0].text async for c in stream if c.choices]).startswith("echo tiny")
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/v1/models") as resp:
            assert [m["id"] for m in (await resp.json())["data"]] == ["tiny"]
        await client.close()
    finally:
        await engine.close()
