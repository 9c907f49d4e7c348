"""Fixtures for the tuning tests: one real docker-registry (TLS, htpasswd auth) shared by the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tuning.registry import Registry, require_registry_binary


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    require_registry_binary()
    with Registry(tmp_path_factory.mktemp("registry"), username="kaito") as running:
        yield running
