"""Finding a claim's Node reads that Node only, however many other nodes the cache holds."""

from __future__ import annotations

import asyncio

from kaito.api.nodeclaim import LABEL_NODECLAIM
from kaito.provisioner.nodeclaims import add_indexes, claim_nodes
from kaito.runtime.cache import Cache
from kaito.runtime.client import Client
from kaito.runtime.kinds import NODE
from kaito.runtime.objects import Obj


def node(name: str, claim: str | None) -> Obj:
    labels = {LABEL_NODECLAIM: claim} if claim else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels, "resourceVersion": "1"}}


async def test_claim_nodes_visits_only_the_claims_node(kclient: Client) -> None:
    cache = Cache(kclient)
    add_indexes(cache)
    add_indexes(cache)  # each controller may ask; the second time changes nothing
    stop = asyncio.Event()
    task = asyncio.create_task(cache.run(stop))
    try:
        await cache.wait_for_sync()
        store = cache.informer(NODE).store
        store.upsert(node("mine", "claim-a"))
        for index in range(500):
            store.upsert(node(f"other-{index}", f"claim-{index}" if index % 2 else None))
        before = cache.objects_visited
        assert [n["metadata"]["name"] for n in claim_nodes(cache, "claim-a")] == ["mine"]
        assert cache.objects_visited - before == 1
    finally:
        stop.set()
        await task
