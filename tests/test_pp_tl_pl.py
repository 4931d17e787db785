"""The pipeline API: ``pp.tokenize`` on every input kind, ``tl.embed``/``tl.cluster`` into an
AnnData, ``pl.embedding`` figures (UMAP and PCA), checked against hand-made fixtures and
brute force."""

from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import atacformer as af
from atacformer import InvalidInputError, MissingFileError, TokenizedCells, Tokenizer

ROOT = Path(__file__).resolve().parent.parent
PBMC = ROOT / "examples" / "pbmc_hg38.h5ad"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

UNIVERSE = "chr1\t100\t200\nchr1\t300\t400\nchr2\t50\t150\n"
# barcode -> fragments; the tokens each barcode must get (unique ids, genomic order)
FRAGMENTS = [
    ("chr1", 10, 20, "GGG-1"),  # nothing
    ("chr1", 150, 160, "AAA-1"),  # 0
    ("chr1", 190, 310, "TTT-1"),  # 0 and 1
    ("chr1", 350, 360, "AAA-1"),  # 1
    ("chr2", 10, 60, "CCC-1"),  # 2
]
EXPECTED = {"AAA-1": [0, 1], "TTT-1": [0, 1], "CCC-1": [2]}


def write(path: Path, text: str, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def fragment_text(rows) -> str:
    return "".join(f"{c}\t{s}\t{e}\t{b}\t1\n" for c, s, e, b in rows)


@pytest.fixture
def universe(tmp_path) -> Path:
    return write(tmp_path / "universe.bed", UNIVERSE)


@pytest.fixture
def fragments(tmp_path) -> Path:
    return write(tmp_path / "fragments.tsv.gz", fragment_text(FRAGMENTS), gz=True)


def tiny_model(
    tokenizer: Tokenizer, max_positions: int = 64, seed: int = 0, positions: bool = True
):
    """An untrained encoder whose vocabulary is the tokenizer's."""
    import torch

    from atacformer import AtacformerConfig, AtacformerModel

    torch.manual_seed(seed)
    config = AtacformerConfig.from_tokenizer(
        tokenizer,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=max_positions,
        use_pos_embeddings=positions,
    )
    return AtacformerModel(config).eval()


def as_dict(cells: TokenizedCells) -> dict[str, list[int]]:
    return {n: c.tolist() for n, c in zip(cells.names, cells, strict=True)}


# ------------------------------------------------------------------------------------ pp


def test_tokenize_one_fragment_file_keeps_plain_barcodes(universe, fragments):
    cells = af.pp.tokenize(fragments, universe)  # the tokenizer by its universe file
    assert cells.names == ["AAA-1", "TTT-1", "CCC-1"]  # first seen; GGG overlaps nothing
    assert as_dict(cells) == EXPECTED
    listed = af.pp.tokenize(fragments, Tokenizer(universe), barcodes=["CCC-1", "GGG-1"])
    assert as_dict(listed) == {"CCC-1": [2], "GGG-1": [3]}  # a listed empty cell: [unk]
    assert af.pp.tokenize(fragments, universe, min_fragments=2).names == ["AAA-1"]
    assert af.pp.tokenize(fragments, universe, max_fragments=1).names == ["TTT-1", "CCC-1"]


def test_tokenize_several_fragment_files_prefixes_the_sample(tmp_path, universe, fragments):
    other = write(tmp_path / "donor2.tsv.gz", fragment_text([("chr1", 310, 320, "AAA-1")]), gz=True)
    cells = af.pp.tokenize([fragments, other], universe)
    assert as_dict(cells) == {
        **{f"fragments#{b}": ids for b, ids in EXPECTED.items()},
        "donor2#AAA-1": [1],
    }
    # Two 10x folders whose files have the same name: the folders tell them apart.
    (tmp_path / "s1").mkdir()
    (tmp_path / "s2").mkdir()
    a = write(tmp_path / "s1" / "fragments.tsv.gz", fragment_text(FRAGMENTS[:2]), gz=True)
    b = write(tmp_path / "s2" / "fragments.tsv.gz", fragment_text(FRAGMENTS[4:]), gz=True)
    assert af.pp.tokenize([a, b], universe).names == ["s1/fragments#AAA-1", "s2/fragments#CCC-1"]


def test_tokenize_bed_files_folder_and_list(tmp_path, universe):
    beds = tmp_path / "beds"
    beds.mkdir()
    write(beds / "b.bed", "chr2\t0\t100\n")
    write(beds / "a.bed.gz", "chr1\t150\t350\nchr9\t1\t2\n", gz=True)
    write(beds / "notes.txt", "not a bed file")
    expected = {"a.bed.gz": [0, 1], "b.bed": [2]}
    assert as_dict(af.pp.tokenize(beds, universe)) == expected
    assert as_dict(af.pp.tokenize([beds / "a.bed.gz", beds / "b.bed"], universe)) == expected


def pbmc_tokenizer(folder: Path) -> Tokenizer:
    """A tokenizer whose universe is the PBMC matrix's own peaks, in var order."""
    var = ad.read_h5ad(PBMC).var
    rows = zip(var["chr"].astype(str), var["start"], var["end"], strict=True)
    write(folder / "universe.bed", "".join(f"{c}\t{s}\t{e}\n" for c, s, e in rows))
    return Tokenizer(folder / "universe.bed")


def test_tokenize_anndata_and_h5ad_path_keep_obs_order(tmp_path):
    tok = pbmc_tokenizer(tmp_path)
    adata = ad.read_h5ad(PBMC)
    x = adata.X.toarray()
    for data in (adata, PBMC, str(PBMC)):
        cells = af.pp.tokenize(data, tok)
        assert cells.names == list(adata.obs_names)
        for row, ids in enumerate(cells):  # universe id i is var row i
            assert sorted(ids.tolist()) == np.flatnonzero(x[row]).tolist()
    # A layer instead of X: here one that keeps only the first 10 peaks of each cell.
    adata.layers["first10"] = sp.csr_matrix(np.where(np.arange(x.shape[1]) < 10, x, 0))
    cells = af.pp.tokenize(adata, tok, layer="first10")
    for row, ids in enumerate(cells):  # a cell with none of them gets [unk]
        assert sorted(ids.tolist()) == (np.flatnonzero(x[row, :10]).tolist() or [tok.unk_token_id])


def test_tokenize_atok_and_tokenized_cells_pass_through(tmp_path, universe, fragments):
    cells = af.pp.tokenize(fragments, universe)
    assert af.pp.tokenize(cells, None) is cells
    cells.save(tmp_path / "cells.atok")
    assert af.pp.tokenize(tmp_path / "cells.atok", None) == cells
    # A name without a telling suffix, read by format=.
    (tmp_path / "cells.bin").write_bytes((tmp_path / "cells.atok").read_bytes())
    assert af.pp.tokenize(tmp_path / "cells.bin", None, format="atok") == cells


def test_tokenize_by_the_demo_name(tmp_path):
    demo = Tokenizer.from_pretrained("demo")
    universe = demo.universe
    c, s, e = str(universe.chroms[5]), int(universe.starts[5]), int(universe.ends[5])
    path = write(tmp_path / "x_fragments.tsv", fragment_text([(c, s, e, "X-1")]))
    assert as_dict(af.pp.tokenize(path, "demo")) == {"X-1": [5]}


def test_tokenize_threads_are_restored(universe, fragments):
    before = af.get_num_threads()
    af.pp.tokenize(fragments, universe, threads=1)
    assert af.get_num_threads() == before
    with pytest.raises(InvalidInputError, match="threads"):
        af.pp.tokenize(fragments, universe, threads=0)


def test_tokenize_errors(tmp_path, universe, fragments):
    with pytest.raises(MissingFileError, match="no such file"):
        af.pp.tokenize(tmp_path / "nope.tsv.gz", universe)
    bed = write(tmp_path / "cell.bed", "chr1\t100\t200\n")
    with pytest.raises(InvalidInputError, match="min_fragments apply to fragment files"):
        af.pp.tokenize(bed, universe, min_fragments=3)
    with pytest.raises(InvalidInputError, match="layer applies to AnnData"):
        af.pp.tokenize(fragments, universe, layer="counts")
    with pytest.raises(InvalidInputError, match="all be BED files"):
        af.pp.tokenize([bed, fragments], universe)
    with pytest.raises(InvalidInputError, match="format"):
        af.pp.tokenize(write(tmp_path / "cells.txt", "x"), universe)
    with pytest.raises(InvalidInputError, match="needs a tokenizer"):
        af.pp.tokenize(fragments, None)
    with pytest.raises(af.AtacformerTypeError, match="data must be"):
        af.pp.tokenize(42, universe)
    empty = write(tmp_path / "far_fragments.tsv", fragment_text([("chr9", 1, 2, "Z-1")]))
    with pytest.raises(InvalidInputError, match="no cell has a fragment"):
        af.pp.tokenize(empty, universe)


# ------------------------------------------------------------------------------------ tl


def test_embed_anndata_in_place_row_by_row(tmp_path):
    tok = pbmc_tokenizer(tmp_path)
    model = tiny_model(tok, positions=False)  # tokens are a set: their order does not matter
    adata = ad.read_h5ad(PBMC)
    out = af.tl.embed(adata, model, tok, progress=False)
    assert out is adata
    emb = adata.obsm["X_atacformer"]
    assert emb.shape == (adata.n_obs, 16) and emb.dtype == np.float32
    x = adata.X.toarray()
    np.testing.assert_array_equal(adata.obs["atacformer_n_tokens"], (x > 0).sum(axis=1))
    # Each row is its own cell: embed cells 0, 7 and 19 alone from their nonzero peaks.
    for row in (0, 7, 19):
        alone = model.encode_tokenized_cells([np.flatnonzero(x[row])], progress=False)
        np.testing.assert_allclose(emb[row], alone[0], rtol=1e-5, atol=1e-6)
    record = adata.uns["atacformer"]
    assert record["key_added"] == "X_atacformer" and record["batch_size"] == 64
    assert record["max_tokens_per_cell"] == 0  # no limit: the model uses no positions
    # Everything recorded can be written to .h5ad and read back.
    adata.write_h5ad(tmp_path / "out.h5ad")
    assert dict(ad.read_h5ad(tmp_path / "out.h5ad").uns["atacformer"]) == record


def test_embed_fragments_makes_a_new_anndata(universe, fragments):
    tok = Tokenizer(universe)
    model = tiny_model(tok)
    adata = af.tl.embed(fragments, model, tok, key_added="X_tiny", progress=False)
    assert list(adata.obs_names) == ["AAA-1", "TTT-1", "CCC-1"]
    assert adata.obs["atacformer_n_tokens"].tolist() == [2, 2, 1]
    alone = model.encode_tokenized_cells([[0, 1], [0, 1], [2]], progress=False)
    np.testing.assert_allclose(adata.obsm["X_tiny"], alone, rtol=1e-5, atol=1e-6)
    assert adata.uns["atacformer"]["key_added"] == "X_tiny"


def test_embed_by_name_records_the_model(tmp_path, universe, fragments):
    folder = tmp_path / "tiny_model"
    tok = Tokenizer(universe)
    tok.save_pretrained(folder)
    tiny_model(tok).save_pretrained(folder)
    adata = af.tl.embed(fragments, str(folder), progress=False)  # its own tokenizer
    assert adata.uns["atacformer"]["model"] == str(folder)
    assert adata.uns["atacformer"]["tokenizer"] == str(folder)
    assert adata.obsm["X_atacformer"].shape == (3, 16)


def test_embed_truncates_to_the_model_context_by_default(universe, fragments):
    tok = Tokenizer(universe)
    model = tiny_model(tok, max_positions=1)  # cells of 2 tokens do not fit
    adata = af.tl.embed(fragments, model, tok, progress=False)
    assert adata.uns["atacformer"]["max_tokens_per_cell"] == 1
    with pytest.raises(InvalidInputError, match="max_tokens_per_cell 2 is more than the model"):
        af.tl.embed(fragments, model, tok, max_tokens_per_cell=2, progress=False)


def test_embed_checks_the_vocabulary_before_any_work(monkeypatch, tmp_path, fragments):
    demo = Tokenizer.from_pretrained("demo")
    small = Tokenizer(write(tmp_path / "u.bed", UNIVERSE))

    def no_work(*args, **kwargs):
        raise AssertionError("tokenized before the check")

    monkeypatch.setattr(af.pp, "_tokenize", no_work)
    monkeypatch.setattr(af.pp, "tokenize", no_work)
    with pytest.raises(InvalidInputError, match="vocabulary has 10 ids"):
        af.tl.embed(fragments, tiny_model(demo), small, progress=False)
    # Same size, but the model puts <cls> elsewhere.
    model = tiny_model(small)
    model.config.cls_token_id = small.cls_token_id + 1
    with pytest.raises(InvalidInputError, match="cls_token_id"):
        af.tl.embed(fragments, model, small, progress=False)
    # A device this machine lacks (or no device at all) also fails first, by its name.
    with pytest.raises(InvalidInputError, match="device 'nodevice' is not a torch device"):
        af.tl.embed(fragments, tiny_model(small), small, device="nodevice", progress=False)


def test_embed_refuses_cells_of_another_vocabulary(universe, fragments):
    cells = af.pp.tokenize(fragments, universe)
    with pytest.raises(InvalidInputError, match="another vocabulary"):
        af.tl.embed(cells, tiny_model(Tokenizer.from_pretrained("demo")), progress=False)


def test_embed_warns_about_cells_that_overlap_nothing(universe, fragments):
    tok = Tokenizer(universe)
    cells = af.pp.tokenize(fragments, tok, barcodes=["GGG-1", "AAA-1"])  # GGG-1: [unk]
    with pytest.warns(UserWarning, match="1 of 2 cells overlap no region"):
        af.tl.embed(cells, tiny_model(tok), tok, progress=False)


@pytest.mark.parametrize(
    ("option", "value"),
    [("batch_size", 0), ("max_tokens_per_cell", 0), ("dtype", "float64"), ("key_added", "")],
)
def test_embed_bad_settings(universe, fragments, option, value):
    tok = Tokenizer(universe)
    with pytest.raises(InvalidInputError, match=option.split("_per")[0]):
        af.tl.embed(fragments, tiny_model(tok), tok, progress=False, **{option: value})


def blobs(n_per: int = 20, seed: int = 0) -> tuple[ad.AnnData, np.ndarray]:
    """Three far-apart clouds of points in 8 dimensions, and which cloud each point is in."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(3), n_per)
    centres = np.eye(3, 8) * 50
    points = centres[truth] + rng.normal(size=(len(truth), 8))
    adata = ad.AnnData(obs=pd.DataFrame(index=[f"c{i}" for i in range(len(truth))]))
    adata.obsm["X_atacformer"] = points.astype(np.float32)
    adata.obs["truth"] = pd.Categorical([f"t{t}" for t in truth])
    return adata, truth


def test_cluster_finds_separated_groups():
    adata, truth = blobs()
    assert af.tl.cluster(adata, 3) is None
    labels = adata.obs["atacformer_cluster"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert list(labels.cat.categories) == ["0", "1", "2"]
    # Same partition as the truth: each cluster is exactly one cloud.
    pairs = set(zip(truth.tolist(), labels.astype(str), strict=True))
    assert len(pairs) == 3 and len({p[1] for p in pairs}) == 3


@pytest.mark.parametrize("k", [1, 0, 61, 2.5, True])
def test_cluster_rejects_k_out_of_range(k):
    adata, _ = blobs()
    with pytest.raises(InvalidInputError, match=f"n_clusters .* got {k!r}"):
        af.tl.cluster(adata, k)
    assert "atacformer_cluster" not in adata.obs


def test_cluster_needs_the_representation():
    adata, _ = blobs()
    with pytest.raises(InvalidInputError, match="X_other"):
        af.tl.cluster(adata, 3, use_rep="X_other")


# ------------------------------------------------------------------------------------ pl


def collections_by_label(ax) -> dict[str, tuple[float, ...]]:
    return {c.get_label(): tuple(c.get_facecolor()[0]) for c in ax.collections}


def test_embedding_pca_branch_matches_brute_force_and_is_reused(tmp_path, monkeypatch):
    adata, _ = blobs()
    adata.uns["atacformer"] = {"model": "tiny-model"}
    fig = af.pl.embedding(adata, color="truth", basis="pca", save=tmp_path / "map.png")
    rep = adata.obsm["X_atacformer"].astype(np.float64)
    centred = rep - rep.mean(axis=0)
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred)  # brute force: top 2 eigenvectors
    top = centred @ eigvecs[:, ::-1][:, :2]
    got = adata.obsm["X_pca"]
    for j in range(2):  # equal up to sign
        sign = np.sign(got[:, j] @ top[:, j])
        np.testing.assert_allclose(got[:, j] * sign, top[:, j], rtol=1e-3, atol=1e-3)
    assert fig.axes[0].get_xlabel() == "PCA 1"
    title = fig.axes[0].get_title()
    assert "tiny-model" in title and "truth" in title
    assert (tmp_path / "map.png").read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["map.png"]  # no temporary file left
    # The stored map is reused.
    monkeypatch.setattr(af.pl, "_pca", lambda rep: pytest.fail("recomputed"))
    af.pl.embedding(adata, color="truth", basis="pca")


def test_embedding_umap_branch_and_auto(monkeypatch):
    adata, _ = blobs()  # 60 cells: enough for UMAP
    fig = af.pl.embedding(adata, color="truth")  # basis="auto", umap-learn is installed
    assert fig.axes[0].get_xlabel() == "UMAP 1"
    coords = adata.obsm["X_umap"]
    assert coords.shape == (60, 2) and np.isfinite(coords).all()
    assert adata.uns["atacformer"]["umap_from"] == "X_atacformer"
    # The clouds stay apart on the map: each point is nearer its own cloud's centre.
    truth = adata.obs["truth"].to_numpy()
    centres = {t: coords[truth == t].mean(axis=0) for t in set(truth)}
    for point, t in zip(coords, truth, strict=True):
        nearest = min(centres, key=lambda c: np.linalg.norm(point - centres[c]))
        assert nearest == t
    monkeypatch.setattr(af.pl, "_umap", lambda rep, seed: pytest.fail("recomputed"))
    af.pl.embedding(adata, color="truth", basis="umap")
    small, _ = blobs(n_per=5)  # 15 cells: auto falls back to PCA
    assert af.pl.embedding(small).axes[0].get_xlabel() == "PCA 1"


def test_embedding_does_not_reuse_a_map_another_tool_made():
    adata, _ = blobs()
    foreign = np.full((adata.n_obs, 2), 7.0)  # e.g. scanpy's UMAP of another modality
    adata.obsm["X_pca"] = foreign.copy()
    af.pl.embedding(adata, color="truth", basis="pca")
    assert not np.allclose(adata.obsm["X_pca"], foreign)
    assert adata.uns["atacformer"]["pca_from"] == "X_atacformer"


def test_embedding_keeps_one_colour_per_category_across_panels():
    adata, truth = blobs()
    rng = np.random.default_rng(1)
    adata.obs["shuffled"] = pd.Categorical(rng.permutation(adata.obs["truth"].to_numpy()))
    adata.obs["other"] = pd.Categorical(np.where(truth == 0, "t2", "t9"))  # shares t2
    fig = af.pl.embedding(adata, color=["truth", "shuffled", "other"], basis="pca")
    panels = [collections_by_label(ax) for ax in fig.axes[:3]]
    for category in ("t0", "t1", "t2"):
        assert panels[0][category] == panels[1][category]
    assert panels[2]["t2"] == panels[0]["t2"]
    colours = set(panels[0].values()) | {panels[2]["t9"]}
    assert len(colours) == 4  # four categories, four colours
    assert [ax.get_title().split(" by ")[1] for ax in fig.axes[:3]] == [
        "truth",
        "shuffled",
        "other",
    ]


def test_embedding_on_given_axes_and_errors(tmp_path):
    import matplotlib.pyplot as plt

    adata, _ = blobs()
    fig, ax = plt.subplots()
    assert af.pl.embedding(adata, color="truth", basis="pca", ax=ax) is fig
    with pytest.raises(InvalidInputError, match="ax takes one panel"):
        af.pl.embedding(adata, color=["truth", "truth"], basis="pca", ax=ax)
    with pytest.raises(InvalidInputError, match="no such obs column"):
        af.pl.embedding(adata, color="nope")
    with pytest.raises(InvalidInputError, match="basis"):
        af.pl.embedding(adata, basis="tsne")
    plt.close("all")


def test_embedding_colour_scale_for_a_numeric_column():
    adata, _ = blobs()
    adata.obs["depth"] = np.arange(adata.n_obs, dtype=float)
    fig = af.pl.embedding(adata, color="depth", basis="pca")
    assert len(fig.axes) == 2  # the panel and its colour bar


def test_re_embedding_in_place_drops_the_map_of_the_old_embeddings(tmp_path):
    tok = pbmc_tokenizer(tmp_path)
    adata = ad.read_h5ad(PBMC)
    af.tl.embed(adata, tiny_model(tok, seed=0), tok, progress=False)
    af.pl.map_2d(adata, basis="pca")
    assert "X_pca" in adata.obsm and adata.uns["atacformer"]["pca_from"] == "X_atacformer"
    af.tl.embed(adata, tiny_model(tok, seed=1), tok, progress=False)
    assert "X_pca" not in adata.obsm and "pca_from" not in adata.uns["atacformer"]
    af.tl.embed(adata, tiny_model(tok, seed=2), tok, key_added="X_other", progress=False)
    af.pl.map_2d(adata, basis="pca")
    af.tl.embed(adata, tiny_model(tok, seed=3), tok, key_added="X_third", progress=False)
    assert "X_pca" in adata.obsm  # made from X_atacformer, which did not change


def test_embedding_refuses_an_image_format_it_cannot_write(tmp_path):
    adata, _ = blobs()
    with pytest.raises(InvalidInputError, match=r"\.xyz is not an image format"):
        af.pl.embedding(adata, color="truth", basis="pca", save=tmp_path / "map.xyz")
    assert list(tmp_path.iterdir()) == []


def test_tokenize_refuses_a_max_fragments_below_one(universe, fragments):
    with pytest.raises(InvalidInputError, match="max_fragments must be at least 1, got 0"):
        af.pp.tokenize(fragments, universe, max_fragments=0)
    with pytest.raises(InvalidInputError, match="max_fragments must be at least 1"):
        af.pp.tokenize(fragments, universe, max_fragments=-3)
