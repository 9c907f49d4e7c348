"""Per-GPU memory arithmetic for one vLLM layout: what the weights, activations, LoRA slots and KV cache take.

The model follows vLLM's own budgeting (`gpu_worker.determine_available_memory`): the engine may use
`gpu_memory_utilization x total`; weights, the profiled activation peak, non-torch allocations and CUDA
graphs come off the top, and what is left becomes KV cache. Every estimate errs on the side of less KV,
because a `max_model_len` the cache cannot hold stops vLLM from starting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kaito.presets.catalog import ModelSpec, SkuSpec

GIB = 2**30
RESERVE_GIB = 1.0  # left outside vLLM's budget for the CUDA context, the driver and fragmentation
MAX_UTILIZATION = 0.95
WEIGHT_LOAD_FACTOR = 1.02  # weights load at ~102 % of their safetensors size
NON_TORCH_GIB = 0.6  # CUDA context, cuBLAS workspaces
NCCL_GIB = 0.4  # extra buffers once a replica spans several GPUs
CUDA_GRAPHS_GIB = 0.5
MIN_ACTIVATION_GIB = 0.5
DEFAULT_VOCAB = 128_256  # assumed when the catalog lacks a vocabulary size (a large one, to stay safe)
BLOCK_SIZE = 16


def default_utilization(visible_gib: float) -> float:
    """Leave a fixed 1 GiB outside vLLM whatever the GPU size (upstream uses one 0.84 for every GPU)."""
    return min(MAX_UTILIZATION, math.floor((visible_gib - RESERVE_GIB) / visible_gib * 100) / 100)


def default_batched_tokens(sku: SkuSpec) -> int:
    """vLLM's own default: 8192 on GPUs of 70 GiB or more except A100, else 2048."""
    return 8192 if sku.gpu_memory_gib >= 70 and "A100" not in sku.gpu_model else 2048


def kv_bytes_per_token_per_gpu(model: ModelSpec, *, tp: int, pp: int, kv_dtype_bytes: int = 2) -> int:
    """KV bytes one token costs on one GPU: layers split by pipeline stages, KV heads by tensor ranks.

    A hybrid's attention layers may bunch into one stage, so a stage is charged with every attention
    layer it could hold: as many as the stage has layers, at most all of the model's.
    """
    layers = min(model.kv_layers, math.ceil(model.layers / pp))
    if model.kv_layout == "mla":
        # MLA keeps one compressed latent per layer, replicated on every tensor rank.
        latent = (model.kv_lora_rank or 512) + (model.qk_rope_head_dim or 64)
        return layers * latent * kv_dtype_bytes
    kv_heads_per_rank = max(1, model.kv_heads // tp)
    return 2 * layers * kv_heads_per_rank * model.head_dim * kv_dtype_bytes


def state_bytes_per_sequence_per_gpu(model: ModelSpec, *, tp: int) -> int:
    """A hybrid's recurrent state one sequence keeps on one GPU; 0 for a model without one.

    vLLM splits the state by heads and channels over the tensor ranks. Each pipeline stage is charged the whole
    state (errs high); the few Mamba-2 groups vLLM replicates when n_groups does not divide the ranks are not.
    """
    return math.ceil((model.state_bytes_per_sequence or 0) / tp)


def lora_bytes_per_gpu(model: ModelSpec, *, tp: int, pp: int, slots: int, rank: int) -> int:
    """GPU slots vLLM pre-allocates for adapters on all seven linear modules: A and B matrices at `rank`."""
    if slots <= 0:
        return 0
    hidden = model.hidden_size
    inter = model.intermediate_size or int(hidden * 3.5)
    q_out = model.attention_heads * model.head_dim
    kv_out = model.kv_heads * model.head_dim
    per_layer = (hidden + q_out) + 2 * (hidden + kv_out) + (q_out + hidden) + 2 * (hidden + inter) + (inter + hidden)
    layers = math.ceil(model.layers / pp)
    return math.ceil(slots * rank * per_layer * layers * 2 / tp)


def activation_bytes(model: ModelSpec, *, batched_tokens: int, tp: int) -> int:
    """Profiling peak: full-vocabulary fp32 logits plus per-rank hidden activations, for one token budget."""
    vocab = model.vocab_size or DEFAULT_VOCAB
    estimate = batched_tokens * (vocab * 4 + model.hidden_size * 24 // tp)
    return max(estimate, int(MIN_ACTIVATION_GIB * GIB))


@dataclass(frozen=True)
class GpuBudget:
    """One GPU of one replica, in bytes."""

    visible: int
    utilization: float
    weights: int
    activation: int
    non_torch: int
    cuda_graphs: int
    lora: int
    kv_bytes_per_token: int
    # A hybrid's recurrent state (Mamba / linear attention) on this GPU: bytes per sequence, and the sequence slots
    # it is charged for (vLLM keeps one state per running sequence, up to max-num-seqs, out of the same pool).
    state_bytes_per_sequence: int = 0
    sequences: int = 0

    @property
    def budget(self) -> int:
        return int(self.visible * self.utilization)

    @property
    def state(self) -> int:
        return self.state_bytes_per_sequence * self.sequences

    @property
    def kv_bytes(self) -> int:
        """vLLM's KV-cache pool: attention blocks and, for a hybrid, every sequence's recurrent state."""
        return self.budget - self.weights - self.activation - self.non_torch - self.cuda_graphs - self.lora

    @property
    def kv_tokens(self) -> int:
        """Tokens the KV cache holds once the sequences' state is set aside (per replica: every GPU of a replica
        holds its share of each token)."""
        room = self.kv_bytes - self.state
        if room <= 0:
            return 0
        return room // self.kv_bytes_per_token // BLOCK_SIZE * BLOCK_SIZE


@dataclass(frozen=True)
class Layout:
    tp: int
    pp: int
    dp: int
    nodes: int

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp


def gpu_budget(
    model: ModelSpec,
    sku: SkuSpec,
    layout: Layout,
    *,
    utilization: float,
    batched_tokens: int,
    kv_dtype_bytes: int = 2,
    lora_slots: int = 0,
    lora_rank: int = 16,
    cuda_graphs: bool = True,
    sequences: int = 0,
) -> GpuBudget:
    tp, pp = layout.tp, layout.pp
    shards = tp * pp
    return GpuBudget(
        visible=int(sku.gpu_memory_gib * GIB),
        utilization=utilization,
        weights=math.ceil(model.weight_bytes * WEIGHT_LOAD_FACTOR / shards),
        activation=activation_bytes(model, batched_tokens=batched_tokens, tp=tp),
        non_torch=int((NON_TORCH_GIB + (NCCL_GIB if shards > 1 else 0.0)) * GIB),
        cuda_graphs=int(CUDA_GRAPHS_GIB * GIB) if cuda_graphs else 0,
        lora=lora_bytes_per_gpu(model, tp=tp, pp=pp, slots=lora_slots, rank=lora_rank),
        kv_bytes_per_token=kv_bytes_per_token_per_gpu(model, tp=tp, pp=pp, kv_dtype_bytes=kv_dtype_bytes),
        state_bytes_per_sequence=state_bytes_per_sequence_per_gpu(model, tp=tp),
        sequences=sequences,
    )


def flat_overhead_kv(
    model: ModelSpec,
    sku: SkuSpec,
    *,
    tp: int,
    utilization: float,
    overhead_gib: float,
    load_factor: float = WEIGHT_LOAD_FACTOR,
) -> GpuBudget:
    """The simpler textbook estimate (one flat per-GPU overhead), used to check worked examples."""
    return GpuBudget(
        visible=int(sku.gpu_memory_gib * GIB),
        utilization=utilization,
        weights=math.ceil(model.weight_bytes * load_factor / tp),
        activation=int(overhead_gib * GIB),
        non_torch=0,
        cuda_graphs=0,
        lora=0,
        kv_bytes_per_token=kv_bytes_per_token_per_gpu(model, tp=tp, pp=1),
    )
