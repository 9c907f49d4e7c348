"""Fixtures for the model image tests: a real docker-registry (TLS, htpasswd auth) whose access log counts requests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.registry import Registry, require_registry_binary


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    require_registry_binary()
    with Registry(tmp_path_factory.mktemp("model-registry"), username="kaito", access_log=True) as running:
        yield running
