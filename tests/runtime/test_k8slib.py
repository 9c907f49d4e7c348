"""The manager loads kubernetes-asyncio without its generated API classes and models, and a full import still works."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

# What `kaito manager` imports, then a client built from a kubeconfig and one from the in-cluster account.
MANAGER = """
import asyncio
import kaito.cli, kaito.cli_manager, kaito.operator, kaito.provisioner.azure, kaito.provisioner.controller
from kaito.runtime.client import Client
from kaito.runtime.clientconfig import load_configuration

async def clients():
    client = await Client.from_config(kubeconfig=KUBECONFIG)
    await client.close()
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    await load_configuration(incluster_token_path=TOKEN, incluster_ca_path=CA, environ=env)

asyncio.run(clients())
"""
PUBLIC_NAMES = """
import kubernetes_asyncio, kubernetes_asyncio.client, kubernetes_asyncio.client.models
packages = {p.__name__: p for p in (kubernetes_asyncio, kubernetes_asyncio.client, kubernetes_asyncio.client.models)}
RESULT = {name: [n for n in dir(p) if not n.startswith("_")] for name, p in packages.items()}
"""


def run(code: str, **values: str) -> Any:
    """Run `code` in a fresh interpreter with `values` bound as globals; returns its `RESULT`, JSON round-tripped."""
    prelude = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    probe = prelude + textwrap.dedent(code) + "\nimport json\nprint(json.dumps(RESULT))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def kubeconfig(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "ca.crt").write_text("read only when a connection opens")
    (tmp_path / "token").write_text("secret")
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "secret"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return {"KUBECONFIG": str(config), "TOKEN": str(tmp_path / "token"), "CA": str(tmp_path / "ca.crt")}


def test_the_manager_loads_no_generated_api_class_or_model(tmp_path: Path) -> None:
    loaded = run(
        MANAGER + "import sys\nRESULT = sorted(m for m in sys.modules if m.startswith('kubernetes_asyncio'))",
        **kubeconfig(tmp_path),
    )
    assert "kubernetes_asyncio.client.api_client" in loaded
    assert "kubernetes_asyncio.config.kube_config" in loaded
    generated = [
        m for m in loaded if m.startswith(("kubernetes_asyncio.client.models.", "kubernetes_asyncio.client.api"))
    ]
    assert generated == ["kubernetes_asyncio.client.api_client"]


def test_after_the_runtime_a_full_import_gives_what_a_plain_one_does(tmp_path: Path) -> None:
    plain = run(PUBLIC_NAMES)
    after_runtime = run(MANAGER + PUBLIC_NAMES, **kubeconfig(tmp_path))
    assert after_runtime == plain
    assert "CoreV1Api" in plain["kubernetes_asyncio.client"]
    assert "V1Pod" in plain["kubernetes_asyncio.client.models"]


def test_the_runtime_hands_out_the_package_own_classes() -> None:
    same = run(
        """
        from kaito.runtime import k8slib
        from kubernetes_asyncio.client import ApiClient, Configuration, V1Pod
        from kubernetes_asyncio.client.models import V1Pod as Pod
        import kubernetes_asyncio
        RESULT = [ApiClient is k8slib.ApiClient, Configuration is k8slib.Configuration, V1Pod is Pod,
                  kubernetes_asyncio.__version__ != ""]
        """
    )
    assert same == [True, True, True, True]
