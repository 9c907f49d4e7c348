"""The LoRA training loop: encode the examples, load and wrap the base model, train, save the adapter.

A plain PyTorch loop rather than a trainer framework: the settings it honours are exactly the typed ones in
`config.py`, each step reports to the log and to Prometheus, and nothing else is pulled into the image.
QLoRA loads the base model in 4-bit with bitsandbytes, which needs CUDA; without a GPU it fails before
touching the model.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaito.api.tuningconfig import TrainingConfig
from kaito.tuning.data import Dataset, Example
from kaito.tuning.encoding import IGNORE, Encoded, batches, collate, encode
from kaito.tuning.loading import TuneError, check_hardware, load_model, load_tokenizer, wrap_with_lora
from kaito.tuning.metrics import TuningMetrics

log = logging.getLogger("kaito.tune")
COMPLETED_SENTINEL = "fine_tuning_completed.txt"


@dataclass(frozen=True)
class TrainResult:
    steps: int
    epochs: float
    samples: int
    first_loss: float
    final_loss: float
    eval_loss: float | None
    seconds: float
    output_dir: Path
    files: list[str] = field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


def train(
    config: TrainingConfig,
    dataset: Dataset,
    *,
    model_path: str,
    output_dir: Path,
    base_model_name: str | None = None,
    metrics: TuningMetrics | None = None,
) -> TrainResult:
    import torch

    cuda = torch.cuda.is_available()
    check_hardware(config, cuda_available=cuda)
    torch.manual_seed(config.training.seed)
    tokenizer = load_tokenizer(config, model_path)
    encoded = [encode(tokenizer, example, config.training.max_length) for example in dataset.train]
    encoded = [e for e in encoded if any(label != IGNORE for label in e.labels)]
    if not encoded:
        raise TuneError(f"no trainable tokens: every example of {dataset.source.name} was cut to the prompt alone")
    model = load_model(config, model_path, cuda=cuda)
    model = wrap_with_lora(config, model)
    device = next(model.parameters()).device
    plan = StepPlan.of(config, len(encoded))
    log.info(
        "training %s on %d examples (%s) from %s: %d steps, batch %d x %d accumulation, on %s",
        model_path,
        len(encoded),
        dataset.shape,
        dataset.source.name,
        plan.total_steps,
        config.training.per_device_train_batch_size,
        config.training.gradient_accumulation_steps,
        device,
    )
    if metrics:
        metrics.start(plan.total_steps)
    started = time.monotonic()
    losses = _run_steps(config, model, encoded, plan, device, tokenizer.pad_token_id, metrics)
    seconds = time.monotonic() - started
    eval_loss = _evaluate(model, tokenizer, dataset.eval, config, device) if dataset.eval else None
    files = save_adapter(model, output_dir, base_model_name=base_model_name)
    if metrics:
        metrics.finish(eval_loss)
    window = losses[-max(1, int(config.training.logging_steps)) :]
    return TrainResult(
        steps=len(losses),
        epochs=len(losses) / plan.steps_per_epoch,
        samples=len(encoded),
        first_loss=losses[0],
        final_loss=sum(window) / len(window),
        eval_loss=eval_loss,
        seconds=seconds,
        output_dir=output_dir,
        files=files,
    )


@dataclass(frozen=True)
class StepPlan:
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, config: TrainingConfig, examples: int) -> StepPlan:
        args = config.training
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
        steps_per_epoch = max(1, math.ceil(examples / per_step))
        total = args.max_steps if args.max_steps > 0 else max(1, math.ceil(args.num_train_epochs * steps_per_epoch))
        warmup = args.warmup_steps or math.ceil(args.warmup_ratio * total)
        return cls(steps_per_epoch, total, warmup)

    def lr_factor(self, step: int, scheduler: str) -> float:
        if step < self.warmup_steps and scheduler != "constant":
            return (step + 1) / self.warmup_steps
        if scheduler in ("constant", "constant_with_warmup"):
            return 1.0
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        if scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)


def _run_steps(
    config: TrainingConfig,
    model: Any,
    encoded: list[Encoded],
    plan: StepPlan,
    device: Any,
    pad_id: int,
    metrics: TuningMetrics | None,
) -> list[float]:
    import torch

    args = config.training
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(config, params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: plan.lr_factor(step, args.lr_scheduler_type))
    stream = batches(encoded, args.per_device_train_batch_size, args.seed)
    model.train()
    losses: list[float] = []
    logging_every = max(1, int(args.logging_steps))
    window_started = time.monotonic()
    for step in range(plan.total_steps):
        step_loss = 0.0
        for _ in range(args.gradient_accumulation_steps):
            loss = model(**collate(next(stream), pad_id, device)).loss / args.gradient_accumulation_steps
            if not torch.isfinite(loss):
                raise TuneError(
                    f"the loss became {loss.item()} at step {step + 1}; lower TrainingArguments.learning_rate"
                )
            loss.backward()
            step_loss += float(loss.item())
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
        lr = float(scheduler.get_last_lr()[0])
        if metrics:
            metrics.step(step_loss, lr, (step + 1) / plan.steps_per_epoch)
        if (step + 1) % logging_every == 0 or step + 1 == plan.total_steps:
            rate = ((step % logging_every) + 1) / max(1e-9, time.monotonic() - window_started)
            log.info(
                "step %d/%d loss %.4f lr %.3g epoch %.2f (%.2f steps/s)",
                step + 1,
                plan.total_steps,
                step_loss,
                lr,
                (step + 1) / plan.steps_per_epoch,
                rate,
            )
            window_started = time.monotonic()
    return losses


def _evaluate(model: Any, tokenizer: Any, examples: list[Example], config: TrainingConfig, device: Any) -> float:
    import torch

    model.eval()
    total = 0.0
    encoded = [encode(tokenizer, e, config.training.max_length) for e in examples]
    with torch.no_grad():
        for item in encoded:
            total += float(model(**collate([item], tokenizer.pad_token_id, device)).loss.item())
    model.train()
    eval_loss = total / max(1, len(encoded))
    log.info("eval loss %.4f on %d held-out examples", eval_loss, len(encoded))
    return eval_loss


def _optimizer(config: TrainingConfig, params: list[Any]) -> Any:
    import torch

    args = config.training
    settings: dict[str, Any] = {
        "lr": args.learning_rate,
        "betas": (args.adam_beta1, args.adam_beta2),
        "eps": args.adam_epsilon,
        "weight_decay": args.weight_decay,
    }
    bnb_optimizers = {
        "paged_adamw_32bit": "PagedAdamW32bit",
        "paged_adamw_8bit": "PagedAdamW8bit",
        "adamw_8bit": "AdamW8bit",
    }
    if args.optim in bnb_optimizers:
        if torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None:
            import bitsandbytes.optim

            optimizer: Any = getattr(bitsandbytes.optim, bnb_optimizers[args.optim])(params, **settings)
            return optimizer
        log.warning("TrainingArguments.optim %s needs bitsandbytes on a GPU; using torch AdamW", args.optim)
    return torch.optim.AdamW(params, **settings)


def save_adapter(model: Any, output_dir: Path, *, base_model_name: str | None = None) -> list[str]:
    """adapter_config.json and adapter_model.safetensors; the config names the base model by `base_model_name`.

    The name is written after saving: peft looks the base model up while saving, and a preset name is not a
    path or a hub id it could find.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output_dir), safe_serialization=True)
    if base_model_name:
        config_path = output_dir / "adapter_config.json"
        adapter_config = json.loads(config_path.read_text())
        adapter_config["base_model_name_or_path"] = base_model_name
        config_path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
    (output_dir / COMPLETED_SENTINEL).write_text("done\n")
    return sorted(p.name for p in output_dir.iterdir() if p.is_file())
