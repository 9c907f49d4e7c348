"""`kaito tune` on the tiny test model, on CPU: it trains an adapter, reports progress, and refuses bad input early."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file

from kaito.api.tuningconfig import parse_training_config
from kaito.inference.tinymodel import make_tiny_model
from kaito.tuning.data import Example, load_dataset
from kaito.tuning.encoding import IGNORE, encode
from kaito.tuning.metrics import TuningMetrics
from kaito.tuning.trainer import StepPlan, train

FAST = """
training_config:
  ModelConfig:
    torch_dtype: float32
  TrainingArguments:
    max_steps: 12
    learning_rate: 0.01
    logging_steps: 4
    per_device_train_batch_size: 4
"""


def chat_rows(count: int) -> list[dict[str, object]]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What does the cat {i} see?"},
                {"role": "assistant", "content": "The cat sees a big green tree and the river."},
            ]
        }
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(chat_rows(24)), tmp_path / "data" / "train.parquet")
    (tmp_path / "training_config.yaml").write_text(FAST)
    return tmp_path


def kaito_tune(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kaito.cli", "tune", "--metrics-port", "-1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_lora_trains_an_adapter_and_reports_steps_and_loss(tiny_model: Path, workdir: Path) -> None:
    output, termination = workdir / "out", workdir / "termination-log"
    result = kaito_tune(
        *("--model", str(tiny_model), "--data-dir", str(workdir / "data"), "--output-dir", str(output)),
        *("--training-config", str(workdir / "training_config.yaml"), "--termination-log", str(termination)),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["steps"] == 12 and json.loads(termination.read_text()) == report
    assert "step 4/12 loss" in result.stderr and "step 12/12 loss" in result.stderr
    config = json.loads((output / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    weights = load_file(str(output / "adapter_model.safetensors"))
    lora_b = [t for key, t in weights.items() if "lora_B" in key]
    assert lora_b and any(float(t.abs().sum()) > 0 for t in lora_b)  # B starts at zero: training moved it
    assert (output / "fine_tuning_completed.txt").exists()


def test_metrics_follow_the_run_and_the_loss_falls(tiny_model: Path, workdir: Path) -> None:
    config = parse_training_config(FAST.replace("max_steps: 12", "max_steps: 30"), "lora")
    dataset = load_dataset(workdir / "data", config.dataset)
    metrics = TuningMetrics()
    port = metrics.serve(0, host="127.0.0.1")
    try:
        result = train(config, dataset, model_path=str(tiny_model), output_dir=workdir / "out", metrics=metrics)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        metrics.close()
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in body.splitlines() if not line.startswith("#")}
    assert values["kaito_tuning_steps_total"] == 30 == result.steps
    assert values["kaito_tuning_planned_steps"] == 30 and values["kaito_tuning_finished"] == 1
    assert values["kaito_tuning_loss"] > 0 and values["kaito_tuning_epoch"] == pytest.approx(30 / 6)
    assert result.final_loss < result.first_loss


def test_prompts_are_masked_out_of_the_loss(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    encoded = encode(tokenizer, Example(prompt="the cat sees", completion=" a tree"), max_length=None)
    prompt_length = len(tokenizer("the cat sees", add_special_tokens=False)["input_ids"])
    assert encoded.labels[:prompt_length] == [IGNORE] * prompt_length
    assert encoded.labels[prompt_length:] == encoded.input_ids[prompt_length:]
    assert encoded.input_ids[-1] == tokenizer.eos_token_id
    chat = encode(tokenizer, Example(messages=chat_rows(1)[0]["messages"]), max_length=5)  # type: ignore[arg-type]
    assert len(chat.input_ids) == 5 and chat.labels == chat.input_ids


def test_the_step_plan_follows_epochs_batches_and_warmup() -> None:
    config = parse_training_config(
        "training_config:\n  TrainingArguments:\n    num_train_epochs: 2\n    per_device_train_batch_size: 4\n"
        "    gradient_accumulation_steps: 2\n    warmup_ratio: 0.25\n",
        "lora",
    )
    plan = StepPlan.of(config, examples=33)
    assert (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps) == (5, 10, 3)
    assert plan.lr_factor(0, "linear") == pytest.approx(1 / 3) and plan.lr_factor(3, "linear") == 1.0
    assert plan.lr_factor(10, "linear") == 0.0 and plan.lr_factor(10, "cosine") == pytest.approx(0.0)


def test_qlora_without_a_gpu_fails_before_touching_data_or_model(tmp_path: Path) -> None:
    result = kaito_tune("--method", "qlora", "--model", str(tmp_path / "no-model"), "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "4-bit base model (QLoRA)" in result.stderr and "no GPU is visible" in result.stderr
    assert "use method lora" in result.stderr


def test_both_4_and_8_bit_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "training_config.yaml"
    config.write_text("training_config:\n  QuantizationConfig:\n    load_in_4bit: true\n    load_in_8bit: true\n")
    result = kaito_tune("--model", "m", "--training-config", str(config))
    assert result.returncode == 2
    assert "load_in_4bit and load_in_8bit are both true; choose one" in result.stderr


def test_a_dataset_without_the_configured_columns_fails_before_the_model_loads(workdir: Path) -> None:
    (workdir / "data" / "train.parquet").unlink()
    pq.write_table(pa.Table.from_pylist([{"question": "q", "answer": "a"}]), workdir / "data" / "qa.parquet")
    termination = workdir / "termination-log"
    result = kaito_tune(
        *("--model", str(workdir / "no-such-model"), "--data-dir", str(workdir / "data")),
        *("--termination-log", str(termination)),
    )
    assert result.returncode == 1
    assert "dataset qa.parquet has columns ['answer', 'question']" in result.stderr
    assert "DatasetConfig" in termination.read_text()
