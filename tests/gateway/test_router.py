"""The routing choice alone: least outstanding requests, prefix affinity within the load bound, stable hashing."""

from __future__ import annotations

from collections import Counter

import pytest

from kaito.gateway.affinity import affinity_key
from kaito.gateway.router import Replica, Router

REPLICAS = [Replica(name, f"http://{name}") for name in ("a", "b", "c")]


def router(slack: int = 4) -> Router:
    r = Router(slack=slack)
    r.set_replicas(REPLICAS)
    return r


def test_least_outstanding_spreads_requests_evenly() -> None:
    r = router()
    picks = []
    for _ in range(6):
        replica = r.choose(None)
        assert replica is not None
        r.started(replica)
        picks.append(replica.name)
    assert Counter(picks) == {"a": 2, "b": 2, "c": 2}


def test_the_least_loaded_replica_takes_the_next_request() -> None:
    r = router()
    a, b, c = REPLICAS
    for replica in (a, a, b, c):
        r.started(replica)
    r.finished(b)
    assert r.choose(None) == b


def test_same_key_same_replica_until_it_is_overloaded() -> None:
    r = router(slack=1)
    key = "k" * 300
    first = r.choose(key)
    assert first is not None
    r.started(first)
    assert r.choose(key) == first  # 1 outstanding, least 0: within the slack
    r.started(first)
    other = r.choose(key)
    assert other is not None and other != first  # 2 > 0 + 1: another replica takes it
    r.finished(first)
    assert r.choose(key) == first  # back within the bound


def test_keys_spread_and_a_removed_replica_moves_only_its_own_keys() -> None:
    r = router(slack=100)
    keys = [f"prefix {i} " * 40 for i in range(60)]
    before = {key: r.choose(key) for key in keys}
    assert len({replica.name for replica in before.values() if replica}) == 3
    r.set_replicas(REPLICAS[:2])
    after = {key: r.choose(key) for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    assert moved and all(before[key] == REPLICAS[2] for key in moved)


def test_excluded_replicas_are_skipped_and_none_is_left() -> None:
    r = router()
    assert r.choose("x" * 300, exclude=frozenset({"a", "b"})) == REPLICAS[2]
    assert r.choose(None, exclude=frozenset({"a", "b", "c"})) is None


@pytest.mark.parametrize(
    ("body", "keyed"),
    [
        pytest.param(b'{"model":"m","messages":[{"role":"user","content":"hi"}]}', False, id="short-chat"),
        pytest.param(('{"model":"m","prompt":"' + "p" * 300 + '"}').encode(), True, id="long-prompt"),
        pytest.param(
            ('{"model":"m","messages":[{"role":"system","content":"' + "s" * 300 + '"}]}').encode(), True, id="chat"
        ),
        pytest.param(b"not json" * 50, False, id="not-json"),
    ],
)
def test_affinity_key_only_for_long_prompts(body: bytes, keyed: bool) -> None:
    assert (affinity_key(body) is not None) is keyed


def test_prompts_sharing_the_prefix_share_the_key() -> None:
    system = {"role": "system", "content": "You are terse. " * 30}

    def body(question: str) -> bytes:
        import json

        return json.dumps({"model": "m", "messages": [system, {"role": "user", "content": question}]}).encode()

    assert affinity_key(body("one?")) == affinity_key(body("two?"))
    assert affinity_key(body("one?")) != affinity_key(body("one?").replace(b"terse", b"brief"))
