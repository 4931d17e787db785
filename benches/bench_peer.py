"""The tokenizer against its peer (gtars) on the same files, on this machine, in one run.

Run: ``python benches/bench_peer.py --peer-python PATH`` where PATH is a Python that has the
peer installed, e.g. ``python -m venv /tmp/peer && /tmp/peer/bin/pip install gtars`` (kept out
of this project's environment). Uses the 1M-region universe and 1M queries that
``bench_tokenizer.py`` writes under target/bench_data (made here if missing). Each side runs
in its own process, alternately, three rounds; each figure is the best of its round.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _data import OUT, machine, random_intervals, write_bed

OURS = """
import json, sys, time
import atacformer
atacformer.set_num_threads(1)
tok = atacformer.Tokenizer(sys.argv[1])
def best(f):
    ts = []
    for _ in range(5):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)
rs = atacformer.RegionSet(sys.argv[2])
print(json.dumps({"path": best(lambda: tok(sys.argv[2])), "set": best(lambda: tok(rs))}))
"""

PEER = """
import json, sys, time
from gtars.models import RegionSet
from gtars.tokenizers import Tokenizer
tok = Tokenizer.from_bed(sys.argv[1])
def best(f):
    ts = []
    for _ in range(3):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)
rs = RegionSet(sys.argv[2])
print(json.dumps({"path": best(lambda: tok(RegionSet(sys.argv[2]))), "set": best(lambda: tok(rs))}))
"""


def run(python: str, code: str, universe: str, queries: str) -> dict:
    out = subprocess.check_output([python, "-c", code, universe, queries])
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", required=True, help="a Python with gtars installed")
    args = parser.parse_args()
    universe, queries = OUT / "universe_1m.bed", OUT / "queries_1m.bed"
    if not universe.exists():
        write_bed(universe, *random_intervals(1_000_000, (200, 1500), 1, unique=True))
    if not queries.exists():
        write_bed(queries, *random_intervals(1_000_000, (100, 1000), 2))
    ours, peer = [], []
    for _ in range(3):
        ours.append(run(sys.executable, OURS, str(universe), str(queries)))
        peer.append(run(args.peer_python, PEER, str(universe), str(queries)))
    print(f"Machine: {machine()}; 1,000,000 universe regions, 1,000,000 queries, 1 thread\n")
    print("| What | ours (best of rounds) | peer | peer / ours |")
    print("| --- | ---: | ---: | ---: |")
    for key, what in (("path", "Tokenize a BED path"), ("set", "Tokenize a RegionSet")):
        a, b = min(r[key] for r in ours), min(r[key] for r in peer)
        print(f"| {what} | {a:.3f} s | {b:.3f} s | {b / a:.1f}x |")


if __name__ == "__main__":
    main()
