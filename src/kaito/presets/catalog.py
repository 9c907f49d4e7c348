"""The typed preset catalog: which models and GPU instance types exist, looked up the way users spell them.

The builtin catalog ships as YAML inside the package; a ConfigMap can add or patch entries without a release
(`Catalog.with_overrides`). Lookups forgive case and accept aliases and Hugging Face ids; misses suggest the
closest names, because a typo in a Workspace should come back with the fix.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping
from importlib import resources
from types import MappingProxyType

from kaito.presets import loader
from kaito.presets.errors import CatalogError, UnknownModel, UnknownSku
from kaito.presets.models import ModelSpec
from kaito.presets.skus import Cloud, SkuSpec

__all__ = ["Catalog", "CatalogError", "ModelSpec", "SkuSpec", "UnknownModel", "UnknownSku"]

CLOUDS: tuple[Cloud, ...] = ("azure", "aws", "arc")
_SUGGESTIONS = 5


class Catalog:
    """An immutable set of model presets and instance types; every "change" returns a new catalog."""

    def __init__(
        self,
        models: Iterable[ModelSpec],
        skus: Iterable[SkuSpec],
        *,
        price_source: str | None = None,
        price_retrieved: str | None = None,
    ) -> None:
        self.models: Mapping[str, ModelSpec] = MappingProxyType({m.name: m for m in models})
        self.skus: Mapping[str, SkuSpec] = MappingProxyType({s.name: s for s in skus})
        self.price_source = price_source
        self.price_retrieved = price_retrieved
        self._model_index = _model_index(self.models.values())
        self._sku_index = {name.lower(): name for name in self.skus}

    @classmethod
    def builtin(cls) -> Catalog:
        """The catalog packaged with kaito (loaded once per process)."""
        return _builtin()

    # -- models ---------------------------------------------------------------------------------------

    def find_model(self, name: str) -> ModelSpec | None:
        """The preset `name` refers to (preset name, alias or HF id, any case), or None."""
        canonical = self._model_index.get(name.strip().lower())
        return None if canonical is None else self.models[canonical]

    def model(self, name: str) -> ModelSpec:
        """Like `find_model`, but a miss raises `UnknownModel` with the closest known names."""
        spec = self.find_model(name)
        if spec is None:
            close = difflib.get_close_matches(name.strip().lower(), self._model_index, n=_SUGGESTIONS * 2, cutoff=0.6)
            suggestions = list(dict.fromkeys(self._model_index[k] for k in close))[:_SUGGESTIONS]
            raise UnknownModel(name, suggestions)
        return spec

    # -- instance types -------------------------------------------------------------------------------

    def find_sku(self, name: str) -> SkuSpec | None:
        """The instance type with exactly this name, ignoring case, or None."""
        canonical = self._sku_index.get(name.strip().lower())
        return None if canonical is None else self.skus[canonical]

    def sku(self, name: str) -> SkuSpec:
        """Like `find_sku`, but a miss raises `UnknownSku` with the closest known names."""
        spec = self.find_sku(name)
        if spec is None:
            close = difflib.get_close_matches(name.strip().lower(), self._sku_index, n=_SUGGESTIONS, cutoff=0.6)
            raise UnknownSku(name, [self._sku_index[k] for k in close])
        return spec

    def skus_for(self, cloud: str) -> list[SkuSpec]:
        """One cloud's instance types, cheapest first; unpriced ones last, each group by name."""
        wanted = cloud.strip().lower()
        if wanted not in CLOUDS:
            raise CatalogError(f"unknown cloud {cloud!r}; expected one of {', '.join(CLOUDS)}")
        chosen = [s for s in self.skus.values() if s.cloud == wanted]
        return sorted(chosen, key=lambda s: (s.hourly_price_usd is None, s.hourly_price_usd or 0.0, s.name.lower()))

    # -- overrides ------------------------------------------------------------------------------------

    def with_overrides(self, data: Mapping[str, str]) -> Catalog:
        """A new catalog with a ConfigMap's `data` applied: keys models.yaml, skus.yaml, prices.yaml (each optional).

        Entries add by name or patch the entry they name; bad input raises `CatalogError` naming the key,
        the entry and the field.
        """
        unknown = sorted(k for k in data if k not in loader.CONFIG_KEYS)
        if unknown:
            expected = ", ".join(loader.CONFIG_KEYS)
            raise CatalogError(f"unknown key; expected one of {expected}", key=unknown[0])
        for key, value in data.items():
            if not isinstance(value, str):
                raise CatalogError(f"expected YAML text, got {type(value).__name__}", key=key)
        models = dict(self.models)
        skus = dict(self.skus)
        source, retrieved = self.price_source, self.price_retrieved
        if loader.MODELS_KEY in data:
            models = loader.apply_models(models, data[loader.MODELS_KEY])
        if loader.SKUS_KEY in data:
            skus = loader.apply_skus(skus, data[loader.SKUS_KEY])
        if loader.PRICES_KEY in data:
            skus, new_source, new_retrieved = loader.apply_prices(skus, data[loader.PRICES_KEY])
            source, retrieved = new_source or source, new_retrieved or retrieved
        try:
            return Catalog(models.values(), skus.values(), price_source=source, price_retrieved=retrieved)
        except CatalogError as exc:
            raise CatalogError(exc.message, key=loader.MODELS_KEY) from exc

    def __repr__(self) -> str:
        return f"Catalog({len(self.models)} models, {len(self.skus)} skus)"


def _model_index(models: Iterable[ModelSpec]) -> dict[str, str]:
    """Lookup key -> preset name. Explicit keys must be unique; the HF repo's last segment is a free extra."""
    index: dict[str, str] = {}
    specs = list(models)
    for spec in specs:
        for key in spec.lookup_keys():
            other = index.setdefault(key, spec.name)
            if other != spec.name:
                raise CatalogError(f"{key!r} names both {other!r} and {spec.name!r}")
    for spec in specs:
        # KAITO serves a catalog model under its HF repo's last path segment, so accept that spelling too.
        index.setdefault(spec.hf_repo.rsplit("/", 1)[-1].lower(), spec.name)
    return index


def _read_packaged(name: str) -> str:
    return resources.files("kaito.presets").joinpath("data", name).read_text(encoding="utf-8")


@functools.cache
def _builtin() -> Catalog:
    where = "kaito.presets/data/"
    models = loader.apply_models({}, _read_packaged(loader.MODELS_KEY), key=where + loader.MODELS_KEY)
    skus = loader.apply_skus({}, _read_packaged(loader.SKUS_KEY), key=where + loader.SKUS_KEY)
    skus, source, retrieved = loader.apply_prices(
        skus, _read_packaged(loader.PRICES_KEY), key=where + loader.PRICES_KEY
    )
    return Catalog(models.values(), skus.values(), price_source=source, price_retrieved=retrieved)
