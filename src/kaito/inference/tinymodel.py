"""A tiny random Llama, BPE tokenizer and LoRA adapter, built in a fraction of a second so nothing needs downloads.

Tests and benchmarks serve and tune it, and the simulated cluster's process pods (`kaito_sim.nodes.processes`, behind
`make demo`) run `kaito serve` on it in place of a preset's real weights: its answers are random tokens. It needs
the `inference` extra (torch, transformers, tokenizers, peft).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

EOS = "<|endoftext|>"
END_OF_TURN = "<|end|>"
SPECIAL_TOKENS = (EOS, "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", END_OF_TURN)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
MAX_POSITIONS = 256

_WORDS = [
    *("the", "a", "one", "every", "small", "big", "red", "green", "cat", "dog", "bird", "model", "token"),
    *("engine", "river", "house", "tree", "cloud", "sees", "runs", "jumps", "learns", "writes", "reads"),
    *("quickly", "slowly", "over", "under", "near", "with", "and", "but", "then"),
    *("café", "naïve", "über", "crème", "日本", "語", "✓", "é"),  # multi-byte characters for the decoder tests
]


def _sentences(rng: random.Random, count: int) -> list[str]:
    def sentence() -> str:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 12))]
        return " ".join(words).capitalize() + rng.choice(".!?")

    return [sentence() for _ in range(count)]


def _tokenizer(seed: int) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_sentences(random.Random(seed), 400), trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, eos_token=EOS, pad_token="<|pad|>", chat_template=CHAT_TEMPLATE
    )


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(token_id, int)
    return token_id


def make_tiny_model(directory: Path, *, seed: int = 0) -> Path:
    """Write a 2-layer random Llama and its tokenizer to `directory`; eos is both <|endoftext|> and <|end|>."""
    tokenizer = _tokenizer(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=None,
        eos_token_id=[_token_id(tokenizer, EOS), _token_id(tokenizer, END_OF_TURN)],
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=0.1,  # wide logit gaps keep greedy decoding robust to float noise
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def make_tiny_adapter(model_dir: Path, directory: Path, *, seed: int = 1, rank: int = 4) -> Path:
    """Write a LoRA adapter on q_proj/v_proj whose random, non-zero B matrices visibly change the output."""
    base = LlamaForCausalLM.from_pretrained(model_dir, local_files_only=True)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(base, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    directory.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(directory))
    return directory
