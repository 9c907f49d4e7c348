"""The planner: how one model runs on one instance type — parallelism, dtype, memory split, context and batch.

Rules (see DESIGN.md §4): tensor parallel must divide the attention heads (and the KV heads, hidden and
MLP widths); take the smallest tensor parallel whose KV cache is useful and spend the remaining GPUs on
data-parallel replicas; go multi-node (pipeline parallel) only when no single node can hold the model;
never choose a `max_model_len` the KV cache cannot hold; honour explicit user settings or refuse them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from kaito.presets.catalog import ModelSpec, SkuSpec
from kaito.presets.memory import GIB, GpuBudget, Layout, default_batched_tokens, default_utilization, gpu_budget
from kaito.presets.overrides import Overrides

MIN_CONTEXT = 2048  # below this a chat model is of little use; smaller only when the model itself is smaller
USEFUL_CONTEXT = 8192  # a layout is "useful" when it holds `concurrency` requests of this length (or the model's limit)
KV_SAFETY = 0.9  # plan against 90 % of the estimated KV cache
TYPICAL_REQUEST_TOKENS = 2048  # live tokens of an average request, for max_num_seqs
DEFAULT_MAX_NODES = 8  # pipeline stages over more single-GPU VMs spend more time on the network than on compute


class PlanError(Exception):
    """The model cannot run as asked; `path` names the field to change and `alternatives` SKUs that would fit."""

    def __init__(self, message: str, *, path: str = "", alternatives: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.alternatives = alternatives

    def with_alternatives(self, names: list[str]) -> PlanError:
        return PlanError(self.message, path=self.path, alternatives=tuple(names))

    def __str__(self) -> str:
        if not self.alternatives:
            return self.message
        return f"{self.message}; instance types that fit: {', '.join(self.alternatives)}"


@dataclass(frozen=True)
class Request:
    """What the user wants beyond the model: a context length, how many such requests at once, adapters."""

    context: int | None = None
    concurrency: int = 2
    adapters: int = 0
    overrides: Overrides = field(default_factory=Overrides)
    max_nodes: int = DEFAULT_MAX_NODES


@dataclass(frozen=True)
class Plan:
    model: str
    instance_type: str
    layout: Layout
    gpus_per_node: int
    dtype: str
    kv_cache_dtype: str
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_cache_tokens: int  # per replica
    memory: GpuBudget
    max_loras: int
    max_lora_rank: int
    explanation: tuple[str, ...]

    @property
    def nodes(self) -> int:
        return self.layout.nodes

    @property
    def gpus(self) -> int:
        return self.layout.gpus_per_replica * self.layout.dp

    def concurrency_at(self, context: int) -> float:
        """How many requests of `context` tokens the KV cache holds at once, across all replicas."""
        return self.kv_cache_tokens * self.layout.dp / context


def plan(model: ModelSpec, sku: SkuSpec, request: Request | None = None) -> Plan:
    """The plan for `model` on `sku`, or PlanError saying why it cannot run there."""
    request = request or Request()
    ov = request.overrides
    _check_hardware(model, sku)
    dtype = _dtype(model, sku, ov)
    util = ov.gpu_memory_utilization or default_utilization(sku.gpu_memory_gib)
    batched = ov.max_num_batched_tokens or default_batched_tokens(sku)
    lora_slots, lora_rank = _lora(model, request)
    kv_dtype = _kv_cache_dtype(model, ov)
    kv_bytes = 1 if kv_dtype.startswith("fp8") else 2
    context = _target_context(model, request)
    useful_len = min(context, request.context or USEFUL_CONTEXT)
    floor_len = ov.max_model_len or min(model.max_position_embeddings, MIN_CONTEXT)

    def budget(layout: Layout, sequences: int = request.concurrency) -> GpuBudget:
        # A hybrid's recurrent state is charged per sequence slot: the target concurrency while choosing a
        # layout and a context, then max-num-seqs.
        return gpu_budget(
            model,
            sku,
            layout,
            utilization=util,
            batched_tokens=batched,
            kv_dtype_bytes=kv_bytes,
            lora_slots=lora_slots,
            lora_rank=lora_rank,
            cuda_graphs=not ov.enforce_eager,
            sequences=sequences if model.state_bytes_per_sequence else 0,
        )

    fitting = [(lay, b) for lay in _layouts(model, sku, request) if _usable(b := budget(lay)) >= floor_len]
    if not fitting:
        raise _no_fit(model, sku, request, floor_len)
    single = [(lay, b) for lay, b in fitting if lay.nodes == 1]
    wanted = useful_len * request.concurrency
    useful = [(lay, b) for lay, b in (single or fitting) if _usable(b) >= wanted]
    if useful:
        # Fewer tensor ranks mean fewer all-reduces, but not at any price: keep at least half the best capacity.
        best = max(_total(lay, b) for lay, b in useful)
        layout, mem = next((lay, b) for lay, b in useful if _total(lay, b) * 2 >= best)
    elif single:  # the node's GPUs are paid for either way: use them all for KV cache
        layout, mem = max(single, key=lambda pair: _usable(pair[1]))
    else:  # more nodes cost more: take the fewest that fit
        layout, mem = fitting[0]
    max_len = _max_model_len(model, mem, request, context)
    keep = max_len * request.concurrency if _usable(mem) >= max_len * request.concurrency else max_len
    seqs = ov.max_num_seqs or _max_num_seqs(sku, lambda n: budget(layout, n), max_len, keep=keep)
    mem = budget(layout, seqs)
    why = _explain(model, sku, layout, mem, dtype, util, batched, max_len, seqs, request, useful=bool(useful))
    return Plan(
        model=model.name,
        instance_type=sku.name,
        layout=layout,
        gpus_per_node=sku.gpu_count,
        dtype=dtype,
        kv_cache_dtype=kv_dtype,
        gpu_memory_utilization=util,
        max_model_len=max_len,
        max_num_seqs=seqs,
        max_num_batched_tokens=batched,
        kv_cache_tokens=mem.kv_tokens,
        memory=mem,
        max_loras=lora_slots,
        max_lora_rank=lora_rank if lora_slots else 0,
        explanation=tuple(why),
    )


def _usable(mem: GpuBudget) -> int:
    return int(mem.kv_tokens * KV_SAFETY)


def _total(layout: Layout, mem: GpuBudget) -> int:
    """KV tokens across all data-parallel replicas: what the node's GPUs hold together."""
    return mem.kv_tokens * layout.dp


def _check_hardware(model: ModelSpec, sku: SkuSpec) -> None:
    if model.deprecated:
        raise PlanError(f"model {model.name} is deprecated: {model.deprecated}", path="inference.preset.name")
    cc = sku.compute_capability
    req = model.requires
    if req.kernels and sku.gpu_vendor != "nvidia":
        raise PlanError(
            f"{model.name} needs CUDA kernels ({', '.join(req.kernels)}); {sku.name} has {sku.gpu_model}",
            path="resource.instanceType",
        )
    need = model.min_compute_capability
    if need is not None and sku.gpu_vendor == "nvidia" and (cc is None or cc < need):
        what = [f"{model.quantization} weights"] if model.quantization else []
        why = ", ".join(what + req.features())
        raise PlanError(
            f"{model.name} needs compute capability {need}+" + (f" ({why})" if why else "") + "; "
            f"{sku.name} has {sku.gpu_model} (compute capability {cc})",
            path="resource.instanceType",
        )


def _kv_cache_dtype(model: ModelSpec, ov: Overrides) -> str:
    required = model.requires.kv_cache_dtype
    if required and ov.kv_cache_dtype and not ov.kv_cache_dtype.startswith(required):
        raise PlanError(
            f"{model.name} supports only a {required} KV cache, not {ov.kv_cache_dtype}",
            path="inference_config.yaml: vllm.kv-cache-dtype",
        )
    return ov.kv_cache_dtype or required or "auto"


def _dtype(model: ModelSpec, sku: SkuSpec, ov: Overrides) -> str:
    cc = sku.compute_capability
    no_bf16 = sku.gpu_vendor == "nvidia" and cc is not None and cc < 8.0
    if ov.dtype and ov.dtype not in ("auto",):
        if ov.dtype == "bfloat16" and no_bf16:
            raise PlanError(
                f"dtype bfloat16 needs compute capability 8.0+ but {sku.gpu_model} has {cc}; use float16",
                path="inference_config.yaml: vllm.dtype",
            )
        return ov.dtype
    if model.quantization:
        return "auto"
    if model.dtype == "bfloat16" and no_bf16:
        return "float16"
    return model.dtype


def _lora(model: ModelSpec, request: Request) -> tuple[int, int]:
    ov = request.overrides
    slots = ov.max_loras if ov.max_loras is not None else request.adapters
    if slots and not model.supports_lora:
        raise PlanError(f"{model.name} does not support LoRA adapters", path="inference.adapters")
    return slots, ov.max_lora_rank or 16


def _target_context(model: ModelSpec, request: Request) -> int:
    ov = request.overrides
    limit = model.max_position_embeddings
    if ov.max_model_len is not None and ov.max_model_len > limit:
        raise PlanError(
            f"max-model-len {ov.max_model_len} exceeds {model.name}'s limit of {limit} tokens",
            path="inference_config.yaml: vllm.max-model-len",
        )
    return ov.max_model_len or min(limit, request.context or limit)


def _divides(width: int | None, tp: int) -> bool:
    return width is None or width % tp == 0


def valid_tensor_parallel(model: ModelSpec, tp: int) -> bool:
    """vLLM shards heads, KV heads (or replicates them), the hidden size and the MLP width evenly."""
    if tp == 1:
        return True
    if not model.supports_tensor_parallel:
        return False
    kv_ok = model.kv_heads % tp == 0 or tp % model.kv_heads == 0
    widths_ok = _divides(model.hidden_size, tp) and _divides(model.intermediate_size, tp)
    return model.attention_heads % tp == 0 and kv_ok and widths_ok


def _layouts(model: ModelSpec, sku: SkuSpec, request: Request) -> Iterator[Layout]:
    """Candidates, cheapest first: one node with growing tensor parallel, then more nodes with pipeline stages."""
    ov = request.overrides
    gpus = sku.gpu_count
    choices = [tp for tp in range(1, gpus + 1) if gpus % tp == 0 and valid_tensor_parallel(model, tp)]
    if ov.tensor_parallel_size is not None:
        _check_tp_override(model, sku, ov.tensor_parallel_size)
        choices = [ov.tensor_parallel_size]
    if ov.pipeline_parallel_size is None or ov.pipeline_parallel_size == 1:
        for tp in choices:
            yield Layout(tp=tp, pp=1, dp=gpus // tp, nodes=1)
    if not model.supports_tensor_parallel or not choices:
        return
    tp = max(choices)
    stages = [ov.pipeline_parallel_size] if ov.pipeline_parallel_size else range(2, request.max_nodes + 1)
    for nodes in stages:
        if nodes <= model.layers:
            yield Layout(tp=tp, pp=nodes, dp=1, nodes=nodes)


def _check_tp_override(model: ModelSpec, sku: SkuSpec, tp: int) -> None:
    path = "inference_config.yaml: vllm.tensor-parallel-size"
    if sku.gpu_count % tp != 0:
        raise PlanError(f"{tp} does not divide the {sku.gpu_count} GPUs of {sku.name}", path=path)
    if not valid_tensor_parallel(model, tp):
        allowed = [d for d in range(1, sku.gpu_count + 1) if sku.gpu_count % d == 0 and valid_tensor_parallel(model, d)]
        raise PlanError(
            f"{tp} does not evenly split {model.name} ({model.attention_heads} attention heads, "
            f"{model.kv_heads} KV heads); allowed here: {', '.join(map(str, allowed))}",
            path=path,
        )


def _max_model_len(model: ModelSpec, mem: GpuBudget, request: Request, context: int) -> int:
    usable = _usable(mem)
    if request.overrides.max_model_len is not None:
        return request.overrides.max_model_len
    if usable >= context * request.concurrency:
        return context
    # Longest context held `concurrency` times, in whole 256-token steps, never below the floor.
    held = usable // request.concurrency // 256 * 256
    floor = min(model.max_position_embeddings, MIN_CONTEXT)
    return max(floor, min(context, held))


def _max_num_seqs(sku: SkuSpec, budget: Callable[[int], GpuBudget], max_len: int, *, keep: int) -> int:
    """As many typical requests as the KV cache holds, once every one of them is charged its recurrent state.

    `budget(n)` is the GPU's budget with `n` sequence slots charged (the same for every `n` unless the model is
    a hybrid); the slots must also leave `keep` tokens, what max-model-len was chosen to hold.
    """
    ceiling = 1024 if sku.gpu_memory_gib >= 70 and "A100" not in sku.gpu_model else 256
    typical = min(max_len, TYPICAL_REQUEST_TOKENS)

    def fits(seqs: int) -> bool:
        usable = _usable(budget(seqs))
        return usable >= seqs * typical and usable >= keep

    low, high = 1, max(1, min(ceiling, _usable(budget(0)) // typical))
    while low < high:  # the most slots that fit: fewer slots always leave more room
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _no_fit(model: ModelSpec, sku: SkuSpec, request: Request, floor_len: int) -> PlanError:
    need = model.weight_bytes * 1.02 / GIB
    have = sku.gpu_memory_gib * sku.gpu_count
    if request.overrides.max_model_len:
        what = f"{floor_len} tokens of context (vllm.max-model-len)"
    else:
        what = f"a {floor_len}-token context"
    return PlanError(
        f"{model.name} ({need:.1f} GiB of weights) does not fit {sku.name} ({sku.gpu_count}x {sku.gpu_model}, "
        f"{have:.1f} GiB usable by CUDA) with room for {what}",
        path="resource.instanceType",
    )


def _explain(
    model: ModelSpec,
    sku: SkuSpec,
    layout: Layout,
    mem: GpuBudget,
    dtype: str,
    util: float,
    batched: int,
    max_len: int,
    seqs: int,
    request: Request,
    *,
    useful: bool,
) -> list[str]:
    ov = request.overrides

    def gib(value: int) -> str:
        return f"{value / GIB:.2f} GiB"

    lines = [
        f"model {model.name}: {model.weight_bytes / GIB:.2f} GiB of weights, {model.layers} layers, "
        f"{model.attention_heads} attention heads, {model.kv_heads} KV heads, context limit "
        f"{model.max_position_embeddings}",
        f"instance {sku.name}: {sku.gpu_count}x {sku.gpu_model}, {sku.gpu_memory_gib:.2f} GiB visible to CUDA per GPU "
        f"(advertised {sku.marketing_memory_gib:g}), compute capability {sku.compute_capability}",
        _layout_line(model, sku, layout, useful=useful),
        f"dtype={dtype}: "
        + (
            "set by the user"
            if ov.dtype
            else "bfloat16 needs compute capability 8.0+, so float16"
            if dtype == "float16" and model.dtype == "bfloat16"
            else "the checkpoint's own"
        ),
        f"gpu-memory-utilization={util}: "
        + (
            "set by the user"
            if ov.gpu_memory_utilization
            else f"keeps 1 GiB of the {sku.gpu_memory_gib:.2f} GiB outside vLLM for the CUDA context"
        ),
        f"per GPU: budget {gib(mem.budget)} = weights {gib(mem.weights)} + activations {gib(mem.activation)} "
        f"({batched} batched tokens) + runtime {gib(mem.non_torch + mem.cuda_graphs)}"
        + (f" + LoRA slots {gib(mem.lora)}" if mem.lora else "")
        + f" + KV cache {gib(mem.kv_bytes)}"
        + (f" (of which recurrent state {gib(mem.state)})" if mem.state else ""),
        f"KV cache: {mem.kv_bytes_per_token / 1024:.0f} KiB per token per GPU, {mem.kv_tokens} tokens per replica",
        f"max-model-len={max_len}: "
        + (
            "set by the user"
            if ov.max_model_len
            else f"holds {_usable(mem) / max_len:.1f} requests of full length (target {request.concurrency})"
        ),
        f"max-num-seqs={seqs}: "
        + (
            "set by the user"
            if ov.max_num_seqs
            else f"KV tokens / {min(max_len, TYPICAL_REQUEST_TOKENS)}-token requests"
            + (", each also charged its recurrent state" if mem.state else "")
        ),
    ]
    if mem.state:
        lines.append(
            f"recurrent state (Mamba / linear-attention layers): {mem.state_bytes_per_sequence / 2**20:.1f} MiB per "
            f"sequence per GPU, charged for {mem.sequences} sequence(s)"
        )
    if mem.lora:
        lines.append(f"LoRA: {request.adapters or ov.max_loras} slot(s) at rank {ov.max_lora_rank or 16}")
    return lines


def _layout_line(model: ModelSpec, sku: SkuSpec, layout: Layout, *, useful: bool) -> str:
    if layout.nodes > 1:
        return (
            f"{layout.nodes} nodes, pipeline-parallel={layout.pp} x tensor-parallel={layout.tp}: "
            f"one node cannot hold the weights and a useful KV cache"
        )
    reason = (
        "the smallest that leaves a useful KV cache and at least half the node's best total"
        if useful
        else "the most KV cache one node offers"
    )
    split = f"tensor-parallel={layout.tp} ({reason})"
    if layout.dp > 1:
        split += f", data-parallel={layout.dp} replicas on the other GPUs"
    return f"1 node, {split}"
