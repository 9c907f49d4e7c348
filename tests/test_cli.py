"""The `kaito` front door: each command loads only its own room, and the local cluster's commands plug in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kaito.cli import BUILTINS, main
from kaito.commands import Command, plugin_commands


def loaded_after(code: str) -> list[str]:
    """The kaito and kaito_sim modules a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('kaito'))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded: list[str] = json.loads(out.splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_no_simulator_module() -> None:
    assert [m for m in loaded_after("import kaito.cli") if m.startswith("kaito_sim")] == []


@pytest.mark.parametrize(
    ("command", "absent"),
    [
        pytest.param("serve", ("kaito_sim", "kaito.operator", "kaito.controllers", "kaito.runtime"), id="serve"),
        pytest.param("manager", ("kaito_sim", "kaito.inference", "kaito.tuning"), id="manager"),
        pytest.param("tune", ("kaito_sim", "kaito.operator", "kaito.controllers"), id="tune"),
        pytest.param(
            "pull-model",
            ("kaito_sim", "kaito.operator", "kaito.runtime", "kaito.inference", "kaito.tuning", "kaito.workspaces"),
            id="pull-model",
        ),
    ],
)
def test_a_command_loads_only_its_own_rooms(command: str, absent: tuple[str, ...]) -> None:
    code = "import contextlib, kaito.cli\nwith contextlib.suppress(SystemExit):\n"
    code += f"    kaito.cli.main([{command!r}, '-h'])"
    loaded = loaded_after(code)
    assert [m for m in loaded if m.startswith(absent)] == []


def test_the_local_cluster_registers_its_commands_by_entry_point() -> None:
    commands = plugin_commands()
    assert {"sim", "demo", "demo-tuning"} <= set(commands)
    assert all(isinstance(command, Command) for command in commands.values())
    assert not set(commands) & set(BUILTINS)


def test_asking_for_one_plugin_command_imports_only_its_entry_point() -> None:
    assert set(plugin_commands("sim")) == {"sim"}


def test_an_unknown_command_lists_builtins_and_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bogus"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and "'serve'" in err and "'sim'" in err


def test_a_flag_the_command_lacks_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--verbose", "serve"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --verbose" in capsys.readouterr().err
