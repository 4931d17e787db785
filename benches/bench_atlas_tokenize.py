"""Manifest tokenization benchmark (issue 10 §6): atlases of 10 and of 100 samples.

Each sample is 1,000 synthetic cells x 2,000 fragments (``atacformer.synthetic``, written to
BGZF when the benchmark starts); one file listed under N sample names makes the manifest
(the issue's cheap way to a large one). Every run is a fresh process, so its peak RSS is its
own; the single-file ``tokenize_fragments`` rate of the same file (the median of 5 runs, in
a fresh process too) is the baseline. Prints a markdown table naming the machine.

Run: ``python benches/bench_atlas_tokenize.py [--samples 10 100] [--format h5ad]``.
Targets: the two peak RSS within 1.3x of each other and under 1.5 GB; the manifest rate at
least 85 % of the single-file rate.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _data import OUT, machine

CELLS, FRAGMENTS = 1_000, 2_000


def make_sample(folder: Path) -> tuple[Path, Path, int]:
    """The universe and one sample's BGZF fragment file; returns them and its line count."""
    from atacformer import synthetic as syn

    universe = folder / "atlas_universe.bed"
    fragments = folder / "atlas_sample.tsv.gz"
    lines_file = folder / "atlas_sample.lines"
    if not (universe.exists() and fragments.exists() and lines_file.exists()):
        design = syn.make_design(syn.DesignSpec(seed=0))
        spec = syn.CellSpec(n_cells=CELLS, median_fragments=FRAGMENTS, fragments_sigma=0.0, seed=1)
        cells = syn.sample_cells(design, spec)
        design.write_universe(universe)
        cells.write_fragments(fragments)
        lines_file.write_text(str(len(cells.fragments)))
    return universe, fragments, int(lines_file.read_text())


def child(args: argparse.Namespace) -> None:
    """One measured run, in its own process: prints seconds and peak RSS as JSON."""
    import anndata  # noqa: F401 - imported before the clock starts, as by any session
    import h5py  # noqa: F401

    import atacformer as af

    tok = af.Tokenizer.from_bed(args.universe)
    n_samples = args.samples[0]
    if n_samples == 0:  # the single-file baseline, median of 5
        seconds = []
        for _ in range(5):
            t = time.perf_counter()
            cells = tok.tokenize_fragments(args.fragments)
            seconds.append(time.perf_counter() - t)
            del cells
        best = sorted(seconds)[2]
    else:
        folder = Path(args.out).parent
        manifest = folder / f"manifest_{n_samples}.tsv"
        manifest.write_text(
            "sample\tfragments\n"
            + "".join(f"s{i:03d}\t{args.fragments}\n" for i in range(n_samples))
        )
        t = time.perf_counter()
        af.pp.tokenize(manifest, tok, out=args.out)
        best = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"seconds": best, "rss": rss}))


def measure(script: Path, universe: Path, fragments: Path, samples: int, out: Path) -> dict:
    command = [
        sys.executable,
        str(script),
        "--child",
        "--universe",
        str(universe),
        "--fragments",
        str(fragments),
        "--samples",
        str(samples),
        "--out",
        str(out),
    ]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"the measured run failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--format", choices=["h5ad", "zarr"], default="h5ad")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--universe", help=argparse.SUPPRESS)
    parser.add_argument("--fragments", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    universe, fragments, lines = make_sample(OUT)
    script = Path(__file__).resolve()
    rows = []
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        single = measure(script, universe, fragments, 0, Path(tmp) / "unused")
        single_rate = lines / single["seconds"]
        rows.append(("1 file, `tokenize_fragments`", lines, single, single_rate))
        results = {}
        for n in args.samples:
            out = Path(tmp) / f"atlas_{n}.{args.format}"
            r = measure(script, universe, fragments, n, out)
            results[n] = r
            rows.append(
                (f"{n} samples, manifest -> .{args.format}", n * lines, r, n * lines / r["seconds"])
            )
    import atacformer

    print(f"Machine: {machine()}; atacformer {atacformer.__version__}")
    print(f"Each sample: {CELLS:,} cells, {lines:,} fragment lines (BGZF)\n")
    print("| Workload | Fragments | Seconds | Fragments/s | Peak RSS | vs 1 file |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, n_frag, r, rate in rows:
        print(
            f"| {name} | {n_frag:,} | {r['seconds']:.2f} | {rate / 1e6:.2f} M | "
            f"{r['rss'] / 2**20:.0f} MiB | {rate / single_rate:.0%} |"
        )
    if len(results) >= 2:
        lo, hi = min(results), max(results)
        ratio = results[hi]["rss"] / results[lo]["rss"]
        print(
            f"\nPeak RSS {hi} vs {lo} samples: {ratio:.2f}x (target <= 1.3x); "
            f"largest {max(r['rss'] for r in results.values()) / 2**30:.2f} GiB (target < 1.5 GB)"
        )


if __name__ == "__main__":
    main()
