"""Tokenized atlases (issue 10 §1, §2, §7): manifests, one cell namespace, the on-disk AnnData,
its oracles (ids, counts, QC), reading back, atomic and resumable writes, bad manifests."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest

import atacformer as af
from atacformer import atlas
from atacformer import synthetic as syn
from atacformer.cli import main

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 600-peak universe and three samples: b has a's barcodes on other fragments (so
    every barcode collides), c is a third draw; small enough for brute-force oracles."""
    root = tmp_path_factory.mktemp("atlas")
    design = syn.make_design(
        syn.DesignSpec(n_peaks=600, peaks_per_type=30, peaks_per_lineage=60, seed=3)
    )
    universe = design.write_universe(root / "universe.bed")
    spec = dict(n_cells=25, median_fragments=150, min_fragments=40)
    a = syn.sample_cells(design, syn.CellSpec(seed=11, **spec))
    b = syn.sample_cells(design, syn.CellSpec(seed=12, **spec))
    b.barcodes = list(a.barcodes)
    c = syn.sample_cells(design, syn.CellSpec(seed=13, **spec))
    (root / "frags").mkdir()
    files = {}
    for name, cells in (("a", a), ("b", b), ("c", c)):
        files[name] = cells.write_fragments(root / "frags" / f"{name}.tsv.gz")
    manifest = root / "samples.tsv"
    manifest.write_text(
        "sample\tfragments\tdonor\n"
        "a\tfrags/a.tsv.gz\td1\n"
        "b\tfrags/b.tsv.gz\td1\n"
        "c\tfrags/c.tsv.gz\td2\n"
    )
    return {
        "root": root,
        "tok": af.Tokenizer.from_bed(universe),
        "universe": universe,
        "files": files,
        "manifest": manifest,
    }


@pytest.fixture(scope="module")
def atlas_path(data):
    return af.pp.tokenize(data["manifest"], data["tok"], out=data["root"] / "atlas.h5ad")


def read_universe(path: Path) -> list[tuple[str, int, int]]:
    rows = [line.split("\t") for line in path.read_text().splitlines() if line]
    return [(c, int(s), int(e)) for c, s, e in rows]


def read_fragments(path: Path) -> list[tuple[str, int, int, str]]:
    rows = []
    for line in gzip.decompress(path.read_bytes()).decode().splitlines():
        if line and not line.startswith("#"):
            c, s, e, b = line.split("\t")[:4]
            rows.append((c, int(s), int(e), b))
    return rows


def brute_force(universe, fragments):
    """Per barcode: {region id: overlapping fragments}, fragment lines, and fragments that
    overlap at least one region; overlap is start < region end and region start < end."""
    counts: dict[str, dict[int, int]] = {}
    lines: dict[str, int] = {}
    inside: dict[str, int] = {}
    for c, s, e, b in fragments:
        lines[b] = lines.get(b, 0) + 1
        hit = [i for i, (uc, us, ue) in enumerate(universe) if uc == c and s < ue and us < e]
        if hit:
            inside[b] = inside.get(b, 0) + 1
        cell = counts.setdefault(b, {})
        for i in hit:
            cell[i] = cell.get(i, 0) + 1
    return counts, lines, inside


# ------------------------------------------------------------------- one cell namespace


def test_colliding_barcodes_give_distinct_cells(data, atlas_path):
    adata = ad.read_h5ad(atlas_path)
    assert adata.obs_names.is_unique
    a, b = (adata.obs[adata.obs["sample"] == s] for s in ("a", "b"))
    assert set(a["barcode"]) == set(b["barcode"])  # every barcode in both samples
    assert len(a) > 0 and len(a) == len(b)
    assert all(
        n == f"{s}#{bc}"
        for n, s, bc in zip(adata.obs_names, adata.obs["sample"], adata.obs["barcode"], strict=True)
    )
    assert list(adata.obs["sample"].cat.categories) == ["a", "b", "c"]
    assert list(adata.obs["donor"].astype(str).unique()) == ["d1", "d2"]


def test_each_cell_has_the_ids_of_its_own_file(data, atlas_path):
    adata = ad.read_h5ad(atlas_path)
    tok = data["tok"]
    for sample, path in data["files"].items():
        alone = tok.tokenize_fragments(path)
        rows = np.flatnonzero(adata.obs["sample"].to_numpy() == sample)
        assert list(adata.obs["barcode"].iloc[rows]) == alone.names
        for row, ids in zip(rows, alone, strict=True):
            x = adata.X[row]
            assert np.array_equal(x.indices, np.sort(ids))  # ascending per row


def test_data_and_qc_equal_a_brute_force_count(data, atlas_path):
    adata = ad.read_h5ad(atlas_path)
    universe = read_universe(data["universe"])
    for sample, path in data["files"].items():
        counts, lines, inside = brute_force(universe, read_fragments(path))
        obs = adata.obs[adata.obs["sample"] == sample]
        for name, row in zip(
            obs_barcodes(obs), np.flatnonzero(adata.obs["sample"] == sample), strict=True
        ):
            x = adata.X[row]
            expected = counts[name]
            assert dict(zip(x.indices.tolist(), x.data.tolist(), strict=True)) == {
                k: v for k, v in expected.items()
            }
            assert obs.loc[f"{sample}#{name}", "n_fragments"] == lines[name]
            assert obs.loc[f"{sample}#{name}", "n_fragments_in_universe"] == inside[name]
            assert obs.loc[f"{sample}#{name}", "frac_in_universe"] == pytest.approx(
                inside[name] / lines[name]
            )
            assert obs.loc[f"{sample}#{name}", "n_tokens"] == len(expected)


def obs_barcodes(obs: pd.DataFrame) -> list[str]:
    return [str(b) for b in obs["barcode"]]


# ---------------------------------------------------------------------------- the file


def test_atlas_opens_backed_and_in_memory_in_anndata_encoding(data, atlas_path):
    tok = data["tok"]
    full = ad.read_h5ad(atlas_path)
    backed = ad.read_h5ad(atlas_path, backed="r")
    try:
        assert backed.shape == full.shape == (full.n_obs, tok.vocab_size - 7)
        block = backed[5:9].X
        assert (block != full.X[5:9]).nnz == 0
    finally:
        backed.file.close()
    with h5py.File(atlas_path, "r") as f:
        assert f["X"].attrs["encoding-type"] == "csr_matrix"
        assert f["X/indices"].dtype == np.int32
        assert f["X/indptr"].dtype == np.int64
        assert f["X/data"].dtype == np.uint32
    assert list(full.var_names) == tok.convert_ids_to_tokens(list(range(full.n_vars)))
    regions = read_universe(data["universe"])
    assert list(zip(full.var["chr"], full.var["start"], full.var["end"], strict=True)) == regions
    uns = full.uns["atacformer"]
    assert uns["universe_id"] == tok.universe_id
    assert uns["vocab_size"] == tok.vocab_size
    assert dict(uns["special_tokens"]) == tok.special_tokens_map
    assert uns["version"] == af.__version__
    assert uns["tokenizer"] == str(data["universe"])
    assert list(uns["manifest"]["sample"]) == ["a", "b", "c"]
    assert [Path(p) for p in uns["manifest"]["fragments"]] == list(data["files"].values())


def test_zarr_atlas_equals_the_h5ad_one(data, atlas_path, tmp_path):
    out = af.pp.tokenize(data["manifest"], data["tok"], out=tmp_path / "atlas.zarr")
    z, h = ad.read_zarr(out), ad.read_h5ad(atlas_path)
    assert (z.X != h.X).nnz == 0 and z.X.dtype == np.uint32
    pd.testing.assert_frame_equal(z.obs, h.obs)
    assert z.uns["atacformer"]["universe_id"] == data["tok"].universe_id


def test_from_anndata_shares_the_ids_and_to_anndata_round_trips(data, atlas_path):
    adata = ad.read_h5ad(atlas_path)
    cells = af.TokenizedCells.from_anndata(adata)
    assert np.shares_memory(cells.ids, adata.X.indices)
    assert cells.names == list(adata.obs_names)
    assert cells.pad_token_id == data["tok"].pad_token_id
    assert np.shares_memory(cells.counts, adata.X.data)  # the counts come along, uncopied
    for key in ("n_fragments", "n_fragments_in_universe", "frac_in_universe", "n_tokens"):
        assert np.array_equal(cells.qc[key], adata.obs[key].to_numpy())
    again = cells.to_anndata(data["tok"])
    assert np.shares_memory(again.X.indices, adata.X.indices)
    assert (again.X != adata.X).nnz == 0
    assert list(again.obs["sample"]) == list(adata.obs["sample"])
    assert again.uns["atacformer"]["universe_id"] == data["tok"].universe_id
    backed = ad.read_h5ad(atlas_path, backed="r")
    try:
        block = af.TokenizedCells.from_anndata(backed[10:20])
    finally:
        backed.file.close()
    assert block == cells[10:20]


def test_in_memory_manifest_and_sample_names_match_the_atlas(data, atlas_path):
    adata = ad.read_h5ad(atlas_path)
    cells = af.pp.tokenize(data["manifest"], data["tok"])
    assert cells.names == list(adata.obs_names)
    frame = pd.DataFrame({"sample": ["a", "b", "c"], "fragments": list(data["files"].values())})
    assert af.pp.tokenize(frame, data["tok"]).names == cells.names
    named = af.pp.tokenize(list(data["files"].values()), data["tok"], sample_names=["a", "b", "c"])
    assert named.names == cells.names and np.array_equal(named.ids, cells.ids)


def test_command_line_manifest_and_sample_names(data, atlas_path, tmp_path, capsys):
    out = tmp_path / "cli.h5ad"
    code = main(
        [
            "tokenize",
            "--manifest",
            str(data["manifest"]),
            "--tokenizer",
            str(data["universe"]),
            "-o",
            str(out),
        ]
    )
    assert code == 0 and "from 3 samples" in capsys.readouterr().out
    assert (ad.read_h5ad(out).X != ad.read_h5ad(atlas_path).X).nnz == 0
    files = [str(p) for p in data["files"].values()]
    out2 = tmp_path / "named.h5ad"
    code = main(
        [
            "tokenize",
            *files,
            "--sample-names",
            "a,b,c",
            "--tokenizer",
            str(data["universe"]),
            "-o",
            str(out2),
        ]
    )
    assert code == 0
    assert list(ad.read_h5ad(out2).obs_names) == list(ad.read_h5ad(atlas_path).obs_names)
    assert (
        main(
            [
                "tokenize",
                files[0],
                "--sample-names",
                "a,b",
                "--tokenizer",
                str(data["universe"]),
                "-o",
                str(out2),
            ]
        )
        == 1
    )
    assert "2 names for 1 INPUT" in capsys.readouterr().err


# ------------------------------------------------------------------ atomic and resumable


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT / "python"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "atacformer", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
    )


def test_killed_run_leaves_nothing_and_resumes(data, atlas_path, tmp_path):
    out = tmp_path / "atlas.h5ad"
    args = [
        "tokenize",
        "--manifest",
        str(data["manifest"]),
        "--tokenizer",
        str(data["universe"]),
        "-o",
        str(out),
    ]
    killed = run_cli(args, {"ATACFORMER_ATLAS_KILL_AFTER": "1"})
    assert killed.returncode == -9, killed.stderr
    assert not out.exists()
    partial = tmp_path / "atlas.h5ad.partial"
    assert sorted(p.name for p in (partial / "parts").iterdir()) == ["000000.npy", "000001.npy"]
    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 of 3 samples are already tokenized, skipping them (a, b)" in resumed.stderr
    assert not partial.exists()
    again, whole = ad.read_h5ad(out), ad.read_h5ad(atlas_path)
    assert (again.X != whole.X).nnz == 0
    pd.testing.assert_frame_equal(again.obs, whole.obs)
    assert [p.name for p in tmp_path.iterdir()] == ["atlas.h5ad"]  # no temporary left


def test_changed_manifest_starts_over(data, tmp_path):
    out = tmp_path / "atlas.h5ad"
    args = [
        "tokenize",
        "--manifest",
        str(data["manifest"]),
        "--tokenizer",
        str(data["universe"]),
        "-o",
        str(out),
    ]
    assert run_cli(args, {"ATACFORMER_ATLAS_KILL_AFTER": "0"}).returncode == -9
    two = data["root"] / "two.tsv"
    two.write_text("sample\tfragments\nc\tfrags/c.tsv.gz\nb\tfrags/b.tsv.gz\n")
    args[2] = str(two)
    rerun = run_cli(args)
    assert rerun.returncode == 0, rerun.stderr
    assert "over: the interrupted run" in rerun.stderr and "skipping" not in rerun.stderr
    assert list(ad.read_h5ad(out).obs["sample"].cat.categories) == ["c", "b"]


# ------------------------------------------------------------------------- bad manifests


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        (
            "sample\tfragments\na\tfrags/a.tsv.gz\nx\tfrags/missing.tsv.gz\n",
            af.MissingFileError,
            ["line 3", "missing.tsv.gz", "does not exist"],
        ),
        (
            "sample\tfragments\na\tfrags/a.tsv.gz\na\tfrags/b.tsv.gz\n",
            af.InvalidInputError,
            ["line 3", "'a'", "already used on line 2"],
        ),
        (
            "sample\tpath\na\tfrags/a.tsv.gz\n",
            af.InvalidInputError,
            ["line 1", "no fragments column"],
        ),
        (
            "name\tfragments\na\tfrags/a.tsv.gz\n",
            af.InvalidInputError,
            ["line 1", "no sample column"],
        ),
        (
            "sample\tfragments\na#1\tfrags/a.tsv.gz\n",
            af.InvalidInputError,
            ["line 2", "'a#1'", "'#'"],
        ),
        (
            "# comment\nsample\tfragments\n\nb\tfrags/b.tsv.gz\tx\n",
            af.InvalidInputError,
            ["line 4", "3 fields"],
        ),
    ],
)
def test_bad_manifests_are_refused_before_any_work(data, tmp_path, text, error, words):
    manifest = data["root"] / "bad.tsv"
    manifest.write_text(text)
    out = tmp_path / "atlas.h5ad"
    with pytest.raises(error) as caught:
        af.pp.tokenize(manifest, data["tok"], out=out)
    message = str(caught.value)
    assert str(manifest) in message
    for word in words:
        assert word in message
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the progress folder


def test_bad_manifest_problems_are_listed_together_and_dataframes_name_rows(data):
    manifest = data["root"] / "bad2.tsv"
    manifest.write_text("sample,fragments\nx#y,frags/a.tsv.gz\nz,frags/nope.tsv.gz\n")
    manifest = manifest.rename(data["root"] / "bad2.csv")
    with pytest.raises(af.InvalidInputError) as caught:
        atlas.read_manifest(manifest)
    assert "line 2" in str(caught.value) and "line 3" in str(caught.value)
    frame = pd.DataFrame(
        {"sample": ["a", "a"], "fragments": [str(p) for p in list(data["files"].values())[:2]]}
    )
    with pytest.raises(af.InvalidInputError, match="row 2.*already used on row 1"):
        af.pp.tokenize(frame, data["tok"])


def test_assignment_of_samples_to_ranks_is_balanced_and_complete(data):
    manifest = atlas.read_manifest(data["manifest"])
    for world in (1, 2, 3, 5):
        ranks = atlas._assign(manifest, world)
        assert sorted(i for r in ranks for i in r) == [0, 1, 2]
        assert len(ranks) == world and all(len(r) <= 1 for r in ranks[3:])
