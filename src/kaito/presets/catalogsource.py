"""The live catalog: the built-in one plus the overrides ConfigMap, re-read whenever that ConfigMap changes.

Users add models, SKUs or prices by editing one ConfigMap (default `kaito-catalog` in the operator's
namespace), with keys `models.yaml`, `skus.yaml` and `prices.yaml`; no new release is needed. A broken
override is logged and the last good catalog stays in use, so a typo never takes admission or the controller down.
"""

from __future__ import annotations

import logging

from kaito.presets.catalog import Catalog, CatalogError
from kaito.runtime.cache import Cache
from kaito.runtime.kinds import CONFIG_MAP
from kaito.runtime.objects import resource_version

log = logging.getLogger(__name__)

DEFAULT_NAME = "kaito-catalog"


class CatalogSource:
    """Callable returning the current catalog; reads the ConfigMap from the shared cache (no API calls)."""

    def __init__(self, cache: Cache, *, namespace: str, name: str = DEFAULT_NAME, base: Catalog | None = None) -> None:
        self.cache = cache
        self.namespace = namespace
        self.name = name
        self.base = base or Catalog.builtin()
        self.error: str | None = None
        self._version = ""
        self._current = self.base
        cache.informer(CONFIG_MAP)

    def __call__(self) -> Catalog:
        configmap = self.cache.find(CONFIG_MAP, self.name, namespace=self.namespace)
        version = resource_version(configmap) if configmap is not None else ""
        if version == self._version:
            return self._current
        self._version = version
        if configmap is None:
            self._current, self.error = self.base, None
            return self._current
        try:
            self._current = self.base.with_overrides(dict(configmap.get("data") or {}))
            self.error = None
            log.info("catalog overrides from %s/%s (version %s) applied", self.namespace, self.name, version)
        except CatalogError as exc:
            self.error = str(exc)
            log.error("catalog overrides in %s/%s ignored: %s", self.namespace, self.name, exc)
        return self._current
