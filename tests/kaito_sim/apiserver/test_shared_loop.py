"""Large answers and fanned-out changes on the server's one loop: lists are encoded a chunk at a time into the
bytes one encoding would give, and a change is encoded once however many watchers receive it."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest

from kaito_sim.apiserver.errors import JsonObj
from kaito_sim.apiserver.http import LIST_CHUNK, list_response
from kaito_sim.server import SimServer
from tests.runtime.conftest import eventually

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


@pytest.fixture
async def http(sim: SimServer) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cadata=sim.ca_pem.decode())
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with aiohttp.ClientSession(
        base_url=sim.url, headers=headers, connector=aiohttp.TCPConnector(ssl=context)
    ) as session:
        yield session


@pytest.mark.parametrize("count", [0, 1, LIST_CHUNK, 2 * LIST_CHUNK + 7])
async def test_a_list_encoded_in_chunks_is_the_list_encoded_whole(count: int) -> None:
    head: JsonObj = {"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "5"}}
    items: list[JsonObj] = [{"metadata": {"name": f"c{i}"}, "data": {"k": "ü\n"}} for i in range(count)]
    resp = await list_response(head, items)
    assert resp.body == json.dumps({**head, "items": items}, separators=(",", ":")).encode()


async def test_a_long_list_and_its_table_hold_every_item_in_order(http: aiohttp.ClientSession) -> None:
    names = [f"cm-{i:04d}" for i in range(LIST_CHUNK + 50)]
    for name in names:
        async with http.post(CONFIGMAPS, json={"metadata": {"name": name}}) as resp:
            assert resp.status == 201
    async with http.get(CONFIGMAPS) as resp:
        listed = await resp.json()
    assert [item["metadata"]["name"] for item in listed["items"]] == names
    async with http.get(CONFIGMAPS, headers={"Accept": TABLE}) as resp:
        table = await resp.json()
    assert [row["cells"][0] for row in table["rows"]] == names
    assert table["columnDefinitions"][0]["name"] == "Name"


async def test_a_change_is_encoded_once_for_all_its_watchers(sim: SimServer, http: aiohttp.ClientSession) -> None:
    async with http.get(CONFIGMAPS, params={"limit": "1"}) as resp:
        rv = (await resp.json())["metadata"]["resourceVersion"]
    params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "10"}

    async def first_line() -> bytes:
        async with http.get(CONFIGMAPS, params=params) as resp:
            return await resp.content.readline()

    watchers = [asyncio.create_task(first_line()) for _ in range(3)]
    await eventually(lambda: sim.open_watches == 3)
    before = len(sim.cluster.store.encoded)
    async with http.post(CONFIGMAPS, json={"metadata": {"name": "watched"}}) as resp:
        created = await resp.json()
    lines = await asyncio.wait_for(asyncio.gather(*watchers), 10)
    assert len(set(lines)) == 1
    assert json.loads(lines[0]) == {"type": "ADDED", "object": created}
    assert len(sim.cluster.store.encoded) == before + 1
