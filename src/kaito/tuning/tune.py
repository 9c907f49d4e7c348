"""`kaito tune`: the tuning pod's main step. Run config and training config in, adapter (pushed or on a volume) out.

The operator mounts the run config (`model`, `revision`, `baseModel`, `method`, `dataDir`, `outputDir`,
`trainingConfig`, `output.image`, `output.dockerConfig`, `metricsPort`); flags override it. When an output
image is set the adapter is pushed as an OCI artifact once training ends, and the pushed digest is written
to the container's termination message, where the operator reads it into the Workspace status.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kaito.api.tuningconfig import ConfigError, TrainingConfig, parse_training_config
from kaito.tuning.data import DataError, load_dataset
from kaito.tuning.metrics import TuningMetrics

log = logging.getLogger("kaito.tune")
TERMINATION_LOG = "/dev/termination-log"


@dataclass(frozen=True)
class RunSettings:
    model: str
    revision: str | None
    base_model: str
    method: str
    data_dir: Path
    output_dir: Path | None
    training_config: Path | None
    push_image: str | None
    docker_config: list[Path]
    plain_http: bool
    ca_file: Path | None
    metrics_port: int
    termination_log: Path | None


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", help="run config YAML (the ConfigMap the operator mounts); flags override its values")
    add("--model", help="base model: a local directory or a Hugging Face repo id")
    add("--revision", help="the base model's revision (default: the run config's)")
    add("--base-model", help="the base model's name, recorded on the pushed adapter (default: --model)")
    add("--method", choices=["lora", "qlora"], help="default: the run config's, else lora")
    add("--training-config", help="training_config.yaml (upstream's sections); missing keys take the method's defaults")
    add("--data-dir", help="where the dataset is (default /mnt/data)")
    add("--output-dir", help="where the adapter is written (default: TrainingArguments.output_dir)")
    add("--push-image", help="push the adapter to this OCI reference when training ends")
    add("--docker-config", action="append", default=None, help="registry credentials (.dockerconfigjson file or dir)")
    add("--plain-http", action="store_true", help="talk to the registry over HTTP (local registries only)")
    add("--ca-file", help="CA bundle to trust for the registry")
    add("--metrics-port", type=int, help="serve Prometheus metrics here (default 5000; -1 disables, 0 picks a port)")
    add("--termination-log", help=f"where to write the result for the operator (default {TERMINATION_LOG} if present)")


def resolve(args: argparse.Namespace) -> RunSettings:
    run = _load_run_config(args.config)
    output = run.get("output") or {}
    model = args.model or run.get("model")
    if not model:
        raise ConfigError("no base model: pass --model or set `model` in the --config file")
    docker_config = args.docker_config or ([output["dockerConfig"]] if output.get("dockerConfig") else [])
    termination = args.termination_log or (TERMINATION_LOG if Path(TERMINATION_LOG).exists() else None)
    port = args.metrics_port if args.metrics_port is not None else int(run.get("metricsPort", 5000))
    return RunSettings(
        model=str(model),
        revision=args.revision or (None if args.model else run.get("revision")),
        base_model=str(args.base_model or run.get("baseModel") or model),
        method=str(args.method or run.get("method") or "lora").lower(),
        data_dir=Path(args.data_dir or run.get("dataDir") or "/mnt/data"),
        output_dir=_path(args.output_dir or run.get("outputDir")),
        training_config=_path(args.training_config or run.get("trainingConfig")),
        push_image=args.push_image or output.get("image") or None,
        docker_config=[Path(p) for p in docker_config],
        plain_http=bool(args.plain_http or output.get("plainHttp")),
        ca_file=_path(args.ca_file or output.get("caFile")),
        metrics_port=port,
        termination_log=_path(termination),
    )


def _path(value: Any) -> Path | None:
    return Path(str(value)) if value else None


def _load_run_config(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read --config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping at the top level")
    return data


def load_training_config(settings: RunSettings) -> TrainingConfig:
    text = None
    if settings.training_config is not None:
        try:
            text = settings.training_config.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the training config {settings.training_config}: {exc}") from None
    config = parse_training_config(text, settings.method, source=str(settings.training_config or "defaults"))
    if settings.revision and config.model.revision is None:
        config.model.revision = str(settings.revision)
    for key in config.ignored_settings():
        log.warning("%s is accepted for compatibility but has no effect here", key)
    return config


def run_tune(args: argparse.Namespace) -> int:
    from kaito.tuning.loading import TuneError, check_hardware
    from kaito.tuning.trainer import train

    try:
        settings = resolve(args)
        config = load_training_config(settings)
        import torch

        check_hardware(config, cuda_available=torch.cuda.is_available())
    except (ConfigError, TuneError) as exc:
        return _fail(str(exc), code=2)
    output_dir = settings.output_dir or Path(config.training.output_dir)
    metrics = TuningMetrics()
    try:
        if settings.metrics_port >= 0:
            port = metrics.serve(settings.metrics_port)
            log.info("metrics on :%d/metrics", port)
        dataset = load_dataset(settings.data_dir, config.dataset)
        result = train(
            config,
            dataset,
            model_path=settings.model,
            output_dir=output_dir,
            base_model_name=settings.base_model,
            metrics=metrics,
        )
        log.info(
            "trained %d steps in %.1f s (%.2f steps/s), loss %.4f -> %.4f; adapter in %s",
            result.steps,
            result.seconds,
            result.steps_per_second,
            result.first_loss,
            result.final_loss,
            output_dir,
        )
        report: dict[str, Any] = {"steps": result.steps, "loss": round(result.final_loss, 6)}
        if settings.push_image:
            report.update(_push(settings, output_dir))
    except (DataError, TuneError, OSError) as exc:
        return _fail(str(exc), code=1, termination_log=settings.termination_log)
    except PushFailed as exc:
        return _fail(str(exc), code=1, termination_log=settings.termination_log)
    finally:
        metrics.close()
    _write_termination(settings.termination_log, json.dumps(report, sort_keys=True))
    print(json.dumps(report, sort_keys=True), flush=True)
    return 0


class PushFailed(RuntimeError):
    """The adapter was trained but could not be pushed."""


def _push(settings: RunSettings, output_dir: Path) -> dict[str, Any]:
    from kaito.oci import dockerconfig
    from kaito.oci.client import OciError
    from kaito.tuning import artifacts

    assert settings.push_image is not None
    started = time.monotonic()
    try:
        auth = dockerconfig.load(settings.docker_config) if settings.docker_config else None
        pushed = artifacts.push_adapter(
            output_dir,
            settings.push_image,
            base_model=settings.base_model,
            auth=auth,
            plain_http=settings.plain_http,
            ca_file=settings.ca_file,
        )
    except (OciError, dockerconfig.DockerConfigError) as exc:
        raise PushFailed(f"the adapter was trained but not pushed: {exc}") from None
    log.info(
        "pushed %s@%s (%d bytes) in %.2f s", pushed.reference, pushed.digest, pushed.size, time.monotonic() - started
    )
    return {"image": settings.push_image, "digest": pushed.digest, "size": pushed.size}


def _fail(message: str, *, code: int, termination_log: Path | None = None) -> int:
    print(f"kaito tune: {message}", file=sys.stderr, flush=True)
    _write_termination(termination_log, message)
    return code


def _write_termination(path: Path | None, message: str) -> None:
    """Kubernetes shows this file's text as the container's termination message (up to 4 KiB)."""
    if path is None:
        return
    try:
        path.write_text(message[:4000])
    except OSError as exc:
        log.warning("cannot write the termination message to %s: %s", path, exc)
