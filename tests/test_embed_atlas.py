"""Embedding a tokenized atlas: read in row blocks, resumable, checked against its universe;
and the training Dataset over a backed atlas."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from _atlas_helpers import random_rows, write_atlas
from _model_helpers import oracle_pooled

import atacformer as af
from atacformer import _stream, tl
from atacformer.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:.*cells of the atlas have no tokens:UserWarning")

N_CELLS = 70
BLOCK = 16  # 5 blocks, the last one short


@pytest.fixture(scope="module")
def demo():
    from atacformer.hub import load_model

    return load_model("demo"), af.Tokenizer.from_pretrained("demo")


@pytest.fixture(scope="module")
def rows(demo):
    _, tok = demo
    return random_rows(tok.vocab_size - 7, N_CELLS, seed=3, empty=(7,))


@pytest.fixture
def atlas(tmp_path, demo, rows):
    return write_atlas(tmp_path / "atlas.h5ad", demo[1], rows)


def with_unk(rows, tok):
    return [r if len(r) else np.array([tok.unk_token_id], dtype=np.int32) for r in rows]


def test_streamed_embeddings_equal_each_cell_embedded_alone(atlas, demo, rows, tmp_path):
    model, tok = demo
    out = tmp_path / "emb.h5ad"
    with pytest.warns(UserWarning, match="1 of 70 cells of the atlas have no tokens"):
        adata = tl.embed(atlas, model, block_size=BLOCK, out=out, progress=False)
    want = oracle_pooled(model, with_unk(rows, tok))
    np.testing.assert_allclose(adata.obsm["X_atacformer"], want, atol=1e-5)
    import anndata as ad

    back = ad.read_h5ad(out)
    np.testing.assert_array_equal(back.obsm["X_atacformer"], adata.obsm["X_atacformer"])
    assert back.obsm["X_atacformer"].dtype == np.float32
    assert list(back.obs_names) == [f"s{1 + i % 2}#BC{i // 2:05d}" for i in range(N_CELLS)]
    assert list(back.obs["barcode"][:2]) == ["BC00000", "BC00000"]
    assert back.obs["atacformer_n_tokens"].tolist() == [max(len(r), 1) for r in rows]
    record = back.uns["atacformer"]
    assert record["universe_id"] == tok.universe_id
    assert (record["block_size"], record["n_cells"], record["world_size"]) == (BLOCK, 70, 1)
    assert not (tmp_path / "emb.h5ad.partial").exists()


def test_a_backed_anndata_and_a_zarr_atlas_stream_too(tmp_path, demo, rows):
    import anndata as ad

    model, tok = demo
    want = oracle_pooled(model, with_unk(rows, tok))
    path = write_atlas(tmp_path / "atlas.h5ad", tok, rows)
    backed = ad.read_h5ad(path, backed="r")
    try:
        with pytest.warns(UserWarning, match="no tokens"):
            got = tl.embed(backed, model, block_size=BLOCK, progress=False)
        assert got is backed
        np.testing.assert_allclose(backed.obsm["X_atacformer"], want, atol=1e-5)
    finally:
        backed.file.close()
    zpath = write_atlas(tmp_path / "atlas.zarr", tok, rows)
    with pytest.warns(UserWarning, match="no tokens"):
        z = tl.embed(zpath, model, block_size=BLOCK, progress=False)
    np.testing.assert_allclose(z.obsm["X_atacformer"], want, atol=1e-5)


def test_truncated_cells_keep_the_subset_the_in_memory_path_keeps(tmp_path, demo, rows):
    model, tok = demo
    path = write_atlas(tmp_path / "atlas.h5ad", tok, rows[:40])
    with pytest.warns(UserWarning, match="no tokens"):
        got = tl.embed(path, model, block_size=7, max_tokens_per_cell=20, progress=False)
    cells = af.TokenizedCells.from_lists(with_unk(rows, tok)[:40])
    assert (cells.lengths > 20).sum() > 10
    want = model.encode_tokenized_cells(cells, max_tokens_per_cell=20, progress=False)
    np.testing.assert_allclose(got.obsm["X_atacformer"], want, atol=1e-5)
    # and the subset is really a subset of each long row, of the cut length
    cut = _stream.truncate_at(cells[21:35], 20, 21, 0)
    whole = cells.truncate(20, "random", 0)
    assert cut == whole[21:35]


def test_an_atlas_of_another_universe_is_refused_naming_both(tmp_path, demo, rows):
    model, tok = demo
    other = "0123456789abcdef0123456789abcdef"
    path = write_atlas(tmp_path / "atlas.h5ad", tok, rows, universe_id=other)
    out = tmp_path / "emb.h5ad"
    with pytest.raises(af.InvalidInputError, match=f"{other}.*{tok.universe_id}"):
        tl.embed(path, model, out=out, progress=False)
    assert not out.exists() and not (tmp_path / "emb.h5ad.partial").exists()
    assert main(["embed", str(path), "--model", "demo", "-o", str(out), "-q"]) == 1
    assert not out.exists()


class Interrupt(KeyboardInterrupt):
    pass


def test_an_interrupted_run_leaves_no_output_and_a_rerun_resumes_bit_for_bit(
    atlas, demo, tmp_path, monkeypatch, caplog
):
    model, _ = demo
    whole = tl.embed(atlas, model, block_size=BLOCK, progress=False).obsm["X_atacformer"]
    out = tmp_path / "emb.h5ad"
    write = _stream.BlockStore.write
    calls = []

    def stop_after_two(self, index, values):
        if len(calls) == 2:
            raise Interrupt  # Ctrl-C while the third block is written
        calls.append(index)
        write(self, index, values)

    monkeypatch.setattr(_stream.BlockStore, "write", stop_after_two)
    with pytest.raises(Interrupt):
        tl.embed(atlas, model, block_size=BLOCK, out=out, progress=False)
    assert not out.exists()
    store = tmp_path / "emb.h5ad.partial"
    assert sorted(p.name for p in store.glob("block_*.npy")) == [
        "block_0000000.npy",
        "block_0000001.npy",
    ]
    monkeypatch.setattr(_stream.BlockStore, "write", write)
    encoded = []
    embed_block = _stream.embed_block
    monkeypatch.setattr(
        _stream,
        "embed_block",
        lambda atlas, m, t, start, *a: encoded.append(start) or embed_block(atlas, m, t, start, *a),
    )
    with caplog.at_level(logging.WARNING, logger="atacformer"):
        again = tl.embed(atlas, model, block_size=BLOCK, out=out, progress=False)
    assert "skipping 2 of 5 finished blocks" in caplog.text
    assert encoded == [32, 48, 64]  # only the unfinished blocks ran
    np.testing.assert_array_equal(again.obsm["X_atacformer"], whole)
    assert out.exists() and not store.exists()


def test_a_changed_setting_or_model_starts_over_with_a_message(
    atlas, demo, tmp_path, monkeypatch, caplog
):
    import copy

    import torch

    model, _ = demo
    out = tmp_path / "emb.h5ad"
    store = _stream.BlockStore(tmp_path / "emb.h5ad.partial")
    write = _stream.BlockStore.write

    def interrupted_run(net, batch_size):
        def first_only(self, index, values):
            if index > 0:
                raise Interrupt
            write(self, index, values)

        monkeypatch.setattr(_stream.BlockStore, "write", first_only)
        with pytest.raises(Interrupt):
            tl.embed(atlas, net, block_size=BLOCK, batch_size=batch_size, out=out, progress=False)
        monkeypatch.setattr(_stream.BlockStore, "write", write)
        assert store.finished(5) == {0}

    interrupted_run(model, 64)
    with caplog.at_level(logging.WARNING, logger="atacformer"):
        tl.embed(atlas, model, block_size=BLOCK, batch_size=8, out=out, progress=False)
    assert "from another run (changed: settings): starting over" in caplog.text
    assert "skipping" not in caplog.text
    caplog.clear()
    interrupted_run(model, 64)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.base_model.encoder.layers[0].linear1.bias.add_(0.5)
    with caplog.at_level(logging.WARNING, logger="atacformer"):
        changed = tl.embed(atlas, other, block_size=BLOCK, out=out, progress=False)
    assert "changed: model" in caplog.text
    fresh = tl.embed(atlas, other, block_size=BLOCK, progress=False)
    np.testing.assert_array_equal(changed.obsm["X_atacformer"], fresh.obsm["X_atacformer"])


def test_the_command_line_streams_an_atlas_and_keeps_every_other_output(
    atlas, demo, rows, tmp_path, capsys
):
    model, tok = demo
    want = oracle_pooled(model, with_unk(rows, tok))
    out = tmp_path / "emb.h5ad"
    argv = ["embed", str(atlas), "--model", "demo", "--block-size", "32", "-o", str(out)]
    assert main(argv) == 0
    assert "70 cells x 64 dims" in capsys.readouterr().out
    import anndata as ad

    np.testing.assert_allclose(ad.read_h5ad(out).obsm["X_atacformer"], want, atol=1e-5)
    npy = tmp_path / "emb.npy"
    assert main(["embed", str(atlas), "--model", "demo", "-o", str(npy), "-q"]) == 0
    np.testing.assert_allclose(np.load(npy), want, atol=1e-5)
    clustered = tmp_path / "clustered.h5ad"
    argv = ["embed", str(atlas), "--model", "demo", "-o", str(clustered), "--n-clusters", "3"]
    assert main([*argv, "-q"]) == 0
    assert ad.read_h5ad(clustered).obs["atacformer_cluster"].nunique() == 3
    assert main(["embed", str(atlas), "--model", "demo", "-o", str(out), "--layer", "x"]) == 2 - 1
    assert main(["embed", str(atlas), "--model", "demo", "-o", str(out), "--block-size", "0"]) == 1


def test_blocks_are_shared_by_tokens_each_block_once():
    rng = np.random.default_rng(0)
    for world in (1, 2, 3, 5):
        tokens = rng.integers(1, 1000, size=23).tolist()
        owned = assign = _stream.assign_blocks(tokens, world)
        assert sorted(b for part in owned for b in part) == list(range(23))
        assert all(part == sorted(part) for part in assign)
        loads = [sum(tokens[b] for b in part) for part in owned]
        # greedy longest-first: no rank passes the lightest by more than the largest block
        assert max(loads) - min(loads) <= max(tokens)
    assert _stream.assign_blocks([10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 2) == [[0], list(range(1, 11))]


def test_atlas_blocks_are_the_rows_and_a_non_atlas_is_refused(atlas, demo, rows, tmp_path):
    _, tok = demo
    with _stream.Atlas(atlas) as a:
        block = a.block(5, 12, tok.unk_token_id)
        assert [c.tolist() for c in block] == [r.tolist() for r in with_unk(rows, tok)[5:12]]
        assert [c.tolist() for c in a.block(5, 12)][2] == []
    import anndata as ad

    plain = tmp_path / "plain.h5ad"
    ad.AnnData(np.ones((3, 2), dtype=np.float32)).write_h5ad(plain)
    assert not _stream.is_atlas(plain) and _stream.is_atlas(atlas)
    with pytest.raises(af.InvalidInputError, match="universe_id is missing|not a CSR"):
        _stream.Atlas(plain)
    import h5py

    broken = write_atlas(tmp_path / "broken.h5ad", tok, rows[:5])
    with h5py.File(broken, "a") as f:
        del f["X"]["indptr"]
    with pytest.raises(af.InvalidInputError, match="broken.h5ad: not a readable tokenized atlas"):
        _stream.Atlas(broken)


def test_the_atlas_dataset_serves_rows_block_by_block_to_a_dataloader(atlas, demo, rows):
    import torch

    from atacformer.training import AtlasDataset, DataCollatorForBatchCorrection

    model, tok = demo
    data = AtlasDataset(atlas, batch_key="sample", block_size=8)
    assert len(data) == N_CELLS
    assert data[7]["input_ids"].tolist() == [tok.unk_token_id]
    assert data[-1]["input_ids"].tolist() == rows[-1].tolist()
    assert [data[i]["batch_label"] for i in range(4)] == [0, 1, 0, 1]
    order = data.block_order(seed=1)
    assert sorted(order) == list(range(N_CELLS)) and order != list(range(N_CELLS))
    blocks = [i // 8 for i in order]
    assert sum(a != b for a, b in zip(blocks, blocks[1:], strict=False)) == 8  # each block once
    collate = DataCollatorForBatchCorrection.from_config(model.config, max_length=64)
    loader = torch.utils.data.DataLoader(
        data, batch_size=10, sampler=order, collate_fn=collate, num_workers=0
    )
    batches = list(loader)
    assert sum(len(b["batch_labels"]) for b in batches) == N_CELLS
    with pytest.raises(IndexError):
        data[N_CELLS]
    with pytest.raises(af.InvalidInputError, match="no column 'donor'"):
        AtlasDataset(atlas, batch_key="donor")


def test_the_gpu_benchmark_runs_in_smoke_mode_and_its_methods_agree():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benches" / "bench_gpu.py"
    argv = [sys.executable, str(script), "--smoke", "--n-cells", "8", "--reference-cells", "4"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    methods = [row.split("|")[1].split(":")[0].strip() for row in rows[2:]]
    assert methods == ["reference", "bucketed", "packed", "library"]
    diffs = [float(row.rstrip(" |").rsplit("|", 1)[1]) for row in rows[2:]]
    assert diffs[0] == 0.0 and max(diffs) < 0.05  # bf16 against fp32: the same embeddings
    assert "% of matmul" in rows[0] and "Best:" in run.stdout
