"""Catalog overrides from a ConfigMap take effect without a restart; a broken edit keeps the last good catalog."""

from __future__ import annotations

import asyncio
from typing import Any

import yaml

from kaito.presets.catalogsource import DEFAULT_NAME, CatalogSource
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.kinds import CONFIG_MAP
from tests.runtime.conftest import eventually

TINY = {
    "name": "acme/tiny-chat",
    "parameters_b": 1.1,
    "weight_bytes": 2_200_000_000,
    "layers": 22,
    "attention_heads": 32,
    "kv_heads": 4,
    "head_dim": 64,
    "hidden_size": 2048,
    "max_position_embeddings": 2048,
}


def configmap(namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": DEFAULT_NAME, "namespace": namespace},
        "data": data,
    }


async def test_overrides_follow_the_configmap(kclient: Client, namespace: str) -> None:
    cache = Cache(kclient)
    source = CatalogSource(cache, namespace=namespace)
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    await cache.wait_for_sync()
    assert source().find_model("acme/tiny-chat") is None
    await kclient.create(CONFIG_MAP, configmap(namespace, {"models.yaml": yaml.safe_dump({"models": [TINY]})}))
    await eventually(lambda: source().find_model("acme/tiny-chat") is not None)
    await kclient.patch(
        CONFIG_MAP, DEFAULT_NAME, {"data": {"models.yaml": "models: [{name: x, layerz: 1}]"}}, namespace=namespace
    )
    await eventually(lambda: source() is not None and source.error is not None)
    assert "models.yaml" in (source.error or "")
    assert source().find_model("acme/tiny-chat") is not None  # last good catalog still served
    await kclient.delete(CONFIG_MAP, DEFAULT_NAME, namespace=namespace)
    await eventually(lambda: source().find_model("acme/tiny-chat") is None)
    stop.set()
    await task
