"""Training configs: upstream's sections load, the method's defaults fill gaps, and bad settings are named."""

from __future__ import annotations

import pytest

from kaito.api.tuningconfig import ConfigError, parse_training_config

UPSTREAM_QLORA = """
training_config:
  ModelConfig:
    torch_dtype: "bfloat16"
    local_files_only: true
    device_map: "auto"
  QuantizationConfig:
    load_in_4bit: true
    bnb_4bit_quant_type: "nf4"
    bnb_4bit_compute_dtype: "bfloat16"
    bnb_4bit_use_double_quant: true
  LoraConfig:
    r: 8
    lora_alpha: 8
    lora_dropout: 0.0
  TrainingArguments:
    output_dir: "/mnt/results"
    ddp_find_unused_parameters: false
    save_strategy: "no"
  DataCollator:
    mlm: true
  DatasetConfig:
    shuffle_dataset: true
    train_test_split: 1
"""


def test_upstreams_qlora_template_loads_and_reports_what_it_ignores() -> None:
    config = parse_training_config(UPSTREAM_QLORA, "qlora")
    assert config.quantization.load_in_4bit and config.quantization.bnb_4bit_use_double_quant
    assert config.lora.r == 8 and config.training.output_dir == "/mnt/results"
    assert config.ignored_settings() == ["TrainingArguments.ddp_find_unused_parameters"]


def test_method_defaults_fill_missing_sections() -> None:
    lora, qlora = parse_training_config(None, "lora"), parse_training_config("", "qlora")
    assert not lora.quantization.quantized
    assert qlora.quantization.load_in_4bit and qlora.quantization.bnb_4bit_quant_type == "nf4"
    assert lora.training.num_train_epochs == 3 and lora.dataset.train_test_split == 1


def test_a_user_choosing_8_bit_under_qlora_replaces_the_4_bit_default() -> None:
    text = "training_config:\n  QuantizationConfig:\n    load_in_8bit: true\n"
    config = parse_training_config(text, "qlora")
    assert config.quantization.load_in_8bit and not config.quantization.load_in_4bit


def test_max_seq_length_is_accepted_as_the_old_name_of_max_length() -> None:
    text = "training_config:\n  TrainingArguments:\n    max_seq_length: 256\n"
    assert parse_training_config(text, "lora").training.max_length == 256


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "training_config:\n  QuantizationConfig:\n    load_in_4bit: true\n    load_in_8bit: true\n",
            "QuantizationConfig: load_in_4bit and load_in_8bit are both true; choose one",
        ),
        ("training_config:\n  LoraConfig:\n    rank: 8\n", "LoraConfig.rank: not a setting of this section"),
        ("training_config:\n  LoraConfig:\n    r: 0\n", "LoraConfig.r: Input should be greater than or equal to 1"),
        ("training_config:\n  TrainingArguments:\n    learning_rate: fast\n", "TrainingArguments.learning_rate"),
        ("training_config:\n  TrainingArguments:\n    optim: sgd\n", "'sgd' is not one of adamw_torch"),
        ("training_config:\n  DatasetConfig:\n    train_test_split: 1.5\n", "DatasetConfig.train_test_split"),
        ("training_config:\n  Trainer: {}\n", "unknown section 'Trainer'; expected ModelConfig"),
        ("training_config: [1, 2]\n", "`training_config` must be a mapping of sections"),
        ("training_config:\n  LoraConfig: [r]\n", "section LoraConfig must be a mapping"),
        ("{{", "is not valid YAML"),
    ],
)
def test_bad_settings_are_refused_naming_section_and_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_training_config(text, "lora", source="training_config.yaml")
    assert expected in str(caught.value)
    assert str(caught.value).startswith("training_config.yaml")


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ConfigError, match="'full' is not one of lora, qlora"):
        parse_training_config(None, "full")
