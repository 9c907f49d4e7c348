"""Unit tests of kaito_sim.nodes.launch: bind-address rewriting, serve overrides, mount paths, images, kubeconfigs."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito_sim.apiserver.errors import ApiError, JsonObj
from kaito_sim.apiserver.store import StorageKey
from kaito_sim.nodes.launch import (
    CONFIGMAPS,
    DEFAULT_SERVE_PORT,
    KAITO,
    PORT_FLAGS,
    Launch,
    LaunchError,
    bind_overrides,
    image_matches,
    launch,
    mounted_model,
    refresh,
    serve_overrides,
    service_account_kubeconfig,
)

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
SERVER = "https://127.0.0.1:6443"


def ports_from(first: int) -> Callable[[], int]:
    """A `free_port` stand-in handing out first, first + 1, ..."""
    counter = itertools.count(first)
    return lambda: next(counter)


def manager(*args: str) -> Launch:
    return Launch([*KAITO, "manager", *args], {})


# bind_overrides


def test_port_flags_of_the_manager() -> None:
    assert PORT_FLAGS == {
        "manager": (
            ("--metrics-bind-address", 8080),
            ("--health-probe-bind-address", 8081),
            ("--webhook-bind-address", 9443),
        )
    }


def test_given_addresses_move_to_loopback_free_ports() -> None:
    spec = manager("--metrics-bind-address=:8080", "--health-probe-bind-address", "0.0.0.0:8081", "--leader-elect")
    spec.argv.append("--webhook-bind-address=[::]:9443")
    assert bind_overrides(spec, ports_from(40000)) == {8080: 40000, 8081: 40001, 9443: 40002}
    assert spec.argv == [
        *KAITO,
        "manager",
        "--metrics-bind-address=127.0.0.1:40000",
        "--health-probe-bind-address",
        "127.0.0.1:40001",
        "--leader-elect",
        "--webhook-bind-address=127.0.0.1:40002",
    ]


def test_flags_not_given_use_their_default_ports_and_are_appended() -> None:
    spec = manager("--metrics-bind-address=:9090")
    assert bind_overrides(spec, ports_from(50000)) == {9090: 50000, 8081: 50001, 9443: 50002}
    assert spec.argv == [
        *KAITO,
        "manager",
        "--metrics-bind-address=127.0.0.1:50000",
        "--health-probe-bind-address=127.0.0.1:50001",
        "--webhook-bind-address=127.0.0.1:50002",
    ]


def test_every_occurrence_of_a_repeated_flag_is_rewritten() -> None:
    spec = manager("--metrics-bind-address=:1", "--metrics-bind-address", ":8080")
    assert bind_overrides(spec, ports_from(41000)) == {8080: 41000, 8081: 41001, 9443: 41002}
    assert spec.argv[len(KAITO) + 1 : len(KAITO) + 4] == [
        "--metrics-bind-address=127.0.0.1:41000",
        "--metrics-bind-address",
        "127.0.0.1:41000",
    ]


@pytest.mark.parametrize("off", ["--metrics-bind-address=", "--metrics-bind-address=0", "--metrics-bind-address=:0"])
def test_empty_address_and_port_zero_stay_as_written(off: str) -> None:
    spec = manager(off)
    assert bind_overrides(spec, ports_from(42000)) == {8081: 42000, 9443: 42001}
    assert spec.argv == [
        *KAITO,
        "manager",
        off,
        "--health-probe-bind-address=127.0.0.1:42000",
        "--webhook-bind-address=127.0.0.1:42001",
    ]


def test_commands_without_port_flags_are_left_alone() -> None:
    serve = Launch([*KAITO, "serve", "--port", "5000"], {})
    assert bind_overrides(serve, ports_from(1)) is None
    assert serve.argv == [*KAITO, "serve", "--port", "5000"]
    other = Launch(["python", "manager", "--metrics-bind-address=:8080"], {})
    assert bind_overrides(other, ports_from(1)) is None
    assert other.argv == ["python", "manager", "--metrics-bind-address=:8080"]


# serve_overrides


def test_serve_overrides_take_port_from_config_and_keep_served_model_name(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("servedModelName: phi-3-mini-4k-instruct\nport: 5123\nengine: vllm\n")
    spec = Launch([*KAITO, "serve", "--config", str(config)], {})
    assert serve_overrides(spec, tmp_path / "model", 43000) == 5123
    assert spec.argv == [
        *KAITO,
        "serve",
        "--config",
        str(config),
        "--model",
        str(tmp_path / "model"),
        "--engine",
        "transformers",
        "--host",
        "127.0.0.1",
        "--port",
        "43000",
    ]
    assert "--served-model-name" not in spec.argv


@pytest.mark.parametrize("text", [None, "", "- a list\n", "port: [unclosed\n"])
def test_serve_overrides_default_port_without_a_usable_config(tmp_path: Path, text: str | None) -> None:
    config = tmp_path / "engine.yaml"
    if text is not None:
        config.write_text(text)
    spec = Launch([*KAITO, "serve", f"--config={config}"], {})
    assert serve_overrides(spec, tmp_path, 43001) == DEFAULT_SERVE_PORT == 5000
    assert spec.argv[-2:] == ["--port", "43001"]


def test_a_model_pulled_into_a_volume_is_the_one_served(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("model: /mnt/model\nservedModelName: phi-3-mini-4k-instruct\n")
    pulled = tmp_path / "volumes" / "model"
    pulled.mkdir(parents=True)
    spec = Launch([*KAITO, "serve", "--config", str(config)], {}, {"/mnt/model": pulled})
    assert mounted_model(spec) == pulled


@pytest.mark.parametrize(
    "model", ["microsoft/Phi-3-mini-4k-instruct", "/weights/not-a-volume", "/mnt/model/missing", ""]
)
def test_a_hub_model_or_a_path_outside_the_volumes_gets_the_stand_in(tmp_path: Path, model: str) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text(yaml.safe_dump({"model": model}))
    pulled = tmp_path / "volumes" / "model"
    pulled.mkdir(parents=True)
    spec = Launch([*KAITO, "serve", "--config", str(config)], {}, {"/mnt/model": pulled})
    assert mounted_model(spec) is None


def test_serve_overrides_add_the_local_adapters_dir(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("adaptersDir: /mnt/adapters\n")
    adapters = tmp_path / "volumes" / "adapters"
    adapters.mkdir(parents=True)
    spec = Launch([*KAITO, "serve", "--config", str(config)], {}, {"/mnt/adapters": adapters})
    serve_overrides(spec, tmp_path, 43002)
    assert spec.argv[-2:] == ["--adapters-dir", str(adapters)]


def test_serve_overrides_keep_a_given_adapters_dir_and_skip_a_missing_one(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("adaptersDir: /mnt/adapters\n")
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    given = Launch([*KAITO, "serve", "--config", str(config), "--adapters-dir", "/x"], {}, {"/mnt/adapters": adapters})
    serve_overrides(given, tmp_path, 1)
    assert given.argv.count("--adapters-dir") == 1
    missing = Launch([*KAITO, "serve", "--config", str(config)], {}, {"/mnt/adapters": tmp_path / "absent"})
    serve_overrides(missing, tmp_path, 1)
    assert "--adapters-dir" not in missing.argv


# mount paths


def test_local_rewrites_mount_paths_longest_first(tmp_path: Path) -> None:
    spec = Launch([], {}, {"/etc/kaito": tmp_path / "a", "/etc/kaito/sub/": tmp_path / "b", "/f": tmp_path / "f.txt"})
    assert spec.local("/etc/kaito") == str(tmp_path / "a")
    assert spec.local("/etc/kaito/engine.yaml") == f"{tmp_path / 'a'}/engine.yaml"
    assert spec.local("/etc/kaito/sub/x") == f"{tmp_path / 'b'}/x"
    assert spec.local("--config=/etc/kaito/engine.yaml") == f"--config={tmp_path / 'a'}/engine.yaml"
    assert spec.local("/f") == str(tmp_path / "f.txt")
    assert spec.local("/etc/kaitox/engine.yaml") == "/etc/kaitox/engine.yaml"
    assert spec.local("key=/etc/kaito/engine.yaml") == "key=/etc/kaito/engine.yaml"
    assert spec.local("relative/etc/kaito") == "relative/etc/kaito"


def test_launch_rewrites_args_and_env_to_the_written_volume(tmp_path: Path) -> None:
    engine = {"data": {"engine.yaml": "port: 5000\n"}, "metadata": {"name": "engine", "namespace": "ns"}}

    def get(key: StorageKey, ns: str, name: str) -> JsonObj | None:
        return engine if (key, ns, name) == (CONFIGMAPS, "ns", "engine") else None

    pod: JsonObj = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"volumes": [{"name": "cfg", "configMap": {"name": "engine"}}]},
    }
    container: JsonObj = {
        "image": "mcr.microsoft.com/aks/kaito/kaito-runtime:0.1.0",
        "args": ["serve", "--config", "/etc/kaito/engine.yaml", "--extra=$(DIR)/engine.yaml"],
        "env": [{"name": "DIR", "value": "/etc/kaito"}, {"name": "OTHER", "value": "/opt/x"}],
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/kaito"}],
    }
    spec = launch(get, pod, container, tmp_path)
    local = tmp_path / "volumes" / "cfg"
    assert spec.mounts == {"/etc/kaito": local}
    assert (local / "engine.yaml").read_text() == "port: 5000\n"
    assert spec.argv == [*KAITO, "serve", "--config", f"{local}/engine.yaml", f"--extra={local}/engine.yaml"]
    assert spec.env == {"DIR": str(local), "OTHER": "/opt/x"}


def test_refresh_swaps_a_configmap_volume_whole_and_keeps_it_when_the_object_goes(tmp_path: Path) -> None:
    store: dict[str, JsonObj] = {"engine": {"data": {"engine.yaml": "v: 1\n", "old": "x"}}}

    def get(key: StorageKey, ns: str, name: str) -> JsonObj | None:
        return store.get(name) if (key, ns) == (CONFIGMAPS, "ns") else None

    pod: JsonObj = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"volumes": [{"name": "cfg", "configMap": {"name": "engine"}}, {"name": "tmp", "emptyDir": {}}]},
    }
    container: JsonObj = {
        "command": ["kaito", "serve"],
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/kaito"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    local = launch(get, pod, container, tmp_path).mounts["/etc/kaito"]
    assert refresh(get, pod, tmp_path) == []
    with (local / "engine.yaml").open() as before:  # opened before the swap: reads the old files to the end
        store["engine"] = {"data": {"engine.yaml": "v: 2\n"}}
        assert refresh(get, pod, tmp_path) == ["cfg"]
        assert before.read() == "v: 1\n"
    assert (local / "engine.yaml").read_text() == "v: 2\n" and not (local / "old").exists()
    assert len([p for p in local.iterdir() if p.name.startswith("..") and p.is_dir() and not p.is_symlink()]) == 1
    del store["engine"]
    assert refresh(get, pod, tmp_path) == [] and (local / "engine.yaml").read_text() == "v: 2\n"


def test_this_machines_interpreter_is_never_taken_for_a_container_path(tmp_path: Path) -> None:
    """A pod mounting /tmp (as the manager does) must not redirect a Python that happens to live under /tmp."""
    interpreter_dir = str(Path(KAITO[0]).parent)
    pod: JsonObj = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"volumes": [{"name": "t", "emptyDir": {}}]}}
    container: JsonObj = {
        "image": "kaito-manager:0.1.0",
        "args": ["manager", f"--cert-dir={interpreter_dir}/certs"],
        "volumeMounts": [{"name": "t", "mountPath": interpreter_dir}],
    }
    spec = launch(lambda *_: None, pod, container, tmp_path)
    assert spec.argv[: len(KAITO)] == KAITO
    assert spec.argv[len(KAITO) :] == ["manager", f"--cert-dir={tmp_path / 'volumes' / 't'}/certs"]


def test_launch_of_an_unknown_image_without_command_fails(tmp_path: Path) -> None:
    with pytest.raises(LaunchError) as caught:
        launch(lambda *_: None, {"metadata": {"name": "p"}}, {"image": "busybox"}, tmp_path)
    assert caught.value.reason == "CreateContainerConfigError"
    assert caught.value.message.startswith("the container has no command;")


# image_matches


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("kaito-runtime", True),
        ("kaito-runtime:0.1.0", True),
        ("mcr.microsoft.com/aks/kaito/kaito-runtime:0.1.0", True),
        ("kaito-runtime@sha256:" + "a" * 64, True),
        ("registry:5000/kaito-runtime:v1@sha256:" + "b" * 64, True),
        ("localhost:5000/kaito-runtime", True),
        ("kaito-runtime-extra:1", False),
        ("org/my-kaito-runtime", False),
        ("kaito-runtime/other:1", False),
        ("localhost:5000/other", False),
    ],
)
def test_image_matches_any_registry_tag_or_digest(image: str, expected: bool) -> None:
    assert image_matches(image, ("kaito-runtime",)) is expected


def test_image_matches_an_org_path_only_as_a_whole_segment() -> None:
    names = ("kaito/kaito-manager",)
    assert image_matches("mcr.microsoft.com/aks/kaito/kaito-manager:0.1", names) is True
    assert image_matches("kaito/kaito-manager", names) is True
    assert image_matches("mcr.microsoft.com/notkaito/kaito-manager:0.1", names) is False
    assert image_matches("kaito-manager", names) is False
    assert image_matches("anything", ()) is False


# service_account_kubeconfig


def test_service_account_kubeconfig_carries_server_ca_and_minted_token(tmp_path: Path) -> None:
    asked: list[tuple[str, str]] = []

    def issue(ns: str, account: str) -> str:
        asked.append((ns, account))
        return "token-123"

    pod: JsonObj = {"metadata": {"name": "p", "namespace": "team"}, "spec": {"serviceAccountName": "runner"}}
    path = service_account_kubeconfig(pod, tmp_path, SERVER, CA, issue)
    assert path == tmp_path / "serviceaccount" / "kubeconfig"
    assert asked == [("team", "runner")]
    assert path.stat().st_mode & 0o777 == 0o600
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    user = "system:serviceaccount:team:runner"
    assert config["clusters"] == [
        {
            "name": "in-cluster",
            "cluster": {"server": SERVER, "certificate-authority-data": base64.b64encode(CA).decode()},
        },
    ]
    assert config["users"] == [{"name": user, "user": {"token": "token-123"}}]
    assert config["contexts"] == [
        {"name": "in-cluster", "context": {"cluster": "in-cluster", "user": user, "namespace": "team"}}
    ]
    assert config["current-context"] == "in-cluster"


def test_service_account_kubeconfig_defaults_to_the_default_account(tmp_path: Path) -> None:
    asked: list[tuple[str, str]] = []

    def issue(ns: str, account: str) -> str:
        asked.append((ns, account))
        return "t"

    pod: JsonObj = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {}}
    service_account_kubeconfig(pod, tmp_path, SERVER, CA, issue)
    assert asked == [("ns", "default")]


def test_no_kubeconfig_when_the_pod_opts_out_of_a_token(tmp_path: Path) -> None:
    def issue(ns: str, account: str) -> str:
        raise AssertionError("no token is minted for a pod that opts out")

    pod: JsonObj = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"automountServiceAccountToken": False}}
    assert service_account_kubeconfig(pod, tmp_path, SERVER, CA, issue) is None
    assert not (tmp_path / "serviceaccount").exists()


def test_a_token_that_cannot_be_minted_is_a_launch_error(tmp_path: Path) -> None:
    def issue(ns: str, account: str) -> str:
        raise ApiError(404, "NotFound", f'serviceaccounts "{account}" not found')

    pod: JsonObj = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"serviceAccountName": "ghost"}}
    with pytest.raises(LaunchError) as caught:
        service_account_kubeconfig(pod, tmp_path, SERVER, CA, issue)
    assert caught.value.message == 'failed to fetch token: serviceaccounts "ghost" not found'
    assert caught.value.reason == "CreateContainerConfigError"


def test_the_gateway_host_and_port_move_to_loopback_and_a_free_port() -> None:
    spec = Launch([*KAITO, "gateway", "--inferenceset", "chat", "--port", "5000"], {})
    assert bind_overrides(spec, ports_from(41000)) == {5000: 41000}
    assert spec.argv == [*KAITO, "gateway", "--inferenceset", "chat", "--port", "41000", "--host=127.0.0.1"]
