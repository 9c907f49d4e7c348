"""`kaito sim` as users start it: a foreground process that prints where it serves and stops on a signal."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kaito_sim.arm.quota import DEFAULT_FAMILY_VCPUS
from kaito_sim.cli import add_sim_arguments, cloud_limits, process_pods, serve_sim


async def test_kaito_sim_serves_kubectl_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kaito.cli",
        "sim",
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    assert line.startswith("kaito sim: serving https://127.0.0.1:") and str(kubeconfig) in line
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(tmp_path / "cache")}
    kubectl = await asyncio.create_subprocess_exec(
        "kubectl", "get", "namespaces", "-o", "name", env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(kubectl.communicate(), 30)
    assert "namespace/default" in out.decode().split()
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0


SERVE_THEN_LIST_MODULES = """
import argparse, asyncio, json, os, signal, sys
from pathlib import Path
from kaito_sim.cli import add_sim_arguments, serve_sim

async def main() -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    kubeconfig = Path(sys.argv[1])
    served = asyncio.create_task(serve_sim(parser.parse_args(["--port", "0"]), kubeconfig=kubeconfig))
    while not kubeconfig.exists():
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await served == 0

asyncio.run(main())
print(json.dumps(sorted(m for m in sys.modules if m.startswith("kaito."))))
"""


def test_kaito_sim_without_the_manager_loads_no_operator_module(tmp_path: Path) -> None:
    args = [sys.executable, "-c", SERVE_THEN_LIST_MODULES, str(tmp_path / "kubeconfig")]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    assert "kaito sim: serving" in out
    loaded: list[str] = json.loads(out.splitlines()[-1])
    assert loaded == ["kaito.commands"]


WORKSPACE = Path(__file__).resolve().parents[2] / "examples" / "inference" / "kaito_workspace_phi_3.yaml"


async def _kubectl(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec("kubectl", *args, env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, args
    return out.decode()


async def test_with_the_manager_a_workspace_applied_at_once_becomes_ready(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    argv = ["sim", "--with-manager", "--provisioning-delay", "0", "--port", "0", "--kubeconfig", str(kubeconfig)]
    addresses = ["--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kaito.cli", *argv, *addresses, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert line.startswith("kaito sim: serving https://127.0.0.1:") and line.rstrip().endswith("with the kaito manager")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(tmp_path / "cache")}
    await _kubectl(env, "apply", "-f", str(WORKSPACE))
    jsonpath = "jsonpath={.status.conditions[?(@.type=='WorkspaceSucceeded')].status}"
    succeeded = ""
    for _ in range(120):
        succeeded = await _kubectl(env, "get", "workspace", "workspace-phi-3-mini", "-o", jsonpath)
        if succeeded == "True":
            break
        await asyncio.sleep(0.5)
    assert succeeded == "True"
    assert len(json.loads(await _kubectl(env, "get", "nodeclaims", "-o", "json"))["items"]) == 1
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 20) == 0


def test_process_pods_keep_node_volumes_where_asked(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    options = process_pods(parser.parse_args(["--process-pods", "--nodes-dir", str(tmp_path)]))
    assert options is not None and options.nodes_dir == tmp_path
    assert process_pods(parser.parse_args(["--nodes-dir", str(tmp_path)])) is None


def test_azure_quota_and_capacity_flags_set_the_simulated_limits() -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    args = parser.parse_args(
        [
            "--with-manager",
            "--azure-quota",
            "standardNCADSA100v4Family=0",
            "--azure-quota",
            "cores=200",
            "--azure-capacity",
            "Standard_NC40ads_H100_v5=2",
            "--azure-capacity",
            "Standard_NC24ads_A100_v4 = 1",
        ]
    )
    limits = cloud_limits(args)
    assert limits.limit("standardNCADSA100v4Family") == 0
    assert limits.limit("StandardNCADSA100v4Family") == 0, "family names match ignoring case"
    assert limits.limit("standardNCadsH100v5Family") == DEFAULT_FAMILY_VCPUS
    assert limits.regional_vcpus == 200
    assert limits.capacity("Standard_NC40ads_H100_v5") == 2 and limits.capacity("standard_nc24ads_a100_v4") == 1
    assert limits.capacity("Standard_ND96isr_H100_v5") is None
    defaults = cloud_limits(parser.parse_args([]))
    assert defaults.limit("standardNCADSA100v4Family") == DEFAULT_FAMILY_VCPUS


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        pytest.param("--azure-quota", "standardNCADSA100v4Family", id="no-value"),
        pytest.param("--azure-quota", "standardNCADSA100v4Family=-4", id="negative"),
        pytest.param("--azure-quota", "=24", id="no-name"),
        pytest.param("--azure-capacity", "Standard_NC24ads_A100_v4=two", id="not-a-number"),
    ],
)
def test_bad_limit_flags_are_cli_errors_naming_the_flag(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="kaito sim")
    add_sim_arguments(parser)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args([flag, value])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {flag}: expected" in error and repr(value) in error


def test_limit_flags_need_the_simulated_azure(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    args = parser.parse_args(["--azure-quota", "cores=0", "--kubeconfig", str(tmp_path / "kubeconfig")])
    with pytest.raises(SystemExit, match="need --with-manager"):
        asyncio.run(serve_sim(args, kubeconfig=tmp_path / "kubeconfig"))


def test_service_cidr_flag_takes_an_ipv4_network_and_names_itself_when_wrong(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    assert parser.parse_args(["--service-cidr", "127.97.0.0/24"]).service_cidr == "127.97.0.0/24"
    assert parser.parse_args([]).service_cidr is None, "SimServer picks: loopback with process pods"
    for bad in ("127.96.0.1/16", "a-network", "127.96.0.0/30", "fd00::/108"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--service-cidr", bad])
        assert "argument --service-cidr: " in capsys.readouterr().err, bad
