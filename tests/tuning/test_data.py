"""Datasets: every file format and column shape the trainer accepts, and the messages for what it does not."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kaito.api.tuningconfig import DatasetSection
from kaito.tuning.data import DataError, load_dataset

CHAT = [
    {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(10)
]


def write_parquet(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_conversations_in_parquet_are_found_shuffled_and_split(tmp_path: Path) -> None:
    write_parquet(tmp_path / "train-00000-of-00001.parquet", CHAT)
    (tmp_path / "README.txt").write_text("not data")
    data = load_dataset(tmp_path, DatasetSection(train_test_split=0.8))
    assert data.shape == "messages" and len(data.train) == 8 and len(data.eval) == 2
    assert sorted(e.messages[0]["content"] for e in data.train + data.eval if e.messages) == sorted(
        f"q{i}" for i in range(10)
    )
    again = load_dataset(tmp_path, DatasetSection(train_test_split=0.8))
    assert again.train == data.train  # the seed makes the shuffle repeatable


def test_jsonl_prompt_completion_and_a_json_array(tmp_path: Path) -> None:
    lines = [json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}) for i in range(3)]
    (tmp_path / "a" / "d.jsonl").parent.mkdir()
    (tmp_path / "a" / "d.jsonl").write_text("\n".join(lines) + "\n")
    data = load_dataset(tmp_path / "a", DatasetSection(shuffle_dataset=False))
    assert data.shape == "prompt_completion" and data.train[0].prompt == "p0" and data.train[0].completion == "c0"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "d.json").write_text(json.dumps([{"text": "hello"}, {"text": "world"}]))
    data = load_dataset(tmp_path / "b", DatasetSection(shuffle_dataset=False))
    assert data.shape == "text" and [e.text for e in data.train] == ["hello", "world"]


def test_csv_with_mapped_columns(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("instruction,output\nsay hi,hi\nsay bye,bye\n")
    config = DatasetSection(context_column="instruction", response_column="output", shuffle_dataset=False)
    data = load_dataset(tmp_path, config)
    assert [(e.prompt, e.completion) for e in data.train] == [("say hi", "hi"), ("say bye", "bye")]


def test_dataset_path_picks_one_file(tmp_path: Path) -> None:
    write_parquet(tmp_path / "x" / "first.parquet", [{"text": "no"}])
    write_parquet(tmp_path / "y" / "second.parquet", [{"text": "yes"}])
    data = load_dataset(tmp_path, DatasetSection(dataset_path="y/second.parquet"))
    assert data.train[0].text == "yes"


@pytest.mark.parametrize(
    ("rows", "config", "expected"),
    [
        (
            [{"question": "q", "answer": "a"}],
            DatasetSection(),
            "has columns ['answer', 'question']; expected a `messages` column",
        ),
        ([{"prompt": "q", "answer": "a"}], DatasetSection(context_column="prompt"), "has no column text"),
        ([{"conv": "x"}], DatasetSection(messages_column="chat"), "has no column chat"),
        ([{"messages": [{"role": "user", "content": "hi"}]}], DatasetSection(), "no assistant message"),
        ([{"messages": [{"role": "robot", "content": "hi"}]}], DatasetSection(), "role 'robot' is not one of"),
        ([{"text": ""}], DatasetSection(), "row 0: column 'text' must be non-empty text"),
    ],
)
def test_data_without_the_configured_columns_is_refused(
    tmp_path: Path, rows: list[dict[str, object]], config: DatasetSection, expected: str
) -> None:
    write_parquet(tmp_path / "d.parquet", rows)
    with pytest.raises(DataError) as caught:
        load_dataset(tmp_path, config)
    assert expected in str(caught.value)


def test_an_empty_or_missing_data_directory_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; was the input downloaded"):
        load_dataset(tmp_path / "missing", DatasetSection())
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"expected a \.parquet, \.jsonl, \.json or \.csv file, found notes.txt"):
        load_dataset(tmp_path, DatasetSection())
    with pytest.raises(DataError, match=r"dataset_path 'nope\.parquet'"):
        load_dataset(tmp_path, DatasetSection(dataset_path="nope.parquet"))


def test_a_corrupt_file_is_reported_with_its_format(tmp_path: Path) -> None:
    (tmp_path / "d.parquet").write_bytes(b"PAR1 definitely not parquet")
    with pytest.raises(DataError, match=r"cannot read .*d\.parquet as parquet"):
        load_dataset(tmp_path, DatasetSection())
    (tmp_path / "d.parquet").unlink()
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n{broken\n')
    with pytest.raises(DataError, match="line 2"):
        load_dataset(tmp_path, DatasetSection())
