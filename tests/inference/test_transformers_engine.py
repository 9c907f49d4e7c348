"""The transformers engine against a tiny random Llama: what a client of `kaito serve` would see on CPU."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from kaito.inference.engine import (
    BadParameter,
    Chunk,
    EngineError,
    NotReady,
    Overloaded,
    PromptTooLong,
    Request,
    Sampling,
    UnknownModel,
)
from kaito.inference.engines.tf_decode import IncrementalDetokenizer, StopFilter
from kaito.inference.engines.transformers_engine import TransformersEngine
from kaito.inference.tinymodel import MAX_POSITIONS
from tests.inference.conftest import SERVED_NAME

PROMPT = "The small cat sees"
GREEDY = Sampling(max_tokens=24, temperature=0.0)


class Reference:
    """transformers' own generate(): the yardstick for the engine's hand-written decode loop."""

    def __init__(self, model_dir: Path, adapter_dir: Path) -> None:
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        self.base = _causal_lm(model_dir)
        self.lora: Any = PeftModel.from_pretrained(_causal_lm(model_dir), str(adapter_dir))
        self.lora.eval()

    def greedy_ids(self, prompt: str, max_new_tokens: int, *, adapter: bool = False) -> list[int]:
        inputs = self.tokenizer(prompt, return_tensors="pt")
        model = self.lora if adapter else self.base
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        ids: list[int] = out[0, inputs["input_ids"].shape[1] :].tolist()
        return ids

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def count(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])


def _causal_lm(model_dir: Path) -> Any:
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    return model.eval()


@pytest.fixture(scope="session")
def reference(tiny_model_dir: Path, tiny_adapters_dir: Path) -> Reference:
    return Reference(tiny_model_dir, tiny_adapters_dir / "tiny-lora")


async def chunks_of(engine: TransformersEngine, request: Request) -> list[Chunk]:
    chunks = [chunk async for chunk in engine.generate(request)]
    assert chunks[-1].finish_reason is not None
    assert all(c.finish_reason is None for c in chunks[:-1]), "only the last chunk finishes"
    return chunks


async def complete(engine: TransformersEngine, request: Request) -> tuple[str, Chunk]:
    chunks = await chunks_of(engine, request)
    return "".join(c.text for c in chunks), chunks[-1]


def ask(model: str = SERVED_NAME, prompt: str = PROMPT, sampling: Sampling = GREEDY) -> Request:
    return Request(model=model, prompt=prompt, sampling=sampling)


async def test_load_lists_served_name_then_adapters(tiny_engine: TransformersEngine) -> None:
    assert tiny_engine.name == "transformers"
    assert tiny_engine.models() == [SERVED_NAME, "tiny-lora", "tiny-lora-env", "tiny-lora-zero"]
    assert tiny_engine.max_model_len == MAX_POSITIONS


async def test_greedy_matches_transformers_generate(tiny_engine: TransformersEngine, reference: Reference) -> None:
    expected = reference.greedy_ids(PROMPT, GREEDY.max_tokens)
    chunks = await chunks_of(tiny_engine, ask())
    assert "".join(c.text for c in chunks) == reference.decode(expected)
    assert len(chunks) > 1, "text streams in pieces"
    assert [c.completion_tokens for c in chunks] == sorted(c.completion_tokens for c in chunks)
    assert chunks[-1].completion_tokens == len(expected)
    assert chunks[-1].prompt_tokens == reference.count(PROMPT)


async def test_greedy_is_deterministic(tiny_engine: TransformersEngine) -> None:
    first = await complete(tiny_engine, ask())
    assert await complete(tiny_engine, ask()) == first


async def test_seed_reproduces_sampled_text(tiny_engine: TransformersEngine) -> None:
    def seeded(seed: int) -> Request:
        return ask(sampling=Sampling(max_tokens=16, temperature=1.0, seed=seed))

    text, _ = await complete(tiny_engine, seeded(7))
    assert (await complete(tiny_engine, seeded(7)))[0] == text
    assert (await complete(tiny_engine, seeded(8)))[0] != text


async def test_tiny_top_p_keeps_only_the_likeliest_token(tiny_engine: TransformersEngine) -> None:
    greedy, _ = await complete(tiny_engine, ask())
    nucleus = Sampling(max_tokens=GREEDY.max_tokens, temperature=1.0, top_p=1e-6, seed=3)
    assert (await complete(tiny_engine, ask(sampling=nucleus)))[0] == greedy


async def test_max_tokens_ends_with_length(tiny_engine: TransformersEngine, reference: Reference) -> None:
    text, last = await complete(tiny_engine, ask(sampling=Sampling(max_tokens=5, temperature=0.0)))
    assert (last.finish_reason, last.completion_tokens) == ("length", 5)
    assert text == reference.decode(reference.greedy_ids(PROMPT, 5))


async def test_eos_ends_with_stop(tiny_model_dir: Path, tmp_path: Path, reference: Reference) -> None:
    greedy = reference.greedy_ids(PROMPT, 8)
    position = next(i for i in range(2, len(greedy)) if greedy[i] not in greedy[:i])
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    config = json.loads((model_dir / "generation_config.json").read_text())
    config["eos_token_id"] = [greedy[position]]
    (model_dir / "generation_config.json").write_text(json.dumps(config))
    engine = TransformersEngine(model_dir, served_model_name=SERVED_NAME)
    await engine.load()

    text, last = await complete(engine, ask())

    assert (last.finish_reason, last.completion_tokens) == ("stop", position + 1)
    assert text == reference.decode(greedy[:position])


async def test_stop_string_cuts_text_before_it(tiny_engine: TransformersEngine) -> None:
    full, _ = await complete(tiny_engine, ask())
    stop = next(full[i : i + 3] for i in range(4, len(full)) if full.find(full[i : i + 3]) == i)
    later = full[full.index(stop) + 3 :][:2]
    request = ask(sampling=Sampling(max_tokens=GREEDY.max_tokens, temperature=0.0, stop=(later, stop)))

    chunks = await chunks_of(tiny_engine, request)

    text = "".join(c.text for c in chunks)
    assert text == full[: full.index(stop)]
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].completion_tokens < GREEDY.max_tokens


async def test_unmatched_stop_prefix_is_released_at_the_end(tiny_engine: TransformersEngine) -> None:
    full, _ = await complete(tiny_engine, ask())
    never = full[-2:] + "\x00never"
    request = ask(sampling=Sampling(max_tokens=GREEDY.max_tokens, temperature=0.0, stop=(never,)))
    text, last = await complete(tiny_engine, request)
    assert (text, last.finish_reason) == (full, "length")


async def test_chat_messages_render_through_the_template(tiny_engine: TransformersEngine, reference: Reference) -> None:
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the dog?"})
    rendered = reference.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    assert rendered == "<|system|>Be brief.<|end|><|user|>Where is the dog?<|end|><|assistant|>"

    chat_text, chat_last = await complete(tiny_engine, Request(model=SERVED_NAME, messages=messages, sampling=GREEDY))

    assert (chat_text, chat_last) == await complete(tiny_engine, ask(prompt=rendered))
    expected_ids = reference.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True)["input_ids"]
    assert chat_last.prompt_tokens == len(expected_ids)


def _request(**fields: Any) -> Request:
    sampling = Sampling(**fields.pop("sampling", {}))
    return Request(**{"model": SERVED_NAME, "prompt": PROMPT, "sampling": sampling, **fields})


@pytest.mark.parametrize(
    ("request_", "error", "param"),
    [
        pytest.param(_request(model="gpt-4"), UnknownModel, "model", id="unknown-model"),
        pytest.param(_request(sampling={"temperature": 2.5}), BadParameter, "temperature", id="temperature-high"),
        pytest.param(_request(sampling={"temperature": -0.1}), BadParameter, "temperature", id="temperature-low"),
        pytest.param(_request(sampling={"top_p": 0.0}), BadParameter, "top_p", id="top-p-zero"),
        pytest.param(_request(sampling={"top_p": 1.5}), BadParameter, "top_p", id="top-p-high"),
        pytest.param(_request(sampling={"max_tokens": 0}), BadParameter, "max_tokens", id="max-tokens-zero"),
        pytest.param(_request(sampling={"stop": ("a", "b", "c", "d", "e")}), BadParameter, "stop", id="five-stops"),
        pytest.param(_request(prompt=None), BadParameter, "prompt", id="no-prompt"),
        pytest.param(_request(prompt=""), BadParameter, "prompt", id="empty-prompt"),
        pytest.param(_request(prompt=None, messages=()), BadParameter, "messages", id="no-messages"),
        pytest.param(_request(prompt=None, messages=("hi",)), BadParameter, "messages", id="message-not-object"),
        pytest.param(_request(prompt=None, messages=({"role": "user"},)), BadParameter, "messages", id="no-content"),
        pytest.param(
            _request(prompt=None, messages=({"role": "user", "content": 3},)),
            BadParameter,
            "messages",
            id="content-not-string",
        ),
        pytest.param(
            _request(messages=({"role": "user", "content": "hi"},)), BadParameter, "messages", id="prompt-and-messages"
        ),
    ],
)
async def test_bad_requests_raise_before_any_chunk(
    tiny_engine: TransformersEngine, request_: Request, error: type[EngineError], param: str
) -> None:
    with pytest.raises(error) as caught:
        await anext(tiny_engine.generate(request_))
    assert caught.value.param == param
    assert caught.value.status in (400, 404)


async def test_unknown_model_names_the_available_ones(tiny_engine: TransformersEngine) -> None:
    with pytest.raises(UnknownModel, match="tiny, tiny-lora, tiny-lora-env, tiny-lora-zero"):
        await anext(tiny_engine.generate(ask(model="nope")))


async def test_prompt_too_long_gives_the_numbers(tiny_engine: TransformersEngine, reference: Reference) -> None:
    prompt = "The dog runs over the river. " * 20
    prompt_tokens = reference.count(prompt)
    max_tokens = MAX_POSITIONS - prompt_tokens + 1
    expected = (
        f"This model's maximum context length is {MAX_POSITIONS} tokens. However, you requested "
        f"{MAX_POSITIONS + 1} tokens ({prompt_tokens} in the prompt, {max_tokens} in the completion)."
    )
    with pytest.raises(PromptTooLong) as caught:
        await anext(tiny_engine.generate(ask(prompt=prompt, sampling=Sampling(max_tokens=max_tokens))))
    assert caught.value.message.startswith(expected)
    assert caught.value.param == "prompt"

    fits = Sampling(max_tokens=max_tokens - 1, temperature=0.0)
    _, last = await complete(tiny_engine, ask(prompt=prompt, sampling=fits))
    assert (last.prompt_tokens, last.completion_tokens, last.finish_reason) == (prompt_tokens, max_tokens - 1, "length")


async def test_adapter_changes_output_as_peft_does(tiny_engine: TransformersEngine, reference: Reference) -> None:
    base, _ = await complete(tiny_engine, ask())
    adapted, last = await complete(tiny_engine, ask(model="tiny-lora"))
    assert adapted != base
    expected = reference.greedy_ids(PROMPT, GREEDY.max_tokens, adapter=True)
    assert (adapted, last.completion_tokens) == (reference.decode(expected), len(expected))


@pytest.mark.parametrize("adapter", ["tiny-lora-zero", "tiny-lora-env"], ids=["explicit-zero", "env-zero"])
async def test_zero_strength_adapter_gives_exactly_the_base_output(
    tiny_engine: TransformersEngine, adapter: str
) -> None:
    base = await complete(tiny_engine, ask(sampling=Sampling(max_tokens=40, temperature=0.0)))
    assert await complete(tiny_engine, ask(model=adapter, sampling=Sampling(max_tokens=40, temperature=0.0))) == base


async def test_process_environment_sets_strength(
    tiny_model_dir: Path, tiny_adapters_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("tiny-lora", "0")
    engine = TransformersEngine(tiny_model_dir, served_model_name=SERVED_NAME, adapters_dir=tiny_adapters_dir)
    await engine.load()
    assert await complete(engine, ask(model="tiny-lora")) == await complete(engine, ask())


async def test_unreadable_env_strength_fails_load(tiny_model_dir: Path, tiny_adapters_dir: Path) -> None:
    engine = TransformersEngine(
        tiny_model_dir, served_model_name=SERVED_NAME, adapters_dir=tiny_adapters_dir, environ={"tiny-lora": "max"}
    )
    with pytest.raises(ValueError, match="tiny-lora='max' is not a number"):
        await engine.load()


async def test_full_queue_answers_overloaded(tiny_model_dir: Path) -> None:
    engine = TransformersEngine(tiny_model_dir, served_model_name=SERVED_NAME, max_queue=1)
    await engine.load()
    async with asyncio.timeout(10):  # a missing bound would otherwise wait forever for the slot
        running = engine.generate(ask())
        first = await anext(running)  # holds the only slot
        queued = asyncio.create_task(complete(engine, ask()))
        for _ in range(100):  # the queued request reaches the semaphore within a few loop turns
            if engine.waiting:
                break
            await asyncio.sleep(0)
        assert engine.waiting == 1

        with pytest.raises(Overloaded) as caught:
            await anext(engine.generate(ask()))
        assert (caught.value.status, caught.value.retry_after) == (429, 1)

        rest = [chunk async for chunk in running]
        assert first.finish_reason is None and rest[-1].finish_reason == "length"
        assert (await queued)[1].finish_reason == "length"


async def test_concurrent_generations_match_sequential_ones(tiny_engine: TransformersEngine) -> None:
    models = [SERVED_NAME, "tiny-lora", "tiny-lora-zero", "tiny-lora-env"]
    requests = [
        ask(model=models[i % 4], sampling=Sampling(max_tokens=12, temperature=float(i % 2), seed=i)) for i in range(8)
    ]
    sequential = [await complete(tiny_engine, r) for r in requests]

    concurrent = await asyncio.gather(*(complete(tiny_engine, r) for r in requests))

    assert concurrent == sequential


async def test_generate_needs_load_and_close_ends_it(tiny_model_dir: Path) -> None:
    engine = TransformersEngine(tiny_model_dir, served_model_name=SERVED_NAME)
    with pytest.raises(NotReady):
        await anext(engine.generate(ask()))
    await engine.load()
    stream = engine.generate(ask())
    await anext(stream)
    await engine.close()
    with pytest.raises(NotReady):
        await anext(engine.generate(ask()))
    with pytest.raises(NotReady):
        async for _ in stream:
            pass


def test_detokenizer_never_splits_multibyte_characters(reference: Reference) -> None:
    text = "Öl ☃ 🙂 ñandú 中文 café"  # mostly characters the tokenizer never saw, so they split into byte tokens
    ids = reference.tokenizer(text)["input_ids"]
    detokenizer = IncrementalDetokenizer(reference.decode)

    pieces = [detokenizer.push(i) for i in ids] + [detokenizer.flush()]

    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert len(ids) > len(text), "characters span several byte tokens"


@pytest.mark.parametrize(
    ("pieces", "stops", "emitted", "stopped"),
    [
        pytest.param(["Hello wo", "rld! Bye"], ["world"], ["Hello ", ""], True, id="across-pieces"),
        pytest.param(["ab", "c", "d"], ["cx", "bcd"], ["a", "", ""], True, id="held-then-hit"),
        pytest.param(["xxABCyy"], ["yy", "B"], ["xxA"], True, id="earliest-wins"),
        pytest.param(["one END", " two"], ["END", "two"], ["one ", ""], True, id="first-stop-ends"),
        pytest.param(["ab", "cz"], ["abcd"], ["", "abcz"], False, id="false-start-released"),
        pytest.param(["x<", "|e"], ["<|end|>"], ["x", ""], False, id="held-at-the-end"),
    ],
)
def test_stop_filter(pieces: list[str], stops: list[str], emitted: list[str], stopped: bool) -> None:
    stop_filter = StopFilter(stops)
    assert [stop_filter.feed(p) for p in pieces] == emitted
    assert stop_filter.stopped is stopped
    released = stop_filter.flush()
    assert "".join(emitted) + released == ("".join(emitted) if stopped else "".join(pieces))


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("float32", torch.float32), ("half", torch.float16), ("bfloat16", torch.bfloat16)],
)
async def test_dtype_sets_the_weights_precision(tiny_model_dir: Path, dtype: str, expected: torch.dtype) -> None:
    engine = TransformersEngine(tiny_model_dir, served_model_name=SERVED_NAME, dtype=dtype)
    await engine.load()
    _, last = await complete(engine, ask(sampling=Sampling(max_tokens=3, temperature=0.0)))
    assert last.completion_tokens == 3
    assert engine._loaded is not None and engine._loaded.model.dtype == expected


@pytest.mark.parametrize(
    "kwargs",
    [{"dtype": "int8"}, {"max_concurrency": 0}, {"max_model_len": 0}],
    ids=["dtype", "concurrency", "max-model-len"],
)
def test_bad_settings_fail_at_construction(tiny_model_dir: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TransformersEngine(tiny_model_dir, served_model_name=SERVED_NAME, **kwargs)


async def test_max_model_len_beyond_the_model_fails_load(tiny_model_dir: Path) -> None:
    engine = TransformersEngine(tiny_model_dir, served_model_name=SERVED_NAME, max_model_len=MAX_POSITIONS + 1)
    with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings 256"):
        await engine.load()
