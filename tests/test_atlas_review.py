"""Review fixes of the tokenized atlas: empty atlases, QC-filtered samples, universes of
AnnData round trips, a real atlas end to end, and options an atlas or manifest ignores."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _atlas_helpers import write_atlas

import atacformer as af
from atacformer.cli import main
from atacformer.coverage import CoverageWarning


@pytest.fixture(scope="module")
def demo():
    from atacformer.hub import load_model

    return load_model("demo"), af.Tokenizer.from_pretrained("demo")


def empty_rows(n: int):
    return [np.zeros(0, dtype=np.int32) for _ in range(n)]


def test_the_cli_refuses_an_atlas_where_no_cell_has_a_token(tmp_path, demo, capsys):
    atlas = write_atlas(tmp_path / "atlas.h5ad", demo[1], empty_rows(6))
    out = tmp_path / "emb.h5ad"
    assert main(["embed", str(atlas), "--model", "demo", "-o", str(out), "-q"]) != 0
    err = capsys.readouterr().err
    assert "no cell has a token" in err and "--allow-empty" in err
    assert not out.exists()
    argv = ["embed", str(atlas), "--model", "demo", "-o", str(out), "-q", "--allow-empty"]
    assert main(argv) == 0
    assert out.exists()
    assert "6 of 6 cells of the atlas have no tokens" in capsys.readouterr().err


def test_the_library_warns_with_a_coverage_warning_for_empty_atlas_cells(tmp_path, demo):
    atlas = write_atlas(tmp_path / "atlas.h5ad", demo[1], empty_rows(4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = af.tl.embed(atlas, demo[0], tokenizer=demo[1], progress=False)
    assert adata.n_obs == 4
    kinds = [w.category for w in caught if "have no tokens" in str(w.message)]
    assert kinds == [CoverageWarning]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """Two tiny synthetic samples (about 20 cells each) over a 600-peak universe."""
    from atacformer import synthetic as syn

    root = tmp_path_factory.mktemp("review")
    design = syn.make_design(
        syn.DesignSpec(n_peaks=600, peaks_per_type=30, peaks_per_lineage=60, seed=5)
    )
    universe = design.write_universe(root / "universe.bed")
    spec = dict(n_cells=20, median_fragments=120, min_fragments=40)
    for name, seed in (("A", 21), ("B", 22)):
        cells = syn.sample_cells(design, syn.CellSpec(seed=seed, **spec))
        cells.write_fragments(root / f"{name}.tsv.gz")
    manifest = root / "m.tsv"
    manifest.write_text("sample\tfragments\nA\tA.tsv.gz\nB\tB.tsv.gz\n")
    return {"root": root, "manifest": manifest, "tok": af.Tokenizer.from_bed(universe)}


def test_a_sample_whose_cells_all_fail_the_filters_says_so(samples):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        with pytest.raises(af.InvalidInputError) as caught:
            af.pp.tokenize(samples["manifest"], samples["tok"], min_fragments=100000)
    message = str(caught.value)
    assert "no cell of sample 'A'" in message and "passes min_fragments=100000" in message
    assert "has a fragment in the universe" not in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        with pytest.raises(af.InvalidInputError, match="max_fragments=1"):
            af.pp.tokenize(samples["manifest"], samples["tok"], max_fragments=1)


@pytest.fixture(scope="module")
def real_atlas(samples):
    return af.pp.tokenize(samples["manifest"], samples["tok"], out=samples["root"] / "atlas.h5ad")


def test_from_anndata_needs_a_known_universe_and_to_anndata_keeps_to_it(samples, real_atlas):
    import anndata as ad

    tok = samples["tok"]
    adata = ad.read_h5ad(real_atlas)
    plain = adata.copy()
    del plain.uns["atacformer"]
    with pytest.raises(af.InvalidInputError, match="universe_id"):
        af.TokenizedCells.from_anndata(plain)
    cells = af.TokenizedCells.from_anndata(plain, tokenizer=tok)
    assert cells.universe_id == tok.universe_id
    assert np.array_equal(cells.ids, adata.X.indices)
    demo_tok = af.Tokenizer.from_pretrained("demo")
    with pytest.raises(af.InvalidInputError, match="columns"):
        af.TokenizedCells.from_anndata(plain, tokenizer=demo_tok)  # 600 columns, not demo's
    other = adata.copy()
    other.uns["atacformer"] = {**adata.uns["atacformer"], "universe_id": "0" * 32}
    with pytest.raises(af.InvalidInputError, match="0" * 32):
        af.TokenizedCells.from_anndata(other, tokenizer=tok)
    recorded = af.TokenizedCells.from_anndata(adata)
    assert recorded.universe_id == tok.universe_id
    with pytest.raises(af.InvalidInputError, match="universe"):
        recorded.to_anndata(demo_tok)
    again = recorded.to_anndata(tok)
    assert (again.X != adata.X).nnz == 0


@pytest.fixture(scope="module")
def demo_atlas(tmp_path_factory, demo):
    """A real atlas of the demo universe: 2 synthetic samples x 20 cells, tokenized by
    ``pp.tokenize`` from a manifest."""
    import json

    from atacformer import synthetic as syn
    from atacformer.hub import resolve_pretrained

    root = tmp_path_factory.mktemp("demo_atlas")
    record = json.loads((resolve_pretrained("demo") / "synthetic.json").read_text())
    design = syn.make_design(syn.DesignSpec(**record["design"]))
    for name, seed in (("A", 41), ("B", 42)):
        spec = syn.CellSpec(**{**record["eval_cells"], "n_cells": 20, "seed": seed})
        syn.sample_cells(design, spec).write_fragments(root / f"{name}.tsv.gz")
    manifest = root / "m.tsv"
    manifest.write_text("sample\tfragments\nA\tA.tsv.gz\nB\tB.tsv.gz\n")
    return af.pp.tokenize(manifest, demo[1], out=root / "atlas.h5ad")


def test_a_real_atlas_embeds_and_trains_row_for_row(demo_atlas, demo):
    import anndata as ad
    from _model_helpers import oracle_pooled

    from atacformer.training import AtlasDataset

    model, tok = demo
    truth = ad.read_h5ad(demo_atlas)
    assert truth.n_obs == 40 and list(truth.obs["sample"].unique()) == ["A", "B"]
    x = truth.X.tocsr()
    rows = [x.indices[x.indptr[i] : x.indptr[i + 1]] for i in range(truth.n_obs)]
    assert sum(len(r) > 0 for r in rows) > 30  # the synthetic cells do overlap the demo universe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        emb = af.tl.embed(demo_atlas, "demo", progress=False, block_size=16)
    assert list(emb.obs_names) == list(truth.obs_names)
    unk = np.array([tok.unk_token_id], dtype=np.int32)
    want = oracle_pooled(model, [r if len(r) else unk for r in rows])
    np.testing.assert_allclose(emb.obsm["X_atacformer"], want, atol=1e-5)
    dataset = AtlasDataset(demo_atlas, block_size=7)
    assert len(dataset) == truth.n_obs
    for i, r in enumerate(rows):
        got = dataset[i]["input_ids"]
        assert got.dtype == np.int64
        assert np.array_equal(got, r if len(r) else unk)


def test_options_an_atlas_or_a_manifest_would_ignore_are_refused(samples, demo_atlas, capsys):
    out = samples["root"] / "never.h5ad"
    argv = ["tokenize", "--manifest", str(samples["manifest"]), "-o", str(out), "-q"]
    tok = ["--tokenizer", str(samples["root"] / "universe.bed")]
    assert main([*argv, *tok, "--format", "bed"]) != 0
    assert "--format" in capsys.readouterr().err and not out.exists()
    emb = samples["root"] / "never_emb.h5ad"
    argv = ["embed", str(demo_atlas), "--model", "demo", "-o", str(emb), "-q"]
    assert main([*argv, "--chrom-names", "exact"]) != 0
    assert "--chrom-names" in capsys.readouterr().err and not emb.exists()
    with pytest.raises(af.InvalidInputError, match="chrom_names"):
        af.tl.embed(demo_atlas, "demo", chrom_names="exact", progress=False)


def test_the_atlas_dataset_refuses_a_file_that_is_not_an_atlas(samples):
    from atacformer.training import AtlasDataset

    with pytest.raises(af.InvalidInputError, match=r"not an \.h5ad/\.zarr atlas"):
        AtlasDataset(samples["manifest"])
