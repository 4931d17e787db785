"""Tokenizing an atlas under torchrun (issue 10 §4): two local processes share the samples,
rank 0 joins their parts, and the atlas equals a one-process run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import pandas as pd

import atacformer as af
from atacformer import synthetic as syn

ROOT = Path(__file__).resolve().parent.parent


def test_two_ranks_equal_one(tmp_path):
    design = syn.make_design(
        syn.DesignSpec(n_peaks=500, peaks_per_type=30, peaks_per_lineage=60, seed=5)
    )
    universe = design.write_universe(tmp_path / "universe.bed")
    lines = ["sample\tfragments"]
    for i in range(4):
        cells = syn.sample_cells(
            design, syn.CellSpec(n_cells=20 + 5 * i, median_fragments=120, seed=20 + i)
        )
        cells.write_fragments(tmp_path / f"s{i}.tsv.gz")
        lines.append(f"s{i}\ts{i}.tsv.gz")
    manifest = tmp_path / "samples.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    one = af.pp.tokenize(manifest, af.Tokenizer.from_bed(universe), out=tmp_path / "one.h5ad")

    out = tmp_path / "two.h5ad"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", "2", "-m", "atacformer", "tokenize",
            "--manifest", str(manifest), "--tokenizer", str(universe), "-o", str(out),
        ],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    # Each rank tokenized its own share (largest files first, to the least loaded rank).
    assert "rank 0 of 2: 2 samples" in run.stderr
    assert "rank 1 of 2: 2 samples" in run.stderr
    assert run.stdout.count("cells from 4 samples") == 1  # rank 0 reports, once
    two, ref = ad.read_h5ad(out), ad.read_h5ad(one)
    assert (two.X != ref.X).nnz == 0 and two.X.dtype == ref.X.dtype
    pd.testing.assert_frame_equal(two.obs, ref.obs)
    assert two.uns["atacformer"]["universe_id"] == ref.uns["atacformer"]["universe_id"]
    assert not (tmp_path / "two.h5ad.partial").exists()
