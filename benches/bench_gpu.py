"""GPU benchmark of cell embeddings at the published shape, against the reference algorithm.

Shape: hidden 192, intermediate 768, 6 layers, 8 heads, vocabulary 890,711, no position
embeddings (random weights: speed does not depend on them). Cells: log-normal lengths, median
3,000 tokens (sigma 0.6), clipped to 200-8,192, random ids.

- **reference**: the published algorithm: fp32, batches of 16 cells in input order, each padded
  to its longest cell, a stock ``torch.nn.TransformerEncoder`` (eval), a masked mean. It runs on
  the first ``--reference-cells`` cells only (it is a rate).
- **bucketed**: bf16 weights, cells sorted by length and cut into batches under a token budget
  (``--token-budget`` padded tokens per batch), so each batch pads little, through the model's
  public ``forward`` (``scaled_dot_product_attention`` with a key mask), masked mean.
- **packed**: bf16, the model's packed path: ``forward(cu_seqlens=...)``, no padding at all,
  one fused attention call per cell, under the same token budget.
- **library**: ``encode_tokenized_cells(dtype=bfloat16)`` as it stands (the GPU default layout).

Reported: cells/s, real tokens/s, achieved TFLOP/s counting the FLOPs that real (unpadded) tokens
need, that as a share of the bf16 ``torch.matmul`` throughput measured in the same run, peak GPU
memory, and the largest difference from the reference's embeddings on the cells both embedded.
Targets (issue 10): >= 3x the reference's cells/s; >= 35 % of matmul.

    python benches/bench_gpu.py                 # on a CUDA machine
    python benches/bench_gpu.py --smoke         # a tiny run on the CPU (what CI runs)
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from atacformer.configuration_atacformer import AtacformerConfig
from atacformer.inference import mean_pool
from atacformer.modeling_atacformer import AtacformerModel
from atacformer.tokenized_cells import TokenizedCells


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    median: float
    low: int
    high: int


PUBLISHED = Shape(890_711, 192, 768, 6, 8, 3000.0, 200, 8192)
SMOKE = Shape(1_007, 32, 64, 2, 2, 120.0, 20, 400)
SIGMA = 0.6


def cell_lengths(n: int, shape: Shape, rng: np.random.Generator) -> np.ndarray:
    """Log-normal lengths around ``shape.median``, clipped to ``[low, high]``."""
    draw = np.exp(rng.normal(np.log(shape.median), SIGMA, n))
    return np.clip(draw, shape.low, shape.high).astype(np.int64)


def make_cells(lengths: np.ndarray, shape: Shape, rng: np.random.Generator) -> TokenizedCells:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = rng.integers(0, shape.vocab - 7, int(offsets[-1]), dtype=np.int32)
    return TokenizedCells(ids, offsets)


def make_model(shape: Shape, device: torch.device) -> AtacformerModel:
    n = shape.vocab - 7
    config = AtacformerConfig(
        vocab_size=shape.vocab,
        pad_token_id=n + 1,
        cls_token_id=n + 3,
        eos_token_id=n + 4,
        bos_token_id=n + 5,
        sep_token_id=n + 6,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        use_pos_embeddings=False,
    )
    return AtacformerModel(config).to(device).eval()


def flops(lengths: np.ndarray, shape: Shape) -> float:
    """FLOPs the real tokens need: projections, feed-forward, attention (QK^T and AV)."""
    n = lengths.astype(np.float64)
    h, i = shape.hidden, shape.intermediate
    dense = 2 * n * (4 * h * h + 2 * h * i)
    attention = 4 * n * n * h
    return float(shape.layers * (dense + attention).sum())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10) -> float:
    """Best of ``repeats`` square matmuls of ``dtype`` on ``device``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 2):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


# --------------------------------------------------------------------------- methods


def reference(model: AtacformerModel, cells: TokenizedCells, device: torch.device) -> np.ndarray:
    """fp32, batches of 16 in input order, padded to the longest, stock TransformerEncoder."""
    cfg = model.config
    layer = torch.nn.TransformerEncoderLayer(
        cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, batch_first=True
    )
    encoder = torch.nn.TransformerEncoder(layer, cfg.num_hidden_layers)
    encoder.load_state_dict(model.encoder.state_dict(), strict=True)
    encoder = encoder.to(device).eval()
    embed = model.embeddings.token_embeddings
    out = np.zeros((len(cells), cfg.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for first in range(0, len(cells), 16):
            batch = cells[first : first + 16]
            padded = batch.to_padded(pad_token_id=cfg.pad_token_id, return_tensors="pt")
            ids = padded["input_ids"].to(device)
            keep = padded["attention_mask"].to(device).bool()
            hidden = encoder(embed(ids), src_key_padding_mask=~keep)
            pooled = mean_pool(hidden.float(), keep)
            out[first : first + len(batch)] = pooled.cpu().numpy()
    return out


def budget_batches(lengths: np.ndarray, budget: int, padded: bool) -> Iterator[np.ndarray]:
    """Cell indices per batch, longest first; a batch holds at most ``budget`` tokens
    (padded: cells x its longest; packed: the sum), and at least one cell."""
    order = np.argsort(-lengths, kind="stable")
    start = 0
    total = 0
    for j, i in enumerate(order.tolist()):
        n = int(lengths[i])
        # Sorted longest first, so a padded batch is as wide as its first cell.
        cost = (j - start + 1) * int(lengths[order[start]]) if padded else total + n
        if j > start and cost > budget:
            yield order[start:j]
            start, total = j, 0
        total += n
    if start < len(order):
        yield order[start:]


def bucketed(
    model: AtacformerModel, cells: TokenizedCells, device: torch.device, budget: int
) -> np.ndarray:
    """Length-sorted padded batches under a token budget, the model's SDPA forward."""
    pad = model.config.pad_token_id
    out = torch.zeros(len(cells), model.config.hidden_size, device=device)
    with torch.inference_mode():
        for idx in budget_batches(cells.lengths, budget, padded=True):
            batch = cells.take(idx)
            padded = batch.to_padded(pad_token_id=pad, return_tensors="pt")
            ids = padded["input_ids"].to(device, non_blocking=True)
            keep = padded["attention_mask"].to(device, non_blocking=True).bool()
            hidden = model(input_ids=ids, attention_mask=keep).last_hidden_state
            out[torch.from_numpy(idx).to(device)] = mean_pool(hidden.float(), keep)
    return out.cpu().numpy()


def packed(
    model: AtacformerModel, cells: TokenizedCells, device: torch.device, budget: int
) -> np.ndarray:
    """The model's packed path (``cu_seqlens``, no padding) under a token budget."""
    out = torch.zeros(len(cells), model.config.hidden_size, device=device)
    with torch.inference_mode():
        for idx in budget_batches(cells.lengths, budget, padded=False):
            batch = cells.take(idx)
            ids = torch.from_numpy(np.asarray(batch.ids, dtype=np.int64)).to(device)
            cu = torch.from_numpy(np.array(batch.offsets)).to(device)
            hidden = model(
                input_ids=ids, cu_seqlens=cu, max_seqlen=int(batch.lengths.max())
            ).last_hidden_state
            out[torch.from_numpy(idx).to(device)] = mean_pool(hidden.float(), cu_seqlens=cu)
    return out.cpu().numpy()


def timed(fn: Callable[[], np.ndarray], device: torch.device) -> tuple[float, np.ndarray, float]:
    """Seconds, result and peak GPU memory (GiB; 0 on the CPU) of one call."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return seconds, result, peak


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shape and data, CPU is fine")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--n-cells", type=int, default=None, help="default 4096 (smoke 24)")
    parser.add_argument("--reference-cells", type=int, default=None, help="default 512 (smoke 16)")
    parser.add_argument(
        "--token-budget", type=int, default=None, help="default 131072 (smoke 2048)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    warnings.filterwarnings(
        "ignore", message=".*nested tensors is in prototype", category=UserWarning
    )
    shape = SMOKE if args.smoke else PUBLISHED
    n_cells = args.n_cells or (24 if args.smoke else 4096)
    n_ref = min(n_cells, args.reference_cells or (16 if args.smoke else 512))
    budget = args.token_budget or (2048 if args.smoke else 131_072)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fast = torch.bfloat16
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the reference is plain fp32

    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    lengths = cell_lengths(n_cells, shape, rng)
    cells = make_cells(lengths, shape, rng)
    model = make_model(shape, device)
    warm = cells[:2]
    reference(model, warm, device)  # first-call costs (kernels, allocator) of each method
    ref_seconds, ref_emb, ref_peak = timed(lambda: reference(model, cells[:n_ref], device), device)
    model_fp32_state = {k: v.clone() for k, v in model.state_dict().items()}
    model = model.to(fast)
    for fn in (bucketed, packed):
        fn(model, warm, device, budget)
    results = [
        (
            "reference: fp32, 16 per batch in input order, padded",
            "float32",
            n_ref,
            ref_seconds,
            ref_peak,
            ref_emb,
        )
    ]
    for name, fn in (
        (f"bucketed: bf16, sorted, padded <= {budget:,} tokens/batch, SDPA", bucketed),
        (f"packed: bf16, cu_seqlens <= {budget:,} tokens/batch, SDPA per cell", packed),
    ):
        seconds, emb, peak = timed(lambda fn=fn: fn(model, cells, device, budget), device)
        results.append((name, "bfloat16", n_cells, seconds, peak, emb))
    model = model.float()
    model.load_state_dict(model_fp32_state)  # the exact fp32 weights again, bf16 by autocast
    lib_layout = "padded" if device.type == "cuda" else "packed"
    model.encode_tokenized_cells(warm, progress=False, dtype=fast)
    seconds, emb, peak = timed(
        lambda: model.encode_tokenized_cells(cells, batch_size=64, progress=False, dtype=fast),
        device,
    )
    results.append(
        (
            f"library: encode_tokenized_cells(dtype=bf16), {lib_layout}",
            "bf16 autocast",
            n_cells,
            seconds,
            peak,
            emb,
        )
    )

    matmul = matmul_tflops(
        device, fast if device.type == "cuda" else torch.float32, 256 if args.smoke else 8192
    )
    print(f"Machine: {machine(device)}; torch {torch.__version__}; device {device}")
    print(
        f"Shape: hidden {shape.hidden}, {shape.layers} layers, {shape.heads} heads, vocabulary "
        f"{shape.vocab:,}, no positions{' (smoke)' if args.smoke else ''}"
    )
    print(
        f"Cells: {n_cells:,}, {int(lengths.sum()):,} tokens; length median "
        f"{np.median(lengths):.0f}, mean {lengths.mean():.0f}, clipped to "
        f"{shape.low}-{shape.high}; reference on the first {n_ref:,}"
    )
    what = "bf16" if device.type == "cuda" else "fp32 (CPU)"
    print(f"torch.matmul {what}: {matmul:.2f} TFLOP/s\n")
    print(
        "| method | dtype | cells/s | tokens/s | TFLOP/s | % of matmul | peak GiB | "
        "max abs diff vs reference |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rates = []
    for name, dtype, n, seconds, peak, emb in results:
        work = flops(lengths[:n], shape)
        tflops = work / seconds / 1e12
        diff = float(np.abs(emb[:n_ref] - ref_emb).max())
        rates.append((n / seconds, tflops))
        print(
            f"| {name} | {dtype} | {n / seconds:,.1f} | {lengths[:n].sum() / seconds:,.0f} | "
            f"{tflops:.3g} | {100 * tflops / matmul:.1f} % | {peak:.2f} | {diff:.1e} |"
        )
    best = max(range(1, len(rates)), key=lambda k: rates[k][0])
    speedup = rates[best][0] / rates[0][0]
    share = rates[best][1] / matmul
    print(
        f"\nBest: {results[best][0].split(':')[0]}: {speedup:.1f}x the reference's cells/s "
        f"(target >= 3x: {'yes' if speedup >= 3 else 'NO'}); {100 * share:.1f} % of matmul "
        f"(target >= 35 %: {'yes' if share >= 0.35 else 'NO'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
