"""Adapters edited in place: the engine ConfigMap moves, the inference pod stays; a tuning Workspace as the source."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from kaito.api.engine import EngineAdapter, EngineConfig
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, wait_workspace, workspace_json

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/inference/kaito_workspace_phi_3_with_adapters.yaml"
TUNING = ROOT / "examples/tuning/kaito_workspace_tuning_phi_3.yaml"
NAME = "workspace-phi-3-mini-adapter"
TUNER = "tune-phi"
FIRST = "sha256:" + "1" * 64
SECOND = "sha256:" + "2" * 64


def serving(*adapters: dict[str, Any]) -> str:
    ws = yaml.safe_load(EXAMPLE.read_text())
    ws["inference"]["adapters"] = list(adapters)
    return yaml.safe_dump(ws)


async def until(check: Callable[[], Awaitable[Any]], what: str, *, within: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def engine_adapters(kubectl: Kubectl) -> list[EngineAdapter]:
    configmap = (await kubectl("get", "configmap", f"{NAME}-engine", "-o", "json")).json()
    return EngineConfig.from_configmap_data(configmap["data"]).adapters


async def the_pod(kubectl: Kubectl) -> tuple[str, int]:
    """The one inference pod, by uid, with its server's restart count."""
    listed = (await kubectl("get", "pods", "-l", f"kaito.sh/workspace={NAME}", "-o", "json")).json()["items"]
    [pod] = listed
    restarts = sum(int(s.get("restartCount") or 0) for s in pod["status"].get("containerStatuses") or [])
    return pod["metadata"]["uid"], restarts


async def test_adding_and_replacing_an_adapter_updates_the_engine_config_without_touching_the_pod(
    kubectl: Kubectl, operator: Operator
) -> None:
    first = {"source": {"name": "first", "image": "localhost:5000/adapters/a:1", "imagePullSecrets": ["pull"]}}
    await kubectl("apply", "-f", "-", stdin=serving(first))
    await wait_workspace(kubectl, NAME, "InferenceReady", "True")
    pod = await the_pod(kubectl)
    generation = (await kubectl("get", "deployment", NAME, "-o", "json")).json()["metadata"]["generation"]
    [served] = await engine_adapters(kubectl)
    assert (served.image, served.insecure, served.docker_configs) == (
        "localhost:5000/adapters/a:1",
        True,
        ["/var/run/secrets/kaito/adapters/pull"],
    )

    second = {"source": {"name": "second", "image": "localhost:5000/adapters/b:1", "imagePullSecrets": ["pull"]}}
    patch = {"inference": {"adapters": [first, second]}}
    await kubectl("patch", "workspace", NAME, "--type", "merge", "-p", json.dumps(patch))

    async def both() -> bool:
        return [a.name for a in await engine_adapters(kubectl)] == ["first", "second"]

    await until(both, "the second adapter in the engine ConfigMap")
    replaced = {"source": {**second["source"], "image": "localhost:5000/adapters/b:2"}}
    await kubectl(
        "patch", "workspace", NAME, "--type", "merge", "-p", json.dumps({"inference": {"adapters": [replaced]}})
    )

    async def swapped() -> bool:
        return [a.image for a in await engine_adapters(kubectl)] == ["localhost:5000/adapters/b:2"]

    await until(swapped, "the replaced image in the engine ConfigMap")

    async def reported() -> bool:  # the status is written last in the pass that applied the config and workload
        adapters = (await workspace_json(kubectl, NAME)).get("status", {}).get("adapters") or []
        return [a["name"] for a in adapters] == ["second"]

    await until(reported, "the status to follow the spec")
    assert (await kubectl("get", "deployment", NAME, "-o", "json")).json()["metadata"]["generation"] == generation
    assert await the_pod(kubectl) == pod
    wide = (await kubectl("get", "workspace", NAME, "-o", "wide")).stdout.splitlines()
    assert "ADAPTERS" in wide[0].split() and {"0/1", "1/1"} & set(wide[1].split())


async def test_a_tuning_workspace_as_the_source_is_served_by_the_digest_it_pushed(
    kubectl: Kubectl, operator: Operator
) -> None:
    tuned = {"source": {"name": "tuned", "workspace": TUNER, "imagePullSecrets": ["pull"]}}
    await kubectl("apply", "-f", "-", stdin=serving(tuned))
    await wait_workspace(kubectl, NAME, "InferenceReady", "True")

    async def waiting() -> bool:
        adapters = (await workspace_json(kubectl, NAME)).get("status", {}).get("adapters") or []
        return [(a["state"], a.get("message")) for a in adapters] == [
            ("Pulling", f"waiting for tuning workspace {TUNER}")
        ]

    await until(waiting, "the adapter to wait for its tuning workspace")
    assert await engine_adapters(kubectl) == []
    pod = await the_pod(kubectl)

    tuning = yaml.safe_load(TUNING.read_text())
    tuning["metadata"]["name"] = TUNER
    await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(tuning))
    # Its run ends (simulated pods report no digest): what `kaito tune` reports is set on the settled status below.
    await wait_workspace(kubectl, TUNER, "WorkspaceSucceeded", "True", within=60)
    for digest in (FIRST, SECOND):  # a run's result, as `kaito tune` reports it; then a second run's
        pushed = {"status": {"tuning": {"image": "localhost:5000/adapters/phi:1", "digest": digest}}}
        await kubectl(
            "patch", "workspace", TUNER, "--subresource", "status", "--type", "merge", "-p", json.dumps(pushed)
        )

        async def served(digest: str = digest) -> bool:
            return [(a.name, a.digest) for a in await engine_adapters(kubectl)] == [("tuned", digest)]

        await until(served, f"the engine config to serve {digest}")
    await kubectl("delete", "workspace", TUNER, "--wait=false")

    async def gone() -> bool:
        return not await workspace_json(kubectl, TUNER)

    await until(gone, "the tuning workspace to go")
    await kubectl("annotate", "workspace", NAME, "poke=1")  # a pass after the deletion
    await asyncio.sleep(1.0)
    assert [(a.image, a.digest) for a in await engine_adapters(kubectl)] == [("localhost:5000/adapters/phi:1", SECOND)]
    assert await the_pod(kubectl) == pod
