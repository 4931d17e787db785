"""Barcode memory benchmark: a fragment file of N distinct barcodes whose fragments overlap
nothing (0 cells), tokenized in a child process; prints its peak RSS and time.

Run: ``python benches/bench_barcodes.py [--barcodes 500000 1000000 2000000]`` (data is
generated under target/bench_data). Memory is bounded by the output, so the peak should
stay near the interpreter's own; the issue's bound is 450 MB at 2 million barcodes.
Prints a markdown table with the machine noted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _data import OUT, machine

ROOT = Path(__file__).resolve().parent.parent
PEAKS = ROOT / "tests" / "data" / "tokenizers" / "peaks.bed"

CHILD = """
import json, resource, sys, time
import atacformer
tok = atacformer.Tokenizer(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
cells = tok.tokenize_fragments(sys.argv[2])
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "cells": len(cells), "before_kb": before, "peak_kb": peak}))
"""


def distinct_barcodes_file(n: int) -> Path:
    """``n`` fragments on a chromosome the universe lacks, each with its own barcode."""
    path = OUT / f"distinct_barcodes_{n}.tsv"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            for at in range(0, n, 100_000):
                ids = range(at, min(n, at + 100_000))
                f.write("".join(f"chrUn\t{i}\t{i + 50}\t{i:016d}-1\t1\n" for i in ids))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--barcodes", type=int, nargs="+", default=[500_000, 1_000_000, 2_000_000])
    args = parser.parse_args()
    rows = []
    for n in args.barcodes:
        path = distinct_barcodes_file(n)
        out = subprocess.check_output([sys.executable, "-c", CHILD, str(PEAKS), str(path)])
        r = json.loads(out)
        rows.append(
            f"| {n:,} | {r['cells']} | {r['peak_kb'] / 1024:.0f} MB | "
            f"{(r['peak_kb'] - r['before_kb']) / 1024:.0f} MB | "
            f"{(r['peak_kb'] - r['before_kb']) * 1024 / n:.0f} B | {r['seconds']:.2f} s |"
        )
    print(f"Machine: {machine()}\n")
    print("| distinct barcodes | cells | peak RSS | added by tokenizing | per barcode | time |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
