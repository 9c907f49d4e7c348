"""The planner charges a hybrid's per-sequence recurrent state: what it promises fits with every slot's state."""

from __future__ import annotations

from kaito.presets.catalog import Catalog
from kaito.presets.overrides import Overrides
from kaito.presets.sizing import Request, plan

CATALOG = Catalog.builtin()
NANO = "nvidia-nemotron-3-nano-30b-a3b-bf16"


def test_a_hybrids_plan_sets_aside_state_for_every_sequence_slot() -> None:
    nano, sku = CATALOG.model(NANO), CATALOG.sku("Standard_NC40ads_H100_v5")  # one H100 NVL: tp 1
    assert nano.state_bytes_per_sequence == 49_082_368
    charged = plan(nano, sku)
    uncharged = plan(nano.model_copy(update={"state_bytes_per_sequence": None}), sku)
    mem = charged.memory
    assert mem.sequences == charged.max_num_seqs and mem.state_bytes_per_sequence == 49_082_368  # tp 1
    # The KV tokens promised and every slot's state fit the KV-cache pool together.
    assert charged.kv_cache_tokens * mem.kv_bytes_per_token + mem.state <= mem.kv_bytes
    assert charged.kv_cache_tokens < uncharged.kv_cache_tokens
    assert charged.max_num_seqs < uncharged.max_num_seqs
    # Each slot still holds a typical request's tokens.
    assert charged.kv_cache_tokens * 0.9 >= charged.max_num_seqs * min(charged.max_model_len, 2048)
    assert any("recurrent state" in line for line in charged.explanation)
    assert not any("recurrent state" in line for line in uncharged.explanation)


def test_tensor_parallel_splits_the_state_and_an_explicit_max_num_seqs_is_charged() -> None:
    nano, sku = CATALOG.model(NANO), CATALOG.sku("Standard_NC80adis_H100_v5")
    split = plan(nano, sku, Request(overrides=Overrides(tensor_parallel_size=2, max_num_seqs=64)))
    assert split.max_num_seqs == 64 and split.memory.sequences == 64
    assert split.memory.state_bytes_per_sequence == 49_082_368 // 2
