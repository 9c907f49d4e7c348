"""The README's tuning example on the simulated AKS cluster: a GPU node, the tuning Job, and how it really ended."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from kaito_sim.server import SimServer
from tests.conftest import Kubectl
from tests.e2e.conftest import Operator, condition, wait_workspace

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/tuning/kaito_workspace_tuning_phi_3.yaml"
NAME = "workspace-phi-3-mini"


async def job_of(kubectl: Kubectl, name: str) -> dict[str, Any]:
    for _ in range(150):
        result = await kubectl("get", "job", name, "-o", "json", check=False)
        if result.rc == 0:
            job: dict[str, Any] = result.json()
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {name} was never created")


async def test_readme_tuning_example_succeeds_when_its_job_completes(
    kubectl: Kubectl, operator: Operator, sim: SimServer
) -> None:
    sim.job_duration = 1.0
    await kubectl("apply", "-f", str(EXAMPLE))
    job = await job_of(kubectl, NAME)
    pod = job["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["data-downloader"]
    assert pod["initContainers"][0]["command"][:2] == ["kaito", "fetch-data"]
    assert pod["containers"][0]["command"][:2] == ["kaito", "tune"]
    ws = await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "True")
    assert ws["status"]["state"] == "Succeeded"
    assert condition(ws, "JobStarted")["status"] == "True"
    assert condition(ws, "ResourceReady")["status"] == "True"
    run = yaml.safe_load(
        (await kubectl("get", "configmap", f"{NAME}-tuning", "-o", "json")).json()["data"]["tuning.yaml"]
    )
    assert run["method"] == "qlora" and run["output"]["image"] == "ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1"
    table = (await kubectl("get", "workspace", NAME, "-o", "wide")).stdout.splitlines()
    assert "Succeeded" in table[1].split()


async def test_a_failed_data_download_fails_the_workspace_with_the_downloaders_words(
    kubectl: Kubectl, operator: Operator, sim: SimServer
) -> None:
    said = "kaito fetch-data: https://example.com/data.parquet returned an HTML page, not a dataset"
    sim.pod_faults.add({"kaito.sh/workspace": NAME}, "InitFailure", message=said)
    await kubectl("apply", "-f", str(EXAMPLE))
    ws = await wait_workspace(kubectl, NAME, "WorkspaceSucceeded", "False", reason="workspaceFailed", within=45)
    assert ws["status"]["state"] == "Failed"
    message = condition(ws, "WorkspaceSucceeded")["message"]
    assert "container data-downloader exited 1" in message and said in message
    assert condition(ws, "JobStarted")["reason"] == "WorkspaceTuningJobStatusFailed"
