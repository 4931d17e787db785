"""Benchmark of embedding a tokenized atlas with the demo model, through the command line.

The atlas is written at benchmark time in the tokenized-atlas layout (CSR token ids over the
demo universe, log-normal cell lengths) under ``target/bench_data``. Each row is one fresh run of
``atacformer embed atlas.h5ad --model demo -o emb.h5ad`` with one torch thread per process:

- 1 process, and 2 processes under ``torchrun`` (gloo): cells/s of the embedding step (the
  command's own timing, without start-up), wall time, and peak RSS of the largest process;
- 1 process at ``--scale`` times the cells: peak RSS should grow only by the output
  (``n_cells x 64`` float32);
- resume: the same command killed (SIGKILL) once half the blocks are written, then rerun; the
  rerun's wall time against the full run's.

    python benches/bench_embed_atlas.py                 # 4,000 cells, block 256
    python benches/bench_embed_atlas.py --n-cells 20000 --scale 4
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("ATACFORMER_BENCH_DIR", ROOT / "target" / "bench_data"))


def write_atlas(path: Path, n_cells: int, median: int, seed: int = 0) -> Path:
    """A tokenized atlas over the demo universe: ``X`` CSR (int32 ids, int64 indptr, uint32
    counts), ``obs`` ``{sample}#{barcode}``, ``uns["atacformer"]["universe_id"]``."""
    import anndata as ad
    import h5py
    import pandas as pd

    import atacformer as af

    tok = af.Tokenizer.from_pretrained("demo")
    n_vars = tok.vocab_size - 7
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(median), 0.6, n_cells), 10, n_vars).astype(np.int64)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    for i, n in enumerate(lengths.tolist()):
        indices[indptr[i] : indptr[i + 1]] = np.sort(rng.choice(n_vars, n, replace=False))
    samples = np.array([f"s{i % 10}" for i in range(n_cells)])
    barcodes = [f"BC{i:07d}" for i in range(n_cells)]
    obs = pd.DataFrame(
        {"sample": pd.Categorical(samples), "barcode": barcodes, "n_tokens": lengths},
        index=[f"{s}#{b}" for s, b in zip(samples, barcodes, strict=True)],
    )
    adata = ad.AnnData(
        obs=obs, var=pd.DataFrame(index=tok.convert_ids_to_tokens(list(range(n_vars))))
    )
    adata.uns["atacformer"] = {"universe_id": tok.universe_id, "vocab_size": tok.vocab_size}
    adata.write_h5ad(path)
    with h5py.File(path, "a") as f:
        x = f.create_group("X")
        x.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0"})
        x.attrs["shape"] = np.array([n_cells, n_vars])
        x["indices"], x["indptr"] = indices, indptr
        x["data"] = np.ones(len(indices), dtype=np.uint32)
    return path


def run(command: list[str], env: dict[str, str]) -> tuple[float, float, str, int]:
    """Wall seconds, peak RSS (MiB) of the largest child process, stdout+stderr and the exit
    status of ``command``, run from a fresh helper so that the RSS is this run's alone."""
    helper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "t = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "sys.stdout.write(f'@@ {t} {rss} {p.returncode}\\n' + p.stdout + p.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", helper, *command],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    head, _, text = done.stdout.partition("\n")
    _, seconds, rss, code = head.split()
    return float(seconds), float(rss), text, int(code)


def embed_seconds(text: str) -> float:
    found = re.search(r"cells x \d+ dims in ([\d.]+) s", text)
    if found is None:
        raise RuntimeError(f"the command did not finish:\n{text[-3000:]}")
    return float(found.group(1))


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=4000)
    parser.add_argument("--median-tokens", type=int, default=300)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--scale", type=int, default=4, help="cells of the RSS check, times")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    atlas = write_atlas(OUT / f"atlas_{args.n_cells}.h5ad", args.n_cells, args.median_tokens)
    big_n = args.n_cells * args.scale
    big = write_atlas(OUT / f"atlas_{big_n}.h5ad", big_n, args.median_tokens, seed=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATACFORMER_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), env.get("PYTHONPATH")]))

    def embed(path: Path, out: Path, ranks: int = 1) -> list[str]:
        cli = [
            "-m",
            "atacformer",
            "embed",
            str(path),
            "--model",
            "demo",
            "-o",
            str(out),
            "--block-size",
            str(args.block_size),
            "--threads",
            "1",
        ]
        if ranks == 1:
            return [sys.executable, *cli]
        launch = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
        return [sys.executable, *launch, *cli]

    rows = []
    for label, path, ranks in (
        ("1 process", atlas, 1),
        ("2 processes (torchrun, gloo)", atlas, 2),
        (f"1 process, {args.scale}x the cells", big, 1),
    ):
        out = OUT / f"emb_{ranks}_{path.stem}.h5ad"
        out.unlink(missing_ok=True)
        wall, rss, text, code = run(embed(path, out, ranks), env)
        if code:
            raise RuntimeError(text[-3000:])
        n = int(re.search(r"([\d,]+) cells x", text).group(1).replace(",", ""))
        rows.append((label, n, embed_seconds(text), wall, rss))

    n_blocks = -(-args.n_cells // args.block_size)
    out = OUT / "emb_resume.h5ad"
    out.unlink(missing_ok=True)
    full_wall = rows[0][3]
    killed_wall, _, _, code = run(
        embed(atlas, out), {**env, "ATACFORMER_TEST_KILL_AFTER_BLOCKS": str(n_blocks // 2)}
    )
    assert code != 0 and not out.exists(), "the killed run should leave no output"
    resume_wall, resume_rss, text, code = run(embed(atlas, out), env)
    skipped = re.search(r"skipping (\d+) of (\d+)", text)

    print(f"Machine: {machine()}; Python {platform.python_version()}; one thread per process")
    print(
        f"Atlas: {args.n_cells:,} cells (and {big_n:,}), median {args.median_tokens} tokens, "
        f"demo model (hidden 64, 2 layers), blocks of {args.block_size} cells\n"
    )
    print("| run | cells | embed s | cells/s | wall s | peak RSS MiB (largest process) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, n, seconds, wall, rss in rows:
        print(f"| {label} | {n:,} | {seconds:.1f} | {n / seconds:,.0f} | {wall:.1f} | {rss:,.0f} |")
    resumed = embed_seconds(text)
    print(
        f"| resume after SIGKILL at {n_blocks // 2}/{n_blocks} blocks "
        f"(skipped {skipped.group(1) if skipped else '?'}) | {args.n_cells:,} | {resumed:.1f} | "
        f"- | {resume_wall:.1f} | {resume_rss:,.0f} |"
    )
    print(
        f"\nResume: the rerun took {resume_wall:.1f} s wall ({resumed:.1f} s embedding) against "
        f"{full_wall:.1f} s ({rows[0][2]:.1f} s) for the full run: "
        f"{100 * resume_wall / full_wall:.0f} % ({100 * resumed / rows[0][2]:.0f} %) of it; "
        f"the killed run took {killed_wall:.1f} s."
    )
    growth = rows[2][4] - rows[0][4]
    output = (big_n - args.n_cells) * 64 * 4 / 2**20
    print(
        f"RSS: {args.scale}x the cells grew the peak by {growth:,.0f} MiB; the extra output is "
        f"{output:,.1f} MiB (x2 while the .h5ad image is built in memory)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
