"""Pipeline benchmarks: fragment files, AnnData and padded batches, end to end in Python.

Run: ``python benches/bench_pipeline.py [--fragments N]`` (default 20,000,000). Data is
generated once under target/bench_data. Prints a markdown table with the machine noted.
"""

from __future__ import annotations

import argparse
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from _data import OUT, machine, random_intervals, write_bed

import atacformer


def best(f, repeat: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - t)
    return min(times), result


class BgzfWriter:
    """Writes BGZF: gzip members of at most 64 KiB of data, each with the BC extra field."""

    BLOCK = 65280

    def __init__(self, path: Path) -> None:
        self.f = open(path, "wb")
        self.buf = bytearray()

    def write(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= self.BLOCK:
            self._block(bytes(self.buf[: self.BLOCK]))
            del self.buf[: self.BLOCK]

    def _block(self, data: bytes) -> None:
        c = zlib.compressobj(1, zlib.DEFLATED, -15)
        body = c.compress(data) + c.flush()
        header = struct.pack("<4BIBBHBBHH", 31, 139, 8, 4, 0, 0, 255, 6, 66, 67, 2, len(body) + 25)
        self.f.write(header + body + struct.pack("<II", zlib.crc32(data), len(data)))

    def close(self) -> None:
        if self.buf:
            self._block(bytes(self.buf))
        self._block(b"")  # the empty end-of-file block
        self.f.close()


def fragment_file(n: int, n_barcodes: int, universe) -> Path:
    """Position-sorted fragments, 80% of them around universe regions."""
    path = OUT / f"fragments_{n}.tsv.gz"
    if path.exists():
        return path
    rng = np.random.default_rng(7)
    chroms, starts, ends = universe
    pick = rng.integers(0, len(starts), n)
    on_peak = rng.random(n) < 0.8
    centre = np.where(on_peak, (starts[pick] + ends[pick]) // 2, starts[pick] + 20_000)
    length = rng.integers(50, 700, n)
    fstart = np.maximum(centre - rng.integers(0, 700, n), 0)
    order = np.lexsort((fstart, chroms[pick]))
    barcodes = np.array([f"{i:016d}-1" for i in range(n_barcodes)])
    writer = BgzfWriter(path.with_suffix(".tmp"))
    for lo in range(0, n, 1_000_000):
        idx = order[lo : lo + 1_000_000]
        chunk = pd.DataFrame(
            {
                "c": chroms[pick[idx]],
                "s": fstart[idx],
                "e": fstart[idx] + length[idx],
                "b": barcodes[rng.integers(0, n_barcodes, len(idx))],
                "n": rng.integers(1, 4, len(idx)),
            }
        )
        writer.write(chunk.to_csv(sep="\t", header=False, index=False).encode())
    writer.close()
    path.with_suffix(".tmp").rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fragments", type=int, default=20_000_000)
    parser.add_argument("--barcodes", type=int, default=10_000)
    args = parser.parse_args()

    universe = random_intervals(1_000_000, (200, 1500), 1, unique=True)
    tok = atacformer.Tokenizer(write_bed(OUT / "universe_1m.bed", *universe))
    rows = []

    frag = fragment_file(args.fragments, args.barcodes, universe)
    rates = {}
    for threads in (1, 2):
        atacformer.set_num_threads(threads)
        t, cells = best(lambda: tok.tokenize_fragments(frag), repeat=2)
        rates[threads] = args.fragments / t
        rows.append(
            (
                f"Fragments: {args.fragments / 1e6:.0f}M BGZF fragments, {args.barcodes:,} "
                f"barcodes, 1M universe, {threads} thread(s)",
                f"{t:.2f} s, {rates[threads] / 1e6:.2f}M fragments/s ({len(cells):,} cells)",
                "≥ 5M/s" if threads == 1 else "≥ 1.6x one thread",
            )
        )
    rows.append(("Fragments: speed-up with 2 threads", f"{rates[2] / rates[1]:.2f}x", "≥ 1.6x"))

    # AnnData: 2,000 cells x 100,000 peaks, 3,000 nonzeros per cell.
    import anndata as ad

    peaks = random_intervals(100_000, (500, 500), 3)
    rng = np.random.default_rng(4)
    n_cells, nnz = 2000, 3000
    indices = np.concatenate(
        [np.sort(rng.choice(100_000, nnz, replace=False)) for _ in range(n_cells)]
    ).astype(np.int32)
    indptr = np.arange(0, n_cells * nnz + 1, nnz, dtype=np.int64)
    data = rng.integers(1, 5, n_cells * nnz).astype(np.float32)
    x = sp.csr_matrix((data, indices, indptr), shape=(n_cells, 100_000))
    var = pd.DataFrame({"chr": peaks[0], "start": peaks[1], "end": peaks[2]})
    var.index = var.index.astype(str)
    adata = ad.AnnData(X=x, var=var)
    atacformer.set_num_threads(0)
    t, cells = best(lambda: tok.tokenize_anndata(adata), repeat=5)
    rows.append(
        (
            "AnnData: 2,000 cells x 100,000 peaks, 3,000 nonzeros per cell (CSR)",
            f"{t * 1e3:.1f} ms ({n_cells / t:,.0f} cells/s; {len(cells.ids):,} ids)",
            "≤ 50 ms",
        )
    )

    # Padded batch: 10,000 cells of 2,000-8,000 regions, padded to 8192, as torch tensors.
    import torch

    lengths = rng.integers(2000, 8001, 10_000)
    ids = rng.integers(0, 1_000_000, int(lengths.sum())).astype(np.int32)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    batch = atacformer.TokenizedCells(ids, offsets, pad_token_id=tok.pad_token_id)

    def pad() -> dict:
        return batch.to_padded(8192, return_tensors="pt", pad_to_max_length=True)

    t, enc = best(pad, repeat=3)
    # The NumPy array holds the Vec that Rust filled (NumPy owns no copy of it), and the
    # tensor made from it points at the same bytes: no copy anywhere.
    arrays = batch.to_padded(8192, pad_to_max_length=True)
    base = arrays["input_ids"].base
    rust_owned = not arrays["input_ids"].flags.owndata and not isinstance(base, np.ndarray)
    pointer = arrays["input_ids"].ctypes.data
    tensors = arrays.convert_to_tensors("pt")
    shared = rust_owned and tensors["input_ids"].data_ptr() == pointer
    assert isinstance(enc["input_ids"], torch.Tensor)
    rows.append(
        (
            "Batch: 10,000 cells of 2,000-8,000 regions, padded to 8192, return_tensors='pt'",
            f"{t:.2f} s ({len(lengths) / t:,.0f} cells/s; tensors share Rust's buffer: {shared})",
            "throughput printed",
        )
    )

    print(f"Machine: {machine()}; atacformer {atacformer.__version__}\n")
    print("| Workload | Measured | Target |\n| --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
