"""Benchmark of cell embeddings: ``encode_tokenized_cells`` against the reference algorithm.

Workload: the published shape (hidden 192, intermediate 768, 6 layers, 8 heads, no position
embeddings) with a small vocabulary, and synthetic cells whose lengths are log-normal, truncated
to [200, 4000] tokens.

- Baseline (the reference algorithm): batches of 16 cells in input order, each padded to its
  longest cell, fp32, through a stock ``torch.nn.TransformerEncoder`` in eval mode (PyTorch's
  nested-tensor fast path), then a masked mean.
- Ours: ``AtacformerModel.encode_tokenized_cells`` with the same weights.

Prints a markdown table: cells/s, achieved GFLOP/s counting only the FLOPs that real (unpadded)
tokens need, that as a share of this machine's ``torch.matmul`` GFLOP/s measured in the same run,
and the largest difference from the baseline's embeddings (must stay below 1e-4).

    python benches/bench_model.py                      # CPU, fp32
    python benches/bench_model.py --device cuda --dtype bfloat16 --n-cells 2000
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from atacformer.configuration_atacformer import AtacformerConfig
from atacformer.modeling_atacformer import AtacformerModel

N_REGIONS = 1000
HIDDEN, INTERMEDIATE, LAYERS, HEADS = 192, 768, 6, 8


class Cells:
    """Ragged cells in the ``TokenizedCells`` layout: flat int32 ids and int64 offsets."""

    def __init__(self, lengths: np.ndarray, rng: np.random.Generator) -> None:
        self.offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.ids = rng.integers(0, N_REGIONS, int(self.offsets[-1]), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.offsets) - 1


def cell_lengths(n: int, rng: np.random.Generator, median: float, sigma: float) -> np.ndarray:
    """Log-normal lengths, redrawn until they fall in [200, 4000]."""
    out = np.empty(0, dtype=np.int64)
    while len(out) < n:
        draw = np.exp(rng.normal(np.log(median), sigma, 2 * n)).astype(np.int64)
        out = np.concatenate([out, draw[(draw >= 200) & (draw <= 4000)]])
    return out[:n]


def flops(lengths: np.ndarray) -> float:
    """FLOPs the real tokens need: projections, feed-forward, and attention (QK^T and AV)."""
    n = lengths.astype(np.float64)
    dense = 2 * n * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * INTERMEDIATE)
    attention = 4 * n * n * HIDDEN
    return float(LAYERS * (dense + attention).sum())


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Best of ``repeats`` fp32 square matmuls on ``device``."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def stock_encoder(model: AtacformerModel) -> torch.nn.TransformerEncoder:
    layer = torch.nn.TransformerEncoderLayer(
        HIDDEN, HEADS, INTERMEDIATE, dropout=0.1, batch_first=True
    )
    encoder = torch.nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=True)
    encoder.load_state_dict(model.encoder.state_dict(), strict=True)
    return encoder.to(model.device).eval()


def baseline(model: AtacformerModel, cells: Cells, batch_size: int = 16) -> np.ndarray:
    """The reference algorithm: input order, padded batches of 16, stock encoder, fp32."""
    encoder = stock_encoder(model)
    embed = model.embeddings.token_embeddings
    pad = model.config.pad_token_id
    lengths = np.diff(cells.offsets)
    out = np.zeros((len(cells), HIDDEN), dtype=np.float32)
    with torch.no_grad():
        for first in range(0, len(cells), batch_size):
            idx = np.arange(first, min(first + batch_size, len(cells)))
            width = int(lengths[idx].max())
            ids = np.full((len(idx), width), pad, dtype=np.int64)
            real = np.zeros((len(idx), width), dtype=bool)
            for row, i in enumerate(idx):
                ids[row, : lengths[i]] = cells.ids[cells.offsets[i] : cells.offsets[i + 1]]
                real[row, : lengths[i]] = True
            ids_t = torch.from_numpy(ids).to(model.device)
            real_t = torch.from_numpy(real).to(model.device)
            hidden = encoder(embed(ids_t), src_key_padding_mask=~real_t)
            keep = real_t.unsqueeze(-1).float()
            out[idx] = ((hidden * keep).sum(1) / keep.sum(1)).cpu().numpy()
    return out


def timed(fn, device: torch.device) -> tuple[float, np.ndarray]:
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - start, result


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=48)
    parser.add_argument("--median-length", type=float, default=800.0)
    parser.add_argument("--sigma", type=float, default=0.7)
    parser.add_argument("--batch-size", type=int, default=64, help="ours; the baseline uses 16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="ours only, e.g. bfloat16 on GPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    rng = np.random.default_rng(args.seed)
    lengths = cell_lengths(args.n_cells, rng, args.median_length, args.sigma)
    cells = Cells(lengths, rng)
    torch.manual_seed(args.seed)
    config = AtacformerConfig(
        vocab_size=N_REGIONS + 7,
        pad_token_id=N_REGIONS + 1,
        cls_token_id=N_REGIONS + 3,
        eos_token_id=N_REGIONS + 4,
        bos_token_id=N_REGIONS + 5,
        sep_token_id=N_REGIONS + 6,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        use_pos_embeddings=False,
    )
    model = AtacformerModel(config).to(device).eval()

    def ours() -> np.ndarray:
        return model.encode_tokenized_cells(
            cells, batch_size=args.batch_size, progress=False, dtype=args.dtype
        )

    warm = Cells(np.array([256, 300]), rng)  # first-call costs of both paths
    model.encode_tokenized_cells(warm, progress=False, dtype=args.dtype)
    baseline(model, warm)

    peak = matmul_gflops(device)
    t_base, base_emb = timed(lambda: baseline(model, cells), device)
    t_ours, our_emb = timed(ours, device)
    work = flops(lengths)
    diff = float(np.abs(our_emb - base_emb).max())

    device_name = cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(
        f"Machine: {device_name}; {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}; torch {torch.__version__}; device {device}"
    )
    print(
        f"Workload: {len(cells)} cells, {int(lengths.sum()):,} tokens, length mean "
        f"{lengths.mean():.0f}, median {np.median(lengths):.0f}, max {lengths.max()}; "
        f"{work / 1e9:.0f} GFLOP of real-token work"
    )
    print(f"torch.matmul fp32 ({2048}x{2048}): {peak:.1f} GFLOP/s\n")
    print("| method | dtype | cells/s | GFLOP/s | % of matmul | max abs diff vs baseline |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    rows = [
        (
            "baseline: stock TransformerEncoder, batches of 16 in input order",
            "float32",
            t_base,
            0.0,
        ),
        (
            f"ours: encode_tokenized_cells(batch_size={args.batch_size})",
            args.dtype or "float32",
            t_ours,
            diff,
        ),
    ]
    for name, dtype, seconds, d in rows:
        gflops = work / seconds / 1e9
        print(
            f"| {name} | {dtype} | {len(cells) / seconds:.2f} | {gflops:.1f} | "
            f"{100 * gflops / peak:.0f} % | {d:.1e} |"
        )
    print(
        f"\nSpeed-up: {t_base / t_ours:.1f}x the baseline's cells/s; equal outputs "
        f"(< 1e-4): {'yes' if diff < 1e-4 else 'NO'}; "
        f"efficiency >= 40 % of matmul: {'yes' if work / t_ours / 1e9 >= 0.4 * peak else 'NO'}"
    )


if __name__ == "__main__":
    main()
