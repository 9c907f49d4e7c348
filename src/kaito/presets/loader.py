"""Turns catalog YAML (the packaged files or a ConfigMap's keys) into validated specs, with errors that name the spot.

An entry whose name matches an existing one is a patch: only the fields it gives change. A new name must
be a complete entry. Prices are a separate document so they can be refreshed without touching the SKU table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from kaito.presets.errors import CatalogError
from kaito.presets.models import ModelSpec
from kaito.presets.skus import SkuSpec

MODELS_KEY = "models.yaml"
SKUS_KEY = "skus.yaml"
PRICES_KEY = "prices.yaml"
CONFIG_KEYS = (MODELS_KEY, SKUS_KEY, PRICES_KEY)

SpecT = TypeVar("SpecT", ModelSpec, SkuSpec)


def parse_document(text: str, *, key: str, allowed: frozenset[str]) -> dict[str, Any]:
    """One YAML document whose top level is a mapping with only `allowed` fields."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"invalid YAML: {exc}", key=key) from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise CatalogError(f"expected a mapping at the top level, got {type(doc).__name__}", key=key)
    unknown = sorted(str(k) for k in doc if k not in allowed)
    if unknown:
        raise CatalogError(
            f"unknown top-level field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}", key=key
        )
    return doc


def _entries(doc: Mapping[str, Any], section: str, *, key: str) -> list[tuple[str, dict[str, Any]]]:
    """The list under `section`, each entry paired with a location like `models[3] (phi-4)`."""
    items = doc.get(section)
    if items is None:
        return []
    if not isinstance(items, list):
        raise CatalogError(f"{section}: expected a list, got {type(items).__name__}", key=key)
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"{section}[{i}]"
        if not isinstance(item, dict):
            raise CatalogError(f"{where}: expected a mapping, got {type(item).__name__}", key=key)
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CatalogError(f"{where}.name: a non-empty string is required", key=key)
        if name.strip().lower() in seen:
            raise CatalogError(f"{where} ({name}): duplicate entry", key=key)
        seen.add(name.strip().lower())
        out.append((f"{where} ({name})", item))
    return out


def _validate(cls: type[SpecT], data: dict[str, Any], *, where: str, key: str) -> SpecT:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"])
            problems.append(f"{where}.{loc}: {err['msg']}" if loc else f"{where}: {err['msg']}")
        raise CatalogError("; ".join(problems), key=key) from exc


def _merge(
    current: Mapping[str, SpecT],
    entries: list[tuple[str, dict[str, Any]]],
    cls: type[SpecT],
    find: Callable[[str], str | None],
    *,
    key: str,
) -> dict[str, SpecT]:
    result = dict(current)
    for where, entry in entries:
        existing = find(entry["name"])
        if existing is None:
            spec = _validate(cls, entry, where=where, key=key)
        else:
            # A patch keeps the canonical name even when it addressed the entry by an alias or HF id.
            patched = {**current[existing].model_dump(), **entry, "name": existing}
            spec = _validate(cls, patched, where=where, key=key)
        result[spec.name] = spec
    return result


def apply_models(models: Mapping[str, ModelSpec], text: str, *, key: str = MODELS_KEY) -> dict[str, ModelSpec]:
    doc = parse_document(text, key=key, allowed=frozenset({"models"}))
    index = {k: spec.name for spec in models.values() for k in spec.lookup_keys()}
    return _merge(models, _entries(doc, "models", key=key), ModelSpec, lambda n: index.get(n.strip().lower()), key=key)


def apply_skus(skus: Mapping[str, SkuSpec], text: str, *, key: str = SKUS_KEY) -> dict[str, SkuSpec]:
    doc = parse_document(text, key=key, allowed=frozenset({"skus"}))
    index = {name.lower(): name for name in skus}
    return _merge(skus, _entries(doc, "skus", key=key), SkuSpec, lambda n: index.get(n.strip().lower()), key=key)


def apply_prices(
    skus: Mapping[str, SkuSpec], text: str, *, key: str = PRICES_KEY
) -> tuple[dict[str, SkuSpec], str | None, str | None]:
    """Fill `hourly_price_usd` from `prices: {sku: usd}` (null clears one); also return the source and date."""
    doc = parse_document(text, key=key, allowed=frozenset({"source", "retrieved", "prices"}))
    prices = doc.get("prices")
    if prices is None:
        prices = {}
    if not isinstance(prices, dict):
        raise CatalogError(
            f"prices: expected a mapping of instance type to USD per hour, got {type(prices).__name__}", key=key
        )
    index = {name.lower(): name for name in skus}
    result = dict(skus)
    for raw_name, price in prices.items():
        name = index.get(str(raw_name).strip().lower())
        if name is None:
            raise CatalogError(f"prices.{raw_name}: unknown instance type", key=key)
        if price is not None and (isinstance(price, bool) or not isinstance(price, int | float) or price < 0):
            raise CatalogError(
                f"prices.{raw_name}: expected a non-negative number of USD per hour, got {price!r}", key=key
            )
        patched = {**result[name].model_dump(), "hourly_price_usd": price}
        result[name] = _validate(SkuSpec, patched, where=f"prices.{raw_name}", key=key)
    return result, _text_field(doc, "source", key=key), _text_field(doc, "retrieved", key=key)


def _text_field(doc: Mapping[str, Any], field: str, *, key: str) -> str | None:
    value = doc.get(field)
    if value is None:
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value).strip()
    # YAML reads an unquoted 2025-11-30 as a date; keep its text form.
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    raise CatalogError(f"{field}: expected text, got {type(value).__name__}", key=key)
