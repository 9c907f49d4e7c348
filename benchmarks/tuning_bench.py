"""What the tuning loop costs on this machine: training steps per second on the tiny model on CPU, and the size
and push/pull times of the adapter artifact against the local docker-registry.

Run with `python benchmarks/tuning_bench.py [--steps 100] [--repeats 5]`. Training runs in this process through
`kaito.tuning.trainer.train` (the same code `kaito tune` runs), once with LoRA on the attention projections only
and once on every projection; the registry is the Debian `docker-registry` over TLS with basic auth.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kaito.api.tuningconfig import parse_training_config
from kaito.oci import dockerconfig
from kaito.oci.adapters import pull_adapter
from kaito.tuning.artifacts import push_adapter
from kaito.tuning.data import load_dataset
from kaito.tuning.trainer import TrainResult, train

ROOT = Path(__file__).resolve().parents[1]
ALL_PROJECTIONS = "[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]"


def dataset(directory: Path, rows: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    conversations = [
        {
            "messages": [
                {"role": "user", "content": f"What does cat number {i} see?"},
                {"role": "assistant", "content": "The cat sees a big green tree and the river."},
            ]
        }
        for i in range(rows)
    ]
    pq.write_table(pa.Table.from_pylist(conversations), directory / "train.parquet")
    return directory


def run_training(model: Path, data: Path, output: Path, *, steps: int, targets: str | None) -> TrainResult:
    lora = f"\n  LoraConfig:\n    target_modules: {targets}" if targets else ""
    text = (
        "training_config:\n  TrainingArguments:\n"
        f"    max_steps: {steps}\n    learning_rate: 0.01\n    logging_steps: {steps}\n"
        f"    per_device_train_batch_size: 4{lora}\n"
    )
    config = parse_training_config(text, "lora")
    return train(config, load_dataset(data, config.dataset), model_path=str(model), output_dir=output)


def registry_figures(adapter: Path, work: Path, repeats: int) -> None:
    from tests.registry import Registry

    with Registry(work / "registry", username="bench") as registry:
        assert registry.ca_file is not None
        auth = dockerconfig.load([registry.docker_config(work / "secret" / ".dockerconfigjson")])
        ca = registry.ca_file
        pushes, repushes, pulls = [], [], []
        size = 0
        for i in range(repeats):
            image = f"{registry.address}/bench/adapter-{i}:1"  # a new repository: every blob is uploaded
            started = time.perf_counter()
            size = push_adapter(adapter, image, base_model="tiny", auth=auth, ca_file=ca).size
            pushed = time.perf_counter()
            push_adapter(adapter, image, base_model="tiny", auth=auth, ca_file=ca)
            repushed = time.perf_counter()
            pull_adapter(image, work / "pulled" / str(i), auth=auth, ca_file=ca)
            pulled = time.perf_counter()
            pushes.append(pushed - started)
            repushes.append(repushed - pushed)
            pulls.append(pulled - repushed)
    weights = (adapter / "adapter_model.safetensors").stat().st_size
    print(f"artifact: {size} bytes pushed (adapter_model.safetensors {weights} bytes + config + manifest)")
    for label, values in (("push (new repository)", pushes), ("re-push (blobs present)", repushes), ("pull", pulls)):
        print(f"{label:24} median {statistics.median(values) * 1000:7.1f} ms  (min {min(values) * 1000:.1f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(ROOT))  # the tiny model builder and the registry runner live with the tests
    from kaito.inference.tinymodel import make_tiny_model

    with tempfile.TemporaryDirectory(prefix="kaito-tuning-bench-") as scratch:
        work = Path(scratch)
        model = make_tiny_model(work / "model")
        data = dataset(work / "data", rows=64)
        adapter = work / "adapter"
        for label, targets in (("LoRA q,v (peft default)", None), ("LoRA all projections", ALL_PROJECTIONS)):
            result = run_training(model, data, adapter, steps=args.steps, targets=targets)
            print(
                f"{label:26} {result.steps} steps in {result.seconds:.2f} s: {result.steps_per_second:.1f} steps/s, "
                f"{result.steps_per_second * 4:.0f} samples/s, loss {result.first_loss:.2f} -> {result.final_loss:.2f}"
            )
        registry_figures(adapter, work, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
