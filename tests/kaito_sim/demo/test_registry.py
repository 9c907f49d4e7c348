"""The demos' docker-registry: it serves on loopback, and a missing or failing binary is named, not waited on."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import aiohttp
import pytest

from kaito_sim.demo.registry import REGISTRY_BINARY, RegistryUnavailable, registry


async def test_a_missing_binary_is_named_with_how_to_install_it(tmp_path: Path) -> None:
    missing = tmp_path / "bin" / "docker-registry"
    with pytest.raises(RegistryUnavailable, match=f"{missing} is not installed; scripts/system-deps"):
        async with registry(tmp_path / "registry", binary=str(missing)):
            pass


async def test_a_binary_that_exits_is_reported_with_its_log_not_waited_for(tmp_path: Path) -> None:
    broken = tmp_path / "docker-registry"
    broken.write_text("#!/bin/sh\necho 'configuration error: no storage' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(RegistryUnavailable, match=r"did not start \(exited 3\) configuration error: no storage"):
        async with registry(tmp_path / "registry", binary=str(broken), within=600):
            pass


async def test_the_registry_answers_the_distribution_api_on_loopback(tmp_path: Path) -> None:
    if shutil.which(REGISTRY_BINARY) is None:
        pytest.skip("docker-registry is not installed (scripts/system-deps)")
    async with registry(tmp_path / "registry") as address, aiohttp.ClientSession() as http:
        assert address.startswith("127.0.0.1:")
        async with http.get(f"http://{address}/v2/") as response:
            assert response.status == 200
    assert (tmp_path / "registry" / "config.yml").is_file()
