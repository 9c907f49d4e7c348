"""`kaito push-model` and `kaito pull-model`: their flags, and errors naming the image in the registry's words."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from kaito.modelimages.cache import DEFAULT_CACHE, CacheError, ModelCache
from kaito.modelimages.progress import Snapshot, TransferMetrics
from kaito.modelimages.pull import DEFAULT_PARALLEL, pull_model
from kaito.modelimages.push import push_model
from kaito.oci import dockerconfig
from kaito.oci.client import Auth
from kaito.oci.errors import OciError
from kaito.oci.reference import Reference
from kaito.oci.scheme import is_loopback

EXIT_OK, EXIT_FAILED, EXIT_BAD_ARGUMENTS = 0, 1, 2
TERMINATION_MESSAGE_LIMIT = 4096  # what the kubelet keeps of a termination message


class _BadArguments(Exception):
    """A flag whose value cannot be used (exit code 2)."""


def add_push_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="model directory (safetensors, config.json, ...)")
    parser.add_argument("--image", required=True, help="where to push, e.g. myregistry.azurecr.io/models/phi-4:<rev>")
    parser.add_argument("--source-repository", default="", help="the model's hub id or URL, for the annotations")
    parser.add_argument("--revision", default="", help="the source revision (commit) the files are from")
    _add_common_arguments(parser, "push secret")


def add_pull_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, help="model image to pull")
    parser.add_argument("--output", type=Path, required=True, help="directory to link the model's files into")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"node-local cache (default {DEFAULT_CACHE})")
    parser.add_argument(
        "--cache-budget", type=int, help="bytes the cache may hold; least recently used models not in use go first"
    )
    parser.add_argument(
        "--termination-message-path",
        type=Path,
        help="on failure, also write the error here (a pod's terminationMessagePath, read into its status)",
    )
    parser.add_argument(
        "--progress-lines",
        action="store_true",
        help='print progress as JSON lines on stdout, {"progress": {"bytes", "totalBytes", "bytesPerSecond", '
        '"etaSeconds"}}, instead of logging it',
    )
    _add_common_arguments(parser, "image pull secret")


def _add_common_arguments(parser: argparse.ArgumentParser, secret: str) -> None:
    parser.add_argument(
        "--docker-config",
        type=Path,
        action="append",
        help=f"{secret}: a .dockerconfigjson/config.json file, or a directory holding one; repeat for several; "
        "default: $DOCKER_CONFIG/config.json if present",
    )
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="talk plain HTTP from the start to a registry on a loopback address (or one named by "
        "--insecure-registry); without it, such a registry gets HTTPS first, then plain HTTP if it answers TLS in HTTP",
    )
    parser.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="a registry off this machine that may be spoken to in plain HTTP when it does not speak TLS "
        "(as Docker's insecure-registries); every other one off this machine must speak TLS",
    )
    parser.add_argument("--ca-file", type=Path, help="PEM CA bundle to trust for the registry's certificate")
    parser.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, help="blobs (or byte ranges) at once")
    parser.add_argument("--metrics-port", type=int, help="serve the transfer's Prometheus metrics on this port")


def run_push_model(args: argparse.Namespace) -> int:
    def push() -> dict[str, Any]:
        reference, auth = _reference_and_auth(args)
        pushed = push_model(
            args.model,
            str(reference),
            auth=auth,
            plain_http=args.plain_http,
            insecure=args.insecure_registry,
            ca_file=args.ca_file,
            source_repository=args.source_repository,
            revision=args.revision,
            parallel=args.parallel,
            metrics=_metrics(args.metrics_port),
        )
        return {
            "image": pushed.image,
            "digest": pushed.digest,
            "uploadedBlobs": pushed.uploaded_blobs,
            "skippedBlobs": pushed.skipped_blobs,
            "uploadedBytes": pushed.uploaded_bytes,
        }

    return _run("push-model", args.image, push)


def run_pull_model(args: argparse.Namespace) -> int:
    def pull() -> dict[str, Any]:
        reference, auth = _reference_and_auth(args)
        if args.cache_budget is not None and args.cache_budget < 0:
            raise _BadArguments("--cache-budget: must be a number of bytes >= 0")
        cache = ModelCache(args.cache, budget=args.cache_budget)
        pulled = pull_model(
            str(reference),
            args.output,
            cache=cache,
            auth=auth,
            plain_http=args.plain_http,
            insecure=args.insecure_registry,
            ca_file=args.ca_file,
            parallel=args.parallel,
            metrics=_metrics(args.metrics_port),
            report=_print_progress if args.progress_lines else None,
        )
        return {
            "image": pulled.image,
            "digest": pulled.digest,
            "output": str(pulled.output),
            "downloadedBlobs": pulled.downloaded_blobs,
            "downloadedBytes": pulled.downloaded_bytes,
            "link": pulled.link,
            "architectures": list(pulled.config.architectures),
        }

    return _run("pull-model", args.image, pull, termination_message=args.termination_message_path)


def _print_progress(snapshot: Snapshot) -> None:
    print(json.dumps(snapshot.to_line()), flush=True)


def _run(
    command: str, image: str, step: Callable[[], dict[str, Any]], *, termination_message: Path | None = None
) -> int:
    """Run the step: its summary as one JSON line on stdout, or one error line naming the image on stderr.

    With `termination_message`, the error line is also written there, for the pod's status to carry it.
    """
    try:
        summary = step()
    except _BadArguments as exc:
        _error(command, str(exc), termination_message)
        return EXIT_BAD_ARGUMENTS
    except (OciError, CacheError, OSError, dockerconfig.DockerConfigError) as exc:
        verb = "push to" if command == "push-model" else "pull"
        _error(command, f"cannot {verb} {image}: {exc}", termination_message)
        return EXIT_FAILED
    print(json.dumps(summary), flush=True)
    return EXIT_OK


def _error(command: str, message: str, termination_message: Path | None = None) -> None:
    line = f"kaito {command}: {' '.join(message.split())}"
    print(line, file=sys.stderr, flush=True)
    if termination_message is not None:
        try:
            termination_message.write_text(line[:TERMINATION_MESSAGE_LIMIT])
        except OSError as exc:
            print(f"kaito {command}: cannot write {termination_message}: {exc}", file=sys.stderr, flush=True)


def _metrics(port: int | None) -> TransferMetrics | None:
    if port is None:
        return None
    registry = CollectorRegistry()
    start_http_server(port, registry=registry)
    return TransferMetrics(registry)


def _reference_and_auth(args: argparse.Namespace) -> tuple[Reference, Auth]:
    try:
        reference = Reference.parse(args.image)
    except OciError as exc:
        raise _BadArguments(f"--image: {exc}") from exc
    if args.plain_http and not is_loopback(reference.registry) and reference.registry not in args.insecure_registry:
        raise _BadArguments(
            f"--plain-http: {reference.registry} is not a loopback address; plain HTTP is only for a registry on "
            "this machine (127.0.0.0/8, ::1, localhost) or one named by --insecure-registry, anything else speaks TLS"
        )
    if args.ca_file is not None and not args.ca_file.is_file():
        raise _BadArguments(f"--ca-file: {args.ca_file} does not exist")
    if args.parallel < 1:
        raise _BadArguments("--parallel: must be at least 1")
    try:
        return reference, dockerconfig.load_given_or_default(args.docker_config)
    except dockerconfig.DockerConfigError as exc:
        raise _BadArguments(f"--docker-config: {exc}") from exc
