"""Live adapters on the controller's side: resolution, the engine config, per-pod reports folded into status."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from kaito.api.engine import EngineConfig
from kaito.api.workspace import Workspace
from kaito.controllers.adapterread import AdapterReader
from kaito.controllers.adapters import Resolved, named_by, plain_http_allowed, resolve
from kaito.controllers.adapterstatus import aggregate, loaded_of_wanted, newly_failed, retrying, still_settling
from kaito.controllers.build_workload import build_engine_configmap
from kaito.runtime import errors
from tests.controllers.test_builders import target_for, workspace

DIGEST = "sha256:" + "a" * 64
NEWER = "sha256:" + "b" * 64


def serving(*adapters: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = workspace(inference={"preset": {"name": "phi-3-mini-4k-instruct"}, "adapters": list(adapters)})
    if status is not None:
        raw["status"] = status
    return raw


def from_tuning(name: str = "tuned", workspace_name: str = "tune-phi") -> dict[str, Any]:
    return {"source": {"name": name, "workspace": workspace_name, "imagePullSecrets": ["acr"]}}


def tuning_ws(name: str, tuning: dict[str, Any] | None) -> dict[str, Any]:
    raw = {"metadata": {"name": name, "namespace": "team-a"}, "tuning": {"method": "lora"}}
    return {**raw, "status": {"tuning": tuning}} if tuning else raw


def lookup_of(*found: dict[str, Any]) -> Any:
    by_name = {ws["metadata"]["name"]: ws for ws in found}
    return lambda _namespace, name: by_name.get(name)


def test_a_tuning_workspace_resolves_to_the_digest_it_pushed() -> None:
    tuned = tuning_ws("tune-phi", {"image": "localhost:5000/adapters/phi:1", "digest": DIGEST})
    [adapter] = resolve(Workspace.parse(serving(from_tuning())), lookup=lookup_of(tuned))
    assert (adapter.image, adapter.digest, adapter.waiting) == ("localhost:5000/adapters/phi:1", DIGEST, None)
    target = dataclasses.replace(target_for(serving(from_tuning())), resolved=(adapter,))
    engine = EngineConfig.from_configmap_data(build_engine_configmap(target)["data"])
    [served] = engine.adapters
    assert (served.image, served.digest, served.insecure) == ("localhost:5000/adapters/phi:1", DIGEST, True)
    assert served.docker_configs == ["/var/run/secrets/kaito/adapters/acr"]


def test_until_the_tuning_workspace_has_pushed_the_adapter_waits_out_of_the_engine_config() -> None:
    raw = serving(from_tuning())
    for found in ([], [tuning_ws("tune-phi", None)]):
        [adapter] = resolve(Workspace.parse(raw), lookup=lookup_of(*found))
        assert adapter.waiting == "waiting for tuning workspace tune-phi"
        [status] = aggregate([adapter], {"phi-abc": []})
        assert (status.state, status.message) == ("Pulling", "waiting for tuning workspace tune-phi")
        assert not still_settling([status], [adapter])  # the tuning Workspace's events bring it back, not a poll
    target = target_for(raw)  # no cluster to look in: waits too
    assert EngineConfig.from_configmap_data(build_engine_configmap(target)["data"]).adapters == []


def test_a_deleted_tuning_workspace_leaves_the_last_digest_served() -> None:
    kept = {"adapters": [{"name": "tuned", "image": "r.example.com/a:1", "digest": DIGEST, "state": "Loaded"}]}
    [adapter] = resolve(Workspace.parse(serving(from_tuning(), status=kept)), lookup=lookup_of())
    assert (adapter.image, adapter.digest, adapter.waiting) == ("r.example.com/a:1", DIGEST, None)
    newer = tuning_ws("tune-phi", {"image": "r.example.com/a:1", "digest": NEWER})
    [adapter] = resolve(Workspace.parse(serving(from_tuning(), status=kept)), lookup=lookup_of(newer))
    assert adapter.digest == NEWER  # a second run moves it


def test_only_workspaces_naming_a_tuning_workspace_are_brought_back_by_it() -> None:
    tuned = tuning_ws("tune-phi", None)
    naming, other = serving(from_tuning()), serving({"source": {"name": "x", "image": "r.example.com/x:1"}})
    assert named_by(tuned, [naming, other]) == [naming]


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        pytest.param("localhost:5000/a:1", True, id="localhost"),
        pytest.param("127.0.0.1:5000/a:1", True, id="loopback"),
        pytest.param("myacr.azurecr.io/a:1", False, id="remote"),
        pytest.param("registry.internal:5000/a:1", True, id="named-insecure"),
    ],
)
def test_plain_http_is_allowed_for_loopback_and_named_registries(image: str, allowed: bool) -> None:
    assert plain_http_allowed(image, frozenset({"registry.internal:5000"})) is allowed


WANTED = Resolved("a", 1.0, image="r.example.com/a:1", digest=DIGEST)


def entry(state: str, digest: str = DIGEST, message: str = "", image: str = "r.example.com/a:1") -> dict[str, Any]:
    return {"name": "a", "image": image, "digest": digest, "state": state, "message": message}


@pytest.mark.parametrize(
    ("reports", "state", "message"),
    [
        pytest.param({"p0": [entry("Loaded")], "p1": [entry("Loaded")]}, "Loaded", None, id="all-loaded"),
        pytest.param(
            {"p0": [entry("Loaded")], "p1": [entry("Failed", message="401 Unauthorized")]},
            "Failed",
            "pod p1: 401 Unauthorized",
            id="worst-wins",
        ),
        pytest.param({"p0": [entry("Loaded")], "p1": []}, "Pulling", "pod p1: not loaded yet", id="not-seen-yet"),
        pytest.param(
            {"p0": [entry("Loaded", digest=NEWER)]},
            "Pulling",
            f"pod p0: still serves r.example.com/a:1@{NEWER}",
            id="old",
        ),
        pytest.param(
            {"p0": "adapters unreadable: refused"}, "Pulling", "pod p0: adapters unreadable: refused", id="mute"
        ),
        pytest.param({}, "Pulling", "no inference pod is running", id="no-pods"),
    ],
)
def test_the_worst_pod_speaks_for_the_adapter(reports: dict[str, Any], state: str, message: str | None) -> None:
    [status] = aggregate([WANTED], reports)
    assert (status.name, status.digest, status.state, status.message) == ("a", DIGEST, state, message)


def test_loaded_out_of_wanted_and_failures_told_once_per_digest() -> None:
    loaded = {"name": "a", "digest": DIGEST, "state": "Loaded"}
    failed = {"name": "b", "digest": DIGEST, "state": "Failed"}
    assert loaded_of_wanted(aggregate([WANTED], {"p0": [entry("Loaded")]})) == "1/1"
    assert newly_failed([loaded], [loaded, failed]) == [failed]
    assert newly_failed([loaded, failed], [loaded, failed]) == []
    again = {**failed, "digest": NEWER}
    assert newly_failed([loaded, failed], [loaded, again]) == [again]


def test_a_tag_image_takes_the_digest_the_pod_resolved() -> None:
    by_tag = Resolved("a", 1.0, image="r.example.com/a:1")
    [status] = aggregate([by_tag], {"p0": [entry("Loaded")]})
    assert (status.state, status.digest) == ("Loaded", DIGEST)


class FakeProxy:
    """Answers `/v1/adapters` on one port of each pod; records the paths asked for."""

    def __init__(self, port: int, body: object) -> None:
        self.port, self.body, self.asked = port, body, list[str]()

    async def text(self, path: str, *, read_timeout: float = 10.0) -> str:
        self.asked.append(path)
        if f":{self.port}/" not in path:
            raise errors.ApiError(503, reason="ServiceUnavailable", message="connection refused")
        return json.dumps(self.body)


def pod(name: str, phase: str = "Running", ready: bool = True) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": str(ready)}]
    status = {"phase": phase, "conditions": conditions}
    return {"metadata": {"name": name, "namespace": "team-a", "uid": f"uid-{name}"}, "status": status}


async def test_the_reader_learns_each_pods_port_and_reads_ready_pods_only() -> None:
    proxy = FakeProxy(5000, {"adapters": [entry("Loaded")]})
    reader = AdapterReader(proxy)
    pods = [pod("p0"), pod("p1", phase="Pending"), pod("p2", ready=False)]
    assert await reader.read(pods) == {"p0": [entry("Loaded")]}
    assert proxy.asked == [
        "/api/v1/namespaces/team-a/pods/p0:5001/proxy/v1/adapters",
        "/api/v1/namespaces/team-a/pods/p0:5000/proxy/v1/adapters",
    ]
    await reader.read(pods)
    assert len(proxy.asked) == 3  # the port that answered is asked alone from then on


async def test_a_pod_that_does_not_answer_in_kind_is_reported_as_such() -> None:
    reader = AdapterReader(FakeProxy(5001, {"models": []}))
    assert await reader.read([pod("p0")]) == {"p0": "adapters unreadable: the answer has no adapters list"}


def test_a_pod_that_will_pull_a_failed_adapter_again_is_read_again() -> None:
    failed = {"name": "a", "image": "r/a:1", "state": "Failed", "message": "HTTP 404; pulling again in 10s"}
    assert retrying({"p1": [failed | {"retrying": True}], "p2": "connection refused"})
    assert not retrying({"p1": [failed], "p2": "connection refused"})
    assert not retrying({})


def test_an_adapter_with_several_pull_secrets_gets_them_all_in_order() -> None:
    source = {"name": "a", "image": "r.example.com/a:1", "imagePullSecrets": ["first", "second"]}
    target = target_for(serving({"source": source}))
    engine = EngineConfig.from_configmap_data(build_engine_configmap(target)["data"])
    [served] = engine.adapters
    assert served.docker_configs == ["/var/run/secrets/kaito/adapters/first", "/var/run/secrets/kaito/adapters/second"]
