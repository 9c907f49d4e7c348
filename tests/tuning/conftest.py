"""Fixtures for the tuning tests: one real docker-registry (TLS, htpasswd auth) shared by the whole session."""

from tests.registry import registry as registry

__all__ = ["registry"]
