"""Turning examples into token ids and loss labels, and padding them into batches."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kaito.tuning.data import Example

if TYPE_CHECKING:
    import torch

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]


def encode(tokenizer: Any, example: Example, max_length: int | None) -> Encoded:
    """Token ids and labels; prompts of prompt/completion pairs are masked out of the loss."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if example.messages is not None:
        text = render_conversation(tokenizer, example.messages)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + eos
        labels = list(ids)
    elif example.prompt is not None:
        prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
        completion = tokenizer(example.completion or "", add_special_tokens=False)["input_ids"] + eos
        ids = prompt + completion
        labels = [IGNORE] * len(prompt) + completion
    else:
        ids = tokenizer(example.text or "", add_special_tokens=False)["input_ids"] + eos
        labels = list(ids)
    if max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return Encoded(list(ids), list(labels))


def render_conversation(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages)


def batches(encoded: list[Encoded], size: int, seed: int) -> Iterator[list[Encoded]]:
    """Endless batches: each epoch reshuffled with the seed, so runs repeat exactly."""
    rng = random.Random(seed)
    order = list(range(len(encoded)))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order), size):
            yield [encoded[i] for i in order[start : start + size]]


def collate(batch: list[Encoded], pad_id: int, device: Any) -> dict[str, torch.Tensor]:
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = [e.input_ids + [pad_id] * (width - len(e.input_ids)) for e in batch]
    labels = [e.labels + [IGNORE] * (width - len(e.labels)) for e in batch]
    mask = [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in batch]
    return {
        "input_ids": torch.tensor(ids, device=device),
        "labels": torch.tensor(labels, device=device),
        "attention_mask": torch.tensor(mask, device=device),
    }
