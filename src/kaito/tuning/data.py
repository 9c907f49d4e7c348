"""The training data: find the dataset file, read its rows, and map its columns to conversations or text.

Three shapes are understood: conversations (a `messages` column of `{role, content}` lists), instructions
(`prompt` and `completion` columns, or DatasetConfig's `context_column`/`response_column`), and plain text
(the `response_column`, `text` by default). Everything is checked before the model is loaded, so a dataset
without the configured columns fails in a second, naming the columns it has.
"""

from __future__ import annotations

import contextlib
import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kaito.api.tuningconfig import DatasetSection

EXTENSIONS = ("parquet", "jsonl", "json", "csv")
ROLES = ("system", "user", "assistant", "tool")
Shape = Literal["messages", "prompt_completion", "text"]


class DataError(ValueError):
    """The data directory holds nothing the trainer can use; the message says what was expected."""


@dataclass(frozen=True)
class Example:
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    completion: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Dataset:
    source: Path
    shape: Shape
    train: list[Example]
    eval: list[Example]


def load_dataset(data_dir: Path, config: DatasetSection) -> Dataset:
    source = find_dataset_file(data_dir, config)
    rows = read_rows(source, config.dataset_extension or extension_of(source))
    if not rows:
        raise DataError(f"dataset {source} has no rows")
    shape, examples = to_examples(rows, config, source)
    if config.shuffle_dataset:
        random.Random(config.shuffle_seed).shuffle(examples)
    cut = len(examples) if config.train_test_split >= 1 else max(1, int(len(examples) * config.train_test_split))
    return Dataset(source=source, shape=shape, train=examples[:cut], eval=examples[cut:])


def find_dataset_file(data_dir: Path, config: DatasetSection) -> Path:
    root = data_dir / config.dataset_path if config.dataset_path else data_dir
    if config.dataset_path and not root.exists():
        raise DataError(f"DatasetConfig.dataset_path {config.dataset_path!r}: {root} does not exist")
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"the data directory {root} does not exist; was the input downloaded?")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    for path in files:
        if extension_of(path) is not None:
            return path
    found = ", ".join(p.name for p in files[:10]) or "nothing"
    raise DataError(f"no dataset in {root}: expected a .parquet, .jsonl, .json or .csv file, found {found}")


def extension_of(path: Path) -> str | None:
    """The dataset format a file name suggests; like upstream, `train.parquet?download=true` counts."""
    name = path.name.lower()
    for ext in EXTENSIONS:
        if name.endswith(f".{ext}"):
            return ext
    return next((ext for ext in EXTENSIONS if ext in name), None)


def read_rows(path: Path, extension: str | None) -> list[dict[str, Any]]:
    try:
        if extension == "parquet":
            return _read_parquet(path)
        if extension in ("json", "jsonl"):
            return _read_json(path)
        if extension == "csv":
            with path.open(newline="", encoding="utf-8") as handle:
                return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read {path} as {extension}: {exc}") from None
    raise DataError(f"{path}: unknown dataset format; expected one of {', '.join(EXTENSIONS)}")


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.lib
    import pyarrow.parquet

    try:
        rows: list[dict[str, Any]] = pyarrow.parquet.read_table(path).to_pylist()
    except pyarrow.lib.ArrowException as exc:
        raise ValueError(str(exc)) from None
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        document = json.loads(stripped)
        rows = document
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {number}: {exc}") from None
    if not all(isinstance(row, dict) for row in rows):
        raise ValueError("every record must be a JSON object")
    return list(rows)


def to_examples(rows: list[dict[str, Any]], config: DatasetSection, source: Path) -> tuple[Shape, list[Example]]:
    columns = sorted({key for row in rows[:100] for key in row})
    messages_column = config.messages_column or ("messages" if "messages" in columns else None)
    if messages_column:
        _require(columns, [messages_column], source, "DatasetConfig.messages_column")
        return "messages", [_conversation(row.get(messages_column), i, source) for i, row in enumerate(rows)]
    prompt_column = config.context_column or ("prompt" if "prompt" in columns and "completion" in columns else None)
    if prompt_column:
        completion_column = "completion" if config.context_column is None else config.response_column
        _require(columns, [prompt_column, completion_column], source, "DatasetConfig.context_column/response_column")
        return "prompt_completion", [
            Example(prompt=_text(row, prompt_column, i, source), completion=_text(row, completion_column, i, source))
            for i, row in enumerate(rows)
        ]
    if config.response_column in columns:
        return "text", [Example(text=_text(row, config.response_column, i, source)) for i, row in enumerate(rows)]
    raise DataError(
        f"dataset {source.name} has columns {columns}; expected a `messages` column (conversations), `prompt` and "
        f"`completion` columns, or a text column `{config.response_column}`; map yours with DatasetConfig "
        "messages_column, context_column or response_column"
    )


def _require(columns: list[str], wanted: list[str], source: Path, setting: str) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise DataError(f"dataset {source.name} has no column {', '.join(missing)} ({setting}); it has {columns}")


def _text(row: dict[str, Any], column: str, index: int, source: Path) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value:
        raise DataError(f"dataset {source.name} row {index}: column {column!r} must be non-empty text, got {value!r}")
    return value


def _conversation(value: Any, index: int, source: Path) -> Example:
    if isinstance(value, str):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    if not isinstance(value, list) or not value:
        raise DataError(f"dataset {source.name} row {index}: messages must be a non-empty list of {{role, content}}")
    messages = []
    for turn, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise DataError(f"dataset {source.name} row {index} message {turn}: expected {{role, content}}")
        if message.get("role") not in ROLES:
            raise DataError(
                f"dataset {source.name} row {index} message {turn}: role {message.get('role')!r} is not one of "
                f"{', '.join(ROLES)}"
            )
        messages.append({"role": str(message["role"]), "content": str(message["content"])})
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"dataset {source.name} row {index}: the conversation has no assistant message to learn")
    return Example(messages=messages)
