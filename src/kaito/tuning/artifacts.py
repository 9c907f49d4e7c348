"""LoRA adapters and training data as OCI artifacts, and the push-adapter, pull-adapter and pull-data commands."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaito.oci import dockerconfig
from kaito.oci.adapters import (
    ADAPTER_ARTIFACT_TYPE,
    ADAPTER_CONFIG_FILE,
    ADAPTER_CONFIG_MEDIA_TYPE,
    ADAPTER_WEIGHTS_FILE,
    ADAPTER_WEIGHTS_MEDIA_TYPE,
    ANNOTATION_BASE_MODEL,
    IMAGE_DATA_DIR,
    pull_adapter,
)
from kaito.oci.client import ANNOTATION_CREATED, Auth, Pulled, Pushed, pull, push_files
from kaito.oci.errors import OciError
from kaito.oci.reference import Reference, parse_reference

DATASET_ARTIFACT_TYPE = "application/vnd.kaito.dataset.v1"
DEFAULT_ADAPTER_DIR = Path("/mnt/output")
DEFAULT_DATA_DIR = Path("/mnt/data")

EXIT_OK, EXIT_FAILED, EXIT_BAD_ARGUMENTS = 0, 1, 2


def push_adapter(
    adapter_dir: Path,
    reference: str | Reference,
    *,
    base_model: str | None = None,
    auth: Auth,
    plain_http: bool = False,
    ca_file: Path | None = None,
) -> Pushed:
    """Push adapter_config.json and adapter_model.safetensors as a kaito adapter artifact.

    base_model defaults to the adapter config's base_model_name_or_path.
    """
    config = _read_adapter_config(adapter_dir)
    model = base_model or str(config.get("base_model_name_or_path") or "")
    if not model:
        raise OciError(
            f"no base model for the adapter in {adapter_dir}: pass one (--base-model), or set "
            f"base_model_name_or_path in {ADAPTER_CONFIG_FILE}"
        )
    files = [
        (adapter_dir / ADAPTER_CONFIG_FILE, ADAPTER_CONFIG_MEDIA_TYPE),
        (adapter_dir / ADAPTER_WEIGHTS_FILE, ADAPTER_WEIGHTS_MEDIA_TYPE),
    ]
    annotations = {ANNOTATION_BASE_MODEL: model, ANNOTATION_CREATED: _now_rfc3339()}
    return push_files(
        reference,
        files,
        artifact_type=ADAPTER_ARTIFACT_TYPE,
        annotations=annotations,
        auth=auth,
        plain_http=plain_http,
        ca_file=ca_file,
    )


def pull_data(
    reference: str | Reference, outdir: Path, *, auth: Auth, plain_http: bool = False, ca_file: Path | None = None
) -> Pulled:
    """Pull a data artifact (files by title) or a docker-style data image (files under /data) into outdir."""
    pulled = pull(
        reference,
        outdir,
        auth=auth,
        plain_http=plain_http,
        ca_file=ca_file,
        tar_subdir=IMAGE_DATA_DIR,
        what="data image",
    )
    if not pulled.files:
        raise OciError(
            f"image {parse_reference(reference)} holds no data files (no titled layers, nothing under "
            f"/{IMAGE_DATA_DIR} in its tar layers)"
        )
    return pulled


def _read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    missing = [name for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE) if not (adapter_dir / name).is_file()]
    if missing:
        raise OciError(f"{adapter_dir} holds no complete LoRA adapter: missing {' and '.join(missing)}")
    path = adapter_dir / ADAPTER_CONFIG_FILE
    try:
        config = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise OciError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise OciError(f"{path} is not a JSON object")
    return config


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- commands -----------------------------------------------------------------------------------------------------


class _BadArguments(Exception):
    """A flag whose value cannot be used (exit code 2)."""


def add_push_adapter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--adapter-dir", type=Path, default=DEFAULT_ADAPTER_DIR, help="directory with the trained adapter"
    )
    parser.add_argument("--image", required=True, help="where to push, e.g. myregistry.azurecr.io/adapters/phi-3:v1")
    parser.add_argument(
        "--base-model", help="base model name for the kaito.sh/base-model annotation (default: from adapter_config)"
    )
    parser.add_argument(
        "--digest-file", type=Path, help="write <image>@<digest> to this file once pushed (e.g. a termination log)"
    )
    _add_registry_arguments(parser, "push secret")


def add_pull_adapter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, help="adapter image or artifact to pull")
    parser.add_argument("--output", type=Path, required=True, help="directory to write into, e.g. /mnt/adapter/<name>")
    _add_registry_arguments(parser, "image pull secret")


def add_pull_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, help="data image or artifact to pull")
    parser.add_argument("--output", type=Path, default=DEFAULT_DATA_DIR, help="directory to write into")
    _add_registry_arguments(parser, "image pull secret")


def _add_registry_arguments(parser: argparse.ArgumentParser, secret: str) -> None:
    parser.add_argument(
        "--docker-config",
        type=Path,
        action="append",
        help=f"{secret}: a .dockerconfigjson/config.json file, or a directory holding one; repeat for several "
        "(the first naming the registry wins); default: $DOCKER_CONFIG/config.json if present",
    )
    parser.add_argument("--plain-http", action="store_true", help="talk HTTP, not HTTPS, to the registry")
    parser.add_argument("--ca-file", type=Path, help="PEM CA bundle to trust for the registry's certificate")


def run_push_adapter(args: argparse.Namespace) -> int:
    def push() -> dict[str, Any]:
        reference, auth = _reference_and_auth(args)
        pushed = push_adapter(
            args.adapter_dir,
            reference,
            base_model=args.base_model,
            auth=auth,
            plain_http=args.plain_http,
            ca_file=args.ca_file,
        )
        if args.digest_file:
            _write_digest_file(args.digest_file, f"{pushed.reference}@{pushed.digest}")
        return {"image": pushed.reference, "digest": pushed.digest, "size": pushed.size}

    return _run("push-adapter", push)


def run_pull_adapter(args: argparse.Namespace) -> int:
    def pull_it() -> dict[str, Any]:
        reference, auth = _reference_and_auth(args)
        pulled = pull_adapter(reference, args.output, auth=auth, plain_http=args.plain_http, ca_file=args.ca_file)
        return _pulled_summary(reference, pulled, args.output)

    return _run("pull-adapter", pull_it)


def run_pull_data(args: argparse.Namespace) -> int:
    def pull_it() -> dict[str, Any]:
        reference, auth = _reference_and_auth(args)
        pulled = pull_data(reference, args.output, auth=auth, plain_http=args.plain_http, ca_file=args.ca_file)
        return _pulled_summary(reference, pulled, args.output)

    return _run("pull-data", pull_it)


def _run(command: str, step: Callable[[], dict[str, Any]]) -> int:
    """Run a command step: its summary as one JSON line on stdout, or one error line on stderr and an exit code."""
    try:
        summary = step()
    except _BadArguments as exc:
        _error(command, str(exc))
        return EXIT_BAD_ARGUMENTS
    except (OciError, dockerconfig.DockerConfigError) as exc:
        _error(command, str(exc))
        return EXIT_FAILED
    print(json.dumps(summary), flush=True)
    return EXIT_OK


def _error(command: str, message: str) -> None:
    print(f"kaito {command}: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _reference_and_auth(args: argparse.Namespace) -> tuple[Reference, Auth]:
    try:
        reference = Reference.parse(args.image)
    except OciError as exc:
        raise _BadArguments(f"--image: {exc}") from exc
    if args.ca_file is not None and not args.ca_file.is_file():
        raise _BadArguments(f"--ca-file: {args.ca_file} does not exist")
    try:
        return reference, dockerconfig.load_given_or_default(args.docker_config)
    except dockerconfig.DockerConfigError as exc:
        raise _BadArguments(f"--docker-config: {exc}") from exc


def _pulled_summary(reference: Reference, pulled: Pulled, outdir: Path) -> dict[str, Any]:
    base = Path(os.path.realpath(outdir))
    files = [str(path.relative_to(base)) if path.is_relative_to(base) else str(path) for path in pulled.files]
    return {"image": str(reference), "digest": pulled.digest, "files": files}


def _write_digest_file(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    except OSError as exc:
        raise OciError(f"pushed {text}, but cannot write the digest file {path}: {exc}") from exc
