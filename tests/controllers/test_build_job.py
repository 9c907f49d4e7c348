"""The tuning Job and the adapters handed to the server: valid against the Kubernetes schemas, wired to kaito."""

from __future__ import annotations

from typing import Any

import yaml

from kaito.api.engine import EngineConfig
from kaito.controllers.build_job import build_job, build_tuning_configmap
from kaito.controllers.build_workload import build_engine_configmap, build_workload
from kaito.controllers.status import Observed, compute, tuning_output
from tests.controllers.test_builders import target_for, valid, workspace


def tuning_workspace(**tuning: Any) -> dict[str, Any]:
    spec = {
        "preset": {"name": "phi-3-mini-4k-instruct"},
        "method": "qlora",
        "input": {"urls": ["https://example.com/a.parquet", "https://example.com/b.jsonl"]},
        "output": {"image": "myacr.azurecr.io/adapters/phi3:0.0.1", "imagePushSecret": "acr-push"},
        **tuning,
    }
    raw = workspace(tuning=spec)
    del raw["inference"]
    return raw


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def mounts_of(container: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container["volumeMounts"]}


def test_urls_are_fetched_then_tuned_and_pushed_with_the_push_secret() -> None:
    target = target_for(tuning_workspace())
    job = build_job(target, revision="1")
    configmap = build_tuning_configmap(target)
    valid(job)
    valid(configmap)
    pod = pod_of(job)
    [fetch] = pod["initContainers"]
    assert fetch["name"] == "data-downloader"
    assert fetch["command"] == [
        *("kaito", "fetch-data", "--output", "/mnt/data"),
        *("--url", "https://example.com/a.parquet", "--url", "https://example.com/b.jsonl"),
    ]
    [tuner] = pod["containers"]
    assert tuner["command"] == ["kaito", "tune", "--config", "/etc/kaito/tuning.yaml"]
    assert tuner["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert tuner["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "DEFAULT_TARGET_MODULES", "value": "k_proj,q_proj,v_proj,o_proj,gate_proj,down_proj,up_proj"} in (
        tuner["env"]
    )
    run = yaml.safe_load(configmap["data"]["tuning.yaml"])
    assert run["method"] == "qlora" and run["baseModel"] == "phi-3-mini-4k-instruct"
    assert run["model"] == "microsoft/Phi-3-mini-4k-instruct" and len(run["revision"]) == 40
    assert run["output"]["image"] == "myacr.azurecr.io/adapters/phi3:0.0.1"
    # The push secret's docker config is mounted exactly where the run config says it is.
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["push-secret"]["secret"]["secretName"] == "acr-push"
    assert run["output"]["dockerConfig"] == f"{mounts_of(tuner)['push-secret']}/.dockerconfigjson"
    assert mounts_of(tuner)["data"] == run["dataDir"] and mounts_of(tuner)["results"] == run["outputDir"]
    assert "trainingConfig" not in run  # the method's defaults


def test_image_input_is_pulled_with_its_pull_secrets() -> None:
    source = {"image": "myacr.azurecr.io/data/dolly:1", "imagePullSecrets": ["acr-a", "acr-b"]}
    target = target_for(tuning_workspace(input=source, config="my-training"))
    job = build_job(target, revision="1")
    valid(job)
    pod = pod_of(job)
    [puller] = pod["initContainers"]
    assert puller["command"][:4] == ["kaito", "pull-data", "--image", "myacr.azurecr.io/data/dolly:1"]
    configs = [puller["command"][i + 1] for i, arg in enumerate(puller["command"]) if arg == "--docker-config"]
    mounted = {path for name, path in mounts_of(puller).items() if name.startswith("pull-secret")}
    assert len(configs) == 2 and {c.rsplit("/", 1)[0] for c in configs} == mounted
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["training-config"]["configMap"]["name"] == "my-training"
    run = yaml.safe_load(build_tuning_configmap(target)["data"]["tuning.yaml"])
    assert run["trainingConfig"] == f"{mounts_of(pod['containers'][0])['training-config']}/training_config.yaml"


def test_volumes_in_and_out_need_no_init_step_and_no_push() -> None:
    claim_in = {"persistentVolumeClaim": {"claimName": "datasets"}}
    claim_out = {"persistentVolumeClaim": {"claimName": "adapters"}}
    target = target_for(tuning_workspace(input={"volumeSource": claim_in}, output={"volumeSource": claim_out}))
    job = build_job(target, revision="1")
    valid(job)
    pod = pod_of(job)
    assert pod["initContainers"] == []
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "datasets"
    assert volumes["results"]["persistentVolumeClaim"]["claimName"] == "adapters"
    assert "push-secret" not in volumes
    assert "output" not in yaml.safe_load(build_tuning_configmap(target)["data"]["tuning.yaml"])


def test_adapters_are_handed_to_kaito_serve_with_their_secrets_and_served_with_their_strength() -> None:
    adapters = [
        {"source": {"name": "falcon-7b-adapter", "image": "myacr.azurecr.io/a:1", "imagePullSecrets": ["s1"]}},
        {"source": {"name": "on-disk", "volumeSource": {"persistentVolumeClaim": {"claimName": "ad"}}}},
        {"source": {"name": "half", "image": "myacr.azurecr.io/b:1"}, "strength": "0.5"},
    ]
    target = target_for(workspace(inference={"preset": {"name": "phi-3-mini-4k-instruct"}, "adapters": adapters}))
    workload = build_workload(target, revision="1")
    valid(workload)
    pod = workload["spec"]["template"]["spec"]
    assert not pod.get("initContainers")  # `kaito serve` pulls them at runtime
    server = pod["containers"][0]
    assert mounts_of(server)["adapter-0"] == "/mnt/adapter/on-disk"
    engine = EngineConfig.from_configmap_data(build_engine_configmap(target)["data"])
    assert [adapter.name for adapter in engine.adapters] == ["falcon-7b-adapter", "on-disk", "half"]
    assert engine.adapter_strengths == {"falcon-7b-adapter": 1.0, "on-disk": 1.0, "half": 0.5}
    first = engine.adapters[0]
    assert (first.image, first.digest) == ("myacr.azurecr.io/a:1", None)
    [secret] = first.docker_configs
    assert secret.startswith(mounts_of(server)["adapter-pull-secrets"])
    assert engine.adapters[1].image is None and engine.adapters[2].docker_configs == []


def finished_pod(exit_code: int, message: str) -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error", "message": message}
    return {
        "metadata": {"name": "tune-abc"},
        "status": {"containerStatuses": [{"name": "tuner", "state": {"terminated": terminated}}]},
    }


def test_the_pushed_digest_comes_from_the_termination_message() -> None:
    report = '{"digest": "sha256:abc", "image": "r.example.com/a:1", "loss": 1.25, "size": 4096, "steps": 60}'
    assert tuning_output([finished_pod(0, report)]) == {
        "image": "r.example.com/a:1",
        "digest": "sha256:abc",
        "size": 4096,
        "steps": 60,
        "loss": 1.25,
    }
    assert tuning_output([finished_pod(0, "not json")]) is None
    assert tuning_output([finished_pod(1, report)]) is None


def test_a_failed_run_reports_what_kaito_tune_said() -> None:
    said = "the adapter was trained but not pushed: registry r.example.com refused the credentials (HTTP 401)"
    observed = Observed(
        target_nodes=1,
        provisioning=False,
        nodes=[],
        job={"status": {"failed": 1}},
        pods=[finished_pod(1, said)],
    )
    conditions, state = compute(observed, tuning=True, previous_state="Running")
    assert state == "Failed"
    succeeded = next(c for c in conditions if c.type == "WorkspaceSucceeded")
    assert said in succeeded.message and "container tuner exited 1" in succeeded.message
