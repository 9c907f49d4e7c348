"""Every catalog model x SKU: our plan against upstream KAITO's sizing formula.

Upstream, as of 056b8280: nodes from `avail = 0.84 x advertised GiB per GPU`, `fixed = 2.3 GiB + 2048 x
bytes-per-token / GPUs`, `minGPUs = floor(weights x 1.02 / ((avail - fixed) / 1.05)) + 1`; then vLLM is
launched with `--gpu-memory-utilization=0.84` (0.82 on A10), `--max-model-len=auto`, tensor parallel over
every GPU of the node (or data parallel when weights x 2 x GPUs < node memory), pipeline parallel across
nodes; SKUs below compute capability 8.0 are no longer in its tables. What vLLM then has for KV cache is
estimated with the same memory model as ours, so the comparison is of choices, not of estimators.

Run: `python benchmarks/sizing_grid.py [--cloud azure] [--csv out.csv]`.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from dataclasses import dataclass

from kaito.presets.catalog import Catalog, ModelSpec, SkuSpec
from kaito.presets.memory import GIB, Layout, default_batched_tokens, gpu_budget
from kaito.presets.sizing import PlanError, plan, valid_tensor_parallel

CONTEXT = 4096


@dataclass
class Outcome:
    gpus: int = 0
    kv_tokens: int = 0  # across replicas
    note: str = ""

    @property
    def serves(self) -> bool:
        return self.gpus > 0 and not self.note

    def concurrency(self) -> float:
        return self.kv_tokens / CONTEXT if self.serves else 0.0


def upstream(model: ModelSpec, sku: SkuSpec) -> Outcome:
    if sku.gpu_vendor != "nvidia" or (sku.compute_capability or 0) < 8.0:
        return Outcome(note="refused: SKU not in upstream's table")
    if model.deprecated:
        return Outcome(note="refused: deprecated")
    per_gpu = sku.marketing_memory_gib
    avail = per_gpu * 0.84
    fixed = 2.3 + 2048 * model.kv_bytes_per_token() / GIB / sku.gpu_count
    if avail <= fixed:
        return Outcome(note="refused: no room for a 2048-token context")
    min_gpus = math.floor(model.weight_bytes * 1.02 / GIB / ((avail - fixed) / 1.05)) + 1
    nodes = math.ceil(min_gpus / sku.gpu_count)
    gpus = sku.gpu_count
    data_parallel = nodes == 1 and gpus > 1 and model.weight_bytes / GIB * 2 * gpus < per_gpu * gpus
    tp, dp = (1, gpus) if data_parallel else (gpus, 1)
    if not valid_tensor_parallel(model, tp):
        return Outcome(
            gpus=gpus * nodes, note=f"crashes: tensor parallel {tp} does not split {model.attention_heads} heads"
        )
    util = 0.82 if "A10" in sku.gpu_model and "A100" not in sku.gpu_model else 0.84
    layout = Layout(tp=tp, pp=nodes, dp=dp, nodes=nodes)
    mem = gpu_budget(model, sku, layout, utilization=util, batched_tokens=default_batched_tokens(sku))
    if mem.kv_tokens <= 0:
        return Outcome(gpus=gpus * nodes, note="crashes: no memory left for the KV cache")
    if mem.kv_tokens < min(model.max_position_embeddings, 2048):
        return Outcome(gpus=gpus * nodes, note="crashes: KV cache below the 2048-token context it was sized for")
    return Outcome(gpus=gpus * nodes, kv_tokens=mem.kv_tokens * dp)


def ours(model: ModelSpec, sku: SkuSpec) -> Outcome:
    try:
        p = plan(model, sku)
    except PlanError as exc:
        return Outcome(note=f"refused: {exc.message[:60]}")
    return Outcome(gpus=p.gpus * (p.nodes if p.layout.pp == 1 else 1), kv_tokens=p.kv_cache_tokens * p.layout.dp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cloud", choices=["azure", "aws", "arc", "all"], default="all")
    parser.add_argument("--csv", help="also write every row to this CSV file")
    parser.add_argument("--quiet", action="store_true", help="totals only")
    args = parser.parse_args()
    catalog = Catalog.builtin()
    skus = [s for s in catalog.skus.values() if args.cloud == "all" or s.cloud == args.cloud]
    rows = []
    for model in sorted(catalog.models.values(), key=lambda m: m.name):
        for sku in sorted(skus, key=lambda s: s.name):
            rows.append((model, sku, ours(model, sku), upstream(model, sku)))
    writer = csv.writer(open(args.csv, "w", newline="")) if args.csv else None  # noqa: SIM115
    header = [
        "model",
        "sku",
        "our_gpus",
        "our_kv_tokens",
        "our_conc_4k",
        "up_gpus",
        "up_kv_tokens",
        "up_conc_4k",
        "up_note",
    ]
    if writer:
        writer.writerow(header)
    if not args.quiet:
        print(f"{'model':32} {'sku':28} {'ours gpus/kv/conc@4K':>26}   {'upstream gpus/kv/conc@4K':>26}  note")
    for model, sku, mine, theirs in rows:
        cells = [model.name, sku.name, mine.gpus, mine.kv_tokens, f"{mine.concurrency():.1f}"]
        cells += [theirs.gpus, theirs.kv_tokens, f"{theirs.concurrency():.1f}", theirs.note]
        if writer:
            writer.writerow(cells)
        if not args.quiet and (mine.serves or theirs.serves):
            ours_text = f"{mine.gpus}/{mine.kv_tokens}/{mine.concurrency():.1f}" if mine.serves else mine.note[:26]
            theirs_text = f"{theirs.gpus}/{theirs.kv_tokens}/{theirs.concurrency():.1f}" if theirs.serves else "-"
            print(f"{model.name:32} {sku.name:28} {ours_text:>26}   {theirs_text:>26}  {theirs.note}")
    both = [(m, t) for _, _, m, t in rows if m.serves and t.serves]
    only_ours = [(mo, s, t) for mo, s, m, t in rows if m.serves and not t.serves]
    crashes = [r for r in only_ours if r[2].note.startswith("crashes")]
    ratios = [m.kv_tokens / t.kv_tokens for m, t in both if t.kv_tokens]
    per_gpu = [(m.kv_tokens / m.gpus) / (t.kv_tokens / t.gpus) for m, t in both if t.kv_tokens]
    fewer_gpus = sum(1 for m, t in both if m.gpus < t.gpus)
    print()
    served_ours, served_theirs = sum(1 for r in rows if r[2].serves), sum(1 for r in rows if r[3].serves)
    print(f"pairs: {len(rows)}; we serve {served_ours}, upstream serves {served_theirs}")
    print(f"we serve, upstream refuses: {len(only_ours) - len(crashes)}; we serve, upstream crashes: {len(crashes)}")
    print(f"upstream serves, we refuse: {sum(1 for r in rows if r[3].serves and not r[2].serves)}")
    if ratios:
        print(
            f"KV capacity ours/upstream where both serve ({len(ratios)} pairs): "
            f"median {statistics.median(ratios):.2f}x, "
            f"min {min(ratios):.2f}x, max {max(ratios):.2f}x"
        )
        print(
            f"KV tokens per GPU ours/upstream: median {statistics.median(per_gpu):.2f}x, min {min(per_gpu):.2f}x; "
            f"we use fewer GPUs than upstream in {fewer_gpus} of those pairs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
