"""Embedding an atlas with two torchrun processes (gloo, CPU): the same result as one process,
and a rank killed mid-run leaves no output and a rerun of the same command finishes it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from _atlas_helpers import random_rows, write_atlas

import atacformer as af
from atacformer import tl

pytestmark = pytest.mark.filterwarnings("ignore:.*cells of the atlas have no tokens:UserWarning")

BLOCK = 8
N_CELLS = 60  # 8 blocks, 4 per rank


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """An atlas and its one-process embeddings (in memory, no store)."""
    from atacformer.hub import load_model

    folder = tmp_path_factory.mktemp("dist")
    tok = af.Tokenizer.from_pretrained("demo")
    rows = random_rows(tok.vocab_size - 7, N_CELLS, seed=11, empty=(4,))
    path = write_atlas(folder / "atlas.h5ad", tok, rows)
    one = tl.embed(path, load_model("demo"), block_size=BLOCK, progress=False)
    return path, one.obsm["X_atacformer"]


def torchrun(atlas, out, **env):
    """``torchrun --standalone --nproc-per-node 2 -m atacformer embed ...``, one thread each."""
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"),
        *("-m", "atacformer", "embed", str(atlas), "--model", "demo", "-o", str(out)),
        *("--block-size", str(BLOCK)),
    ]
    full = {**os.environ, "OMP_NUM_THREADS": "1", "ATACFORMER_NUM_THREADS": "1", **env}
    return subprocess.run(command, env=full, capture_output=True, text=True, timeout=240)


def test_two_gloo_ranks_give_the_one_process_embeddings(case, tmp_path):
    import anndata as ad

    atlas, want = case
    out = tmp_path / "emb.h5ad"
    run = torchrun(atlas, out)
    assert run.returncode == 0, run.stderr[-3000:]
    got = ad.read_h5ad(out)
    np.testing.assert_allclose(got.obsm["X_atacformer"], want, atol=1e-5)
    assert got.uns["atacformer"]["world_size"] == 2
    assert f"{N_CELLS} cells x 64 dims" in run.stdout  # rank 0 alone reports
    assert run.stdout.count("cells x 64 dims") == 1
    assert not (tmp_path / "emb.h5ad.partial").exists()


def test_a_killed_rank_leaves_no_output_and_the_same_command_resumes(case, tmp_path):
    import anndata as ad

    atlas, want = case
    out = tmp_path / "emb.h5ad"
    store = tmp_path / "emb.h5ad.partial"
    killed = torchrun(atlas, out, ATACFORMER_TEST_KILL_AFTER_BLOCKS="1:1")  # rank 1, 1 block
    assert killed.returncode != 0
    assert not out.exists()
    done = sorted(store.glob("block_*.npy"))
    assert 1 <= len(done) < N_CELLS // BLOCK + 1
    again = torchrun(atlas, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"skipping {len(done)} of 8 finished blocks" in again.stderr
    np.testing.assert_allclose(ad.read_h5ad(out).obsm["X_atacformer"], want, atol=1e-5)
    assert not store.exists()
