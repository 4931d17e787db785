"""Synthetic benchmark data over real hg38 chromosome sizes (generated, never committed)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHROM_SIZES = [
    ROOT / "tests" / "data" / "hg38.chrom.sizes",
    ROOT.parent / "shared" / "data" / "hg38.chrom.sizes",
]
OUT = Path(os.environ.get("ATACFORMER_BENCH_DIR", ROOT / "target" / "bench_data"))


def chrom_sizes() -> dict[str, int]:
    for p in CHROM_SIZES:
        if p.exists():
            rows = [line.split("\t") for line in p.read_text().splitlines() if line]
            return {c: int(n) for c, n in rows}
    raise FileNotFoundError("hg38.chrom.sizes not found in tests/data or ../shared/data")


def random_intervals(n: int, width: tuple[int, int], seed: int, unique: bool = False):
    """``n`` intervals spread over hg38 in proportion to chromosome length."""
    rng = np.random.default_rng(seed)
    sizes = chrom_sizes()
    names = np.array(list(sizes))
    lengths = np.array(list(sizes.values()), dtype=np.int64)
    chrom = rng.choice(len(names), size=n, p=lengths / lengths.sum())
    w = rng.integers(width[0], width[1] + 1, size=n)
    start = (rng.random(n) * (lengths[chrom] - w)).astype(np.int64)
    if unique:  # drop exact duplicates, keeping file order
        key = chrom.astype(np.int64) << 40 | start << 12 | (w & 0xFFF)
        _, first = np.unique(key, return_index=True)
        keep = np.sort(first)
        chrom, start, w = chrom[keep], start[keep], w[keep]
    return names[chrom], start, start + w


def write_bed(path: Path, chroms, starts, ends) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        import atacformer

        atacformer.RegionSet.from_arrays(chroms, starts, ends).to_bed(path)
    return path


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
