"""`kaito serve`: the inference pod's entry point. Engine config file and flags in, OpenAI-compatible server out.

The operator mounts the engine config (`kaito.api.engine.EngineConfig`: the model, the plan's numbers, the adapters);
flags given on the command line override it. The server follows the file's adapters while it runs (pulled, loaded,
replaced and unloaded live); every other setting is read once, at start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from kaito.api.engine import ENGINES, EngineConfig, EngineConfigError
from kaito.api.engine_report import Refusal
from kaito.inference.app import create_app
from kaito.inference.config_follower import ConfigFile, ConfigFollower
from kaito.inference.engine import Engine
from kaito.inference.live_adapters import AdapterManager

log = logging.getLogger("kaito.serve")
DEFAULT_PORT = 5000
DEFAULT_OWN_PORT = 5001  # with --openai-direct under vLLM: kaito's own routes, while vLLM has the public port
DEFAULT_ADAPTERS_DIR = "/mnt/adapter"
PLAN_FLAGS = (  # `kaito serve` flags that override the engine config's plan for vLLM
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "dtype",
    "gpu_memory_utilization",
    "max_model_len",
    "max_num_seqs",
    "max_lora_rank",
    "max_loras",
)
REFUSED = 3  # the exit code when the engine refuses to start with these settings
SHUTDOWN_TIMEOUT = 20.0  # in-flight requests get this long after SIGTERM; Kubernetes allows 30 s by default


class ServeError(Exception):
    """A configuration problem worth one line on stderr and exit code 2, not a traceback."""


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """The settings after merging the config file with the flags (flags win)."""

    engine: str
    model: str
    served_model_name: str
    host: str
    port: int
    adapters_dir: str
    max_model_len: int | None
    max_num_seqs: int | None
    max_queue: int
    dtype: str | None
    engine_url: str | None = None
    openai_direct: bool = False
    own_port: int = DEFAULT_OWN_PORT
    kv_cache_memory: int | None = None


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", help="engine config YAML (the ConfigMap the operator mounts); flags override its values")
    add("--model", help="local model directory or Hugging Face repo id (default: the config's `model`)")
    add("--served-model-name", help="the name clients ask for (default: the config's `servedModelName`, else --model)")
    add("--host", default="0.0.0.0")
    add("--port", type=int, help=f"default: the config's `port`, else {DEFAULT_PORT}; 0 picks a free port")
    add("--engine", choices=ENGINES, help="auto (default): vllm if installed and a GPU is visible, else transformers")
    for flag in ("--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size"):
        add(flag, type=int, help="vLLM only")
    add("--dtype", help="auto, float16, bfloat16, float32")
    add("--gpu-memory-utilization", type=float, help="vLLM only")
    add("--max-model-len", type=int, help="context length; longer prompts are refused with 400")
    add("--max-num-seqs", type=int, help="sequences generated at once (transformers: concurrent generations)")
    add("--enable-lora", action="store_true", help="vLLM only: allow LoRA adapters")
    add("--max-loras", type=int, help="vLLM only")
    add("--max-lora-rank", type=int, help="vLLM only")
    add("--adapters-dir", help=f"LoRA adapters, a directory each (default: the config's, else {DEFAULT_ADAPTERS_DIR})")
    add("--leader-address", help="multi-node: the address of pod 0, passed to the vLLM engine")
    add(
        "--engine-url",
        help="vLLM only: relay to the vLLM OpenAI server already running at this URL instead of starting one",
    )
    add("--max-queue", type=int, default=32, help="requests waiting beyond the running ones before 429")
    add(
        "--openai-direct",
        action="store_true",
        help="vLLM only: vLLM itself listens on --host/--port, so clients reach its OpenAI routes with no relay in "
        "between; this server's own routes (/health, /metrics, /chat, and a relayed /v1) move to --own-port",
    )
    add("--own-port", type=int, default=DEFAULT_OWN_PORT, help="this server's port under --openai-direct")
    add(
        "--termination-message-path",
        help="when the engine refuses to start (KV cache too small, out of memory): write its reason and numbers here "
        f"as JSON (a pod's terminationMessagePath) and exit {REFUSED}",
    )
    add(
        "--kv-cache-memory",
        type=int,
        help="transformers only: bytes allowed for KV caches (default: the config's `kvCacheMemory`, else half the "
        "device's free memory after loading)",
    )


def load_config(path: str | None) -> EngineConfig:
    """The engine config file, read once; without one, everything comes from the flags."""
    if not path:
        return EngineConfig()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ServeError(f"cannot read --config {path}: {exc}") from None
    try:
        return EngineConfig.from_yaml(text, source=f"--config {path}")
    except EngineConfigError as exc:
        raise ServeError(str(exc)) from None


def adapter_follower(
    options: ServeOptions, config: EngineConfig, engine: Engine, *, path: str | None
) -> ConfigFollower:
    """What keeps the engine's adapters at what the config file lists (pulled into adaptersDir)."""
    manager = AdapterManager(
        engine,
        adapters_dir=Path(options.adapters_dir),
        base_names=[options.served_model_name, options.model],
        max_loras=config.max_loras,
        max_rank=config.max_lora_rank,
    )
    manager.follow(config)
    config_file = ConfigFile(Path(path), text=Path(path).read_text()) if path else None
    return ConfigFollower(manager, config_file)


def resolve(args: argparse.Namespace, config: EngineConfig) -> ServeOptions:
    model = args.model or config.model
    if not model:
        raise ServeError("no model: pass --model or set `model` in the --config file")
    return ServeOptions(
        engine=args.engine or config.engine,
        model=model,
        served_model_name=args.served_model_name or config.served_model_name or model,
        host=args.host,
        port=args.port if args.port is not None else config.port or DEFAULT_PORT,
        adapters_dir=args.adapters_dir or config.adapters_dir or DEFAULT_ADAPTERS_DIR,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs,
        max_queue=args.max_queue,
        dtype=args.dtype,
        engine_url=args.engine_url,
        openai_direct=args.openai_direct,
        own_port=args.own_port,
        kv_cache_memory=args.kv_cache_memory if args.kv_cache_memory is not None else config.kv_cache_memory,
    )


def vllm_config(options: ServeOptions, config: EngineConfig, args: argparse.Namespace) -> EngineConfig:
    """The engine config as vLLM runs it: the resolved model and adapters, and the plan with flags over it."""
    update: dict[str, object] = {name: getattr(args, name) for name in PLAN_FLAGS if getattr(args, name) is not None}
    if args.enable_lora:
        update["enable_lora"] = True
    update.update(model=options.model, served_model_name=options.served_model_name, adapters_dir=options.adapters_dir)
    return config.model_copy(update=update)


def choose_engine(requested: str) -> str:
    if requested not in ENGINES:
        raise ServeError(f"unknown engine {requested!r}; expected one of {', '.join(ENGINES)}")
    if requested != "auto":
        return requested
    # The vLLM engine runs vLLM in a child process, so finding the package is enough; importing it here
    # would cost seconds and pull CUDA into this process for nothing.
    if importlib.util.find_spec("vllm") is None:
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


def build_engine(options: ServeOptions, config: EngineConfig, args: argparse.Namespace) -> Engine:
    if options.engine_url:
        if options.engine not in ("auto", "vllm"):
            raise ServeError(f"--engine-url relays to vLLM; it cannot be used with --engine {options.engine}")
        return _vllm_engine(vllm_config(options, config, args), upstream=options.engine_url)
    kind = choose_engine(options.engine)
    if kind == "vllm" and options.openai_direct:
        if not options.port or options.port == options.own_port:
            raise ServeError("--openai-direct gives vLLM --port: it needs a fixed port other than --own-port")
        return _vllm_engine(vllm_config(options, config, args), host=options.host, port=options.port)
    if kind == "vllm":
        return _vllm_engine(vllm_config(options, config, args))
    return _transformers_engine(options, config)


def own_port(options: ServeOptions, engine: Engine) -> int:
    """Where this server listens: the public port, unless a vLLM child it started has it (--openai-direct)."""
    direct = options.openai_direct and engine.name == "vllm" and not options.engine_url
    return options.own_port if direct else options.port


def _transformers_engine(options: ServeOptions, config: EngineConfig) -> Engine:
    """The plan's numbers size vLLM on the planned GPU; here the flags set the context, batch and dtype, and the
    plan's max-model-len only bounds the model's own context (a re-planned, shorter one takes effect)."""
    import torch

    from kaito.inference.engines.transformers_engine import TransformersEngine

    adapters = Path(options.adapters_dir)
    return TransformersEngine(
        options.model,
        served_model_name=options.served_model_name,
        max_model_len=options.max_model_len,
        adapters_dir=adapters if adapters.is_dir() else None,
        adapter_strengths=config.adapter_strengths,
        max_concurrency=options.max_num_seqs or 1,
        max_queue=options.max_queue,
        dtype=options.dtype or "auto",
        device="cuda" if torch.cuda.is_available() else "cpu",
        kv_cache_memory=options.kv_cache_memory,
        context_cap=config.max_model_len,
    )


def _vllm_engine(
    config: EngineConfig, *, upstream: str | None = None, host: str | None = None, port: int | None = None
) -> Engine:
    try:
        from kaito.inference.engines.vllm_engine import VllmEngine
    except ImportError as exc:
        raise ServeError(f"the vLLM engine is not available in this build: {exc}") from None
    if host is not None and port is not None:
        return VllmEngine(config, host=host, port=port)
    return VllmEngine(config, upstream=upstream)


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, *, host: str, port: int, shutdown_timeout: float = SHUTDOWN_TIMEOUT
) -> AsyncIterator[int]:
    """Serve `app` until the block ends; yields the bound port. Handlers are cancelled when their client leaves,
    which is what stops a generation nobody is waiting for."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def run_serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        options = resolve(args, config)
        engine = build_engine(options, config, args)
    except (ServeError, ImportError, ValueError) as exc:  # engine constructors reject bad settings with ValueError
        print(f"kaito serve: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    refused: list[Refusal] = []

    def on_refusal(refusal: Refusal) -> None:
        refused.append(refusal)
        stop.set()

    try:
        follower = adapter_follower(options, config, engine, path=args.config)
    except OSError as exc:
        print(f"kaito serve: cannot read --config {args.config}: {exc}", file=sys.stderr)
        return 2
    app = create_app(engine, max_model_len=options.max_model_len, on_refusal=on_refusal, follower=follower)
    listen = own_port(options, engine)
    try:
        async with serving(app, host=options.host, port=listen) as port:
            where = f"http://{options.host}:{port}"
            print(f"kaito serve: {engine.name} engine, model {options.served_model_name}, on {where}", flush=True)
            if listen != options.port:
                print(f"kaito serve: vLLM serves the OpenAI routes on {options.host}:{options.port}", flush=True)
            await stop.wait()
    except OSError as exc:
        print(f"kaito serve: cannot listen on {options.host}:{listen}: {exc}", file=sys.stderr)
        return 1
    if refused:
        return report_refusal(refused[0], path=args.termination_message_path)
    log.info("stopped")
    return 0


def report_refusal(refusal: Refusal, *, path: str | None) -> int:
    """The engine's refusal on stderr and, with `path`, as the termination message the operator reads."""
    print(f"kaito serve: the engine refused to start ({refusal.reason}): {refusal.message}", file=sys.stderr)
    if path:
        try:
            Path(path).write_text(refusal.to_json())
        except OSError as exc:
            print(f"kaito serve: cannot write the termination message to {path}: {exc}", file=sys.stderr)
    return REFUSED
