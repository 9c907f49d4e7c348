"""The InferenceSet's memory of its own creates and deletes: a stale cache never makes it create or delete twice."""

from __future__ import annotations

from typing import Any

from kaito.controllers.inferenceset_ledger import CATCH_UP_S, Ledger
from kaito.runtime.clock import FakeClock
from kaito.runtime.objects import ObjectKey

KEY = ObjectKey("ns", "phi")


def ws(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}}


def names(children: list[dict[str, Any]]) -> list[str]:
    return [str(c["metadata"]["name"]) for c in children]


def test_a_create_counts_until_the_cache_shows_it() -> None:
    ledger = Ledger(clock=FakeClock())
    ledger.created(KEY, ws("phi-aaaaa"))
    assert names(ledger.children(KEY, [])) == ["phi-aaaaa"]
    assert ledger.pending_for(KEY) == CATCH_UP_S
    assert names(ledger.children(KEY, [ws("phi-aaaaa")])) == ["phi-aaaaa"]  # cached now: once, not twice
    assert ledger.pending_for(KEY) is None


def test_a_delete_counts_until_the_cache_drops_it() -> None:
    ledger = Ledger(clock=FakeClock())
    ledger.deleted(KEY, "phi-aaaaa")
    cached = [ws("phi-aaaaa"), ws("phi-bbbbb")]
    assert names(ledger.children(KEY, cached)) == ["phi-bbbbb"]
    assert names(ledger.children(KEY, [ws("phi-bbbbb")])) == ["phi-bbbbb"]
    assert ledger.pending_for(KEY) is None


def test_memory_lapses_after_the_catch_up_window() -> None:
    clock = FakeClock()
    ledger = Ledger(clock=clock)
    ledger.created(KEY, ws("phi-aaaaa"))
    ledger.deleted(KEY, "phi-bbbbb")
    clock.advance(CATCH_UP_S)
    assert names(ledger.children(KEY, [ws("phi-bbbbb")])) == ["phi-bbbbb"]
    ledger.forget(KEY)
    assert ledger.pending_for(KEY) is None
