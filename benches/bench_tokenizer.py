"""Tokenizer benchmark: build a 1M-region universe and tokenize 1M random queries.

Run: ``python benches/bench_tokenizer.py`` (data is generated under target/bench_data).
Prints a markdown table with the machine noted. Timings are the best of several runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
from _data import OUT, machine, random_intervals, write_bed

import atacformer

N_UNIVERSE = 1_000_000
N_QUERIES = 1_000_000


def best(f, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


BUILD = """
import sys, time, json
import atacformer
def rss(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
base = rss('VmRSS:')
t = time.perf_counter()
tok = atacformer.Tokenizer(sys.argv[1])
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "added_peak": rss('VmHWM:') - base,
                  "added_now": rss('VmRSS:') - base, "heap": tok._tok.heap_bytes}))
"""


def build_stats(path) -> dict:
    runs = [
        json.loads(subprocess.check_output([sys.executable, "-c", BUILD, str(path)]))
        for _ in range(3)
    ]
    return min(runs, key=lambda r: r["seconds"])


def main() -> None:
    atacformer.set_num_threads(1)
    universe = write_bed(
        OUT / "universe_1m.bed", *random_intervals(N_UNIVERSE, (200, 1500), 1, unique=True)
    )
    queries = write_bed(OUT / "queries_1m.bed", *random_intervals(N_QUERIES, (100, 1000), 2))
    build = build_stats(universe)
    tok = atacformer.Tokenizer(universe)
    rs = atacformer.RegionSet(queries)
    n_tokens = len(tok(rs)["input_ids"])
    t_set = best(lambda: tok(rs))
    t_path = best(lambda: tok(queries))
    ten = [
        atacformer.Region(c, int(s), int(e))
        for c, s, e in zip(rs.chroms[:10], rs.starts[:10], rs.ends[:10], strict=True)
    ]
    calls = 20_000
    t_call = best(lambda: [tok(ten) for _ in range(calls)], repeat=3) / calls
    tuples = [(r.chr, r.start, r.end) for r in ten]
    t_tuples = best(lambda: [tok(tuples) for _ in range(calls)], repeat=3) / calls

    mb = 1024 * 1024
    rows = [
        (
            "Build a 1M-region tokenizer from BED",
            f"{build['seconds']:.3f} s, "
            f"{build['added_peak'] / mb:.0f} MB peak added RSS "
            f"({build['heap'] / N_UNIVERSE:.1f} B/region held)",
            "≤ 0.3 s, ≤ 60 MB",
        ),
        ("Tokenize 1M queries from a RegionSet (1 thread)", f"{t_set:.3f} s", "≤ 0.1 s"),
        ("Tokenize 1M queries from a BED path (1 thread)", f"{t_path:.3f} s", "≤ 0.1 s"),
        ("Per call, 10-region list of Region", f"{t_call * 1e6:.2f} µs", "≤ 5 µs"),
        ("Per call, 10-region list of tuples", f"{t_tuples * 1e6:.2f} µs", "—"),
    ]
    print(
        f"Machine: {machine()}; atacformer {atacformer.__version__}; "
        f"universe {N_UNIVERSE:,} regions, {N_QUERIES:,} queries -> {n_tokens:,} tokens\n"
    )
    print("| What | Measured | Target |\n| --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    np.testing.assert_array_equal(tok(rs)["input_ids"], tok(queries)["input_ids"])


if __name__ == "__main__":
    main()
