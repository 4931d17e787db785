"""The synthetic scATAC generator: reproducible designs, real 10x/BGZF files, honest counts."""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import atacformer
from atacformer import synthetic

DATA = Path(__file__).parent / "data"
SMALL = synthetic.DesignSpec(
    n_peaks=2_000, n_types=4, n_lineages=2, peaks_per_type=150, peaks_per_lineage=200, seed=3
)


def reference_sizes() -> dict[str, int]:
    rows = [line.split("\t") for line in (DATA / "hg38.chrom.sizes").read_text().splitlines()]
    return {name: int(size) for name, size in rows}


@pytest.fixture(scope="module")
def design() -> synthetic.SyntheticDesign:
    return synthetic.make_design(SMALL)


@pytest.fixture(scope="module")
def sample(design) -> synthetic.SyntheticCells:
    return synthetic.sample_cells(design, synthetic.CellSpec(n_cells=80, median_fragments=400))


def read_fragment_lines(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt") as f:
        return [line.rstrip("\n").split("\t") for line in f if not line.startswith("#")]


def test_packaged_chrom_sizes_are_hg38():
    assert synthetic.load_chrom_sizes() == reference_sizes()


def test_design_is_reproducible_from_its_seed_alone(design):
    again = synthetic.make_design(SMALL)
    for field in ("chrom_index", "starts", "ends", "rates", "type_fractions"):
        np.testing.assert_array_equal(getattr(design, field), getattr(again, field))
    # Drawing cells must not change the universe: it depends on the design seed only.
    synthetic.sample_cells(design, synthetic.CellSpec(n_cells=5, seed=99))
    np.testing.assert_array_equal(synthetic.make_design(SMALL).starts, design.starts)
    other = synthetic.make_design(synthetic.DesignSpec(**{**SMALL.__dict__, "seed": 4}))
    assert not np.array_equal(other.starts, design.starts)


def test_universe_is_sorted_disjoint_and_on_the_main_hg38_chromosomes(design):
    sizes = reference_sizes()
    chroms = design.chroms
    assert set(chroms) <= {f"chr{i}" for i in range(1, 23)} | {"chrX"}
    assert len(set(chroms)) >= 20  # 2,000 peaks reach nearly every chromosome
    ends_ok = np.array([e <= sizes[c] for c, e in zip(chroms, design.ends, strict=True)])
    assert ends_ok.all() and (design.starts >= 0).all() and (design.ends > design.starts).all()
    rank = {c: i for i, c in enumerate(sizes)}
    key = [(rank[c], s) for c, s in zip(chroms, design.starts, strict=True)]
    assert key == sorted(key)
    same = chroms[1:] == chroms[:-1]
    assert (design.starts[1:][same] >= design.ends[:-1][same]).all()
    # Peaks follow chromosome length: chr1 (249 Mb) gets far more than chr21 (47 Mb).
    assert (chroms == "chr1").sum() > 2.5 * (chroms == "chr21").sum()


def test_cells_differ_by_seed_but_repeat_exactly(design):
    spec = synthetic.CellSpec(n_cells=30, median_fragments=300, seed=5)
    a, b = synthetic.sample_cells(design, spec), synthetic.sample_cells(design, spec)
    c = synthetic.sample_cells(design, synthetic.CellSpec(n_cells=30, median_fragments=300))
    assert a.barcodes == b.barcodes and a.fragments_text() == b.fragments_text()
    assert set(a.barcodes).isdisjoint(c.barcodes)


def test_fragment_file_is_position_sorted_10x_tsv(sample, tmp_path):
    path = sample.write_fragments(tmp_path / "fragments.tsv.gz")
    rows = read_fragment_lines(path)
    sizes = reference_sizes()
    rank = {c: i for i, c in enumerate(sizes)}
    assert len(rows) == len(sample.fragments)
    keys = []
    for chrom, start, end, barcode, count in rows:  # exactly five columns
        s, e = int(start), int(end)
        assert 0 <= s < e <= sizes[chrom] and int(count) >= 1
        assert re.fullmatch(r"[ACGT]{16}-1", barcode)
        keys.append((rank[chrom], s, e))
    assert keys == sorted(keys)
    assert {r[3] for r in rows} == set(sample.barcodes)


def test_bgzf_blocks_are_well_formed(sample, tmp_path):
    path = sample.write_fragments(tmp_path / "fragments.tsv.gz")
    raw, at, inflated = path.read_bytes(), 0, []
    while at < len(raw):
        magic, flags, xlen, si, slen, bsize = struct.unpack_from("<3sB6xH2sHH", raw, at)
        assert (magic, flags, xlen, si, slen) == (b"\x1f\x8b\x08", 4, 6, b"BC", 2)
        block = raw[at : at + bsize + 1]
        data = zlib.decompress(block[18:-8], -15)
        crc, isize = struct.unpack("<II", block[-8:])
        assert crc == zlib.crc32(data) and isize == len(data) <= 65536
        inflated.append(data)
        at += bsize + 1
    assert at == len(raw) and inflated[-1] == b""  # ends with the empty EOF block
    assert b"".join(inflated) == sample.fragments_text()


def brute_force_counts(sample: synthetic.SyntheticCells) -> np.ndarray:
    """Cells x peaks: for every fragment, the peaks on its chromosome that it overlaps."""
    d, f = sample.design, sample.fragments
    counts = np.zeros((sample.n_cells, d.n_peaks), dtype=np.int64)
    for chrom, start, end, cell in zip(f["chrom"], f["start"], f["end"], f["cell"], strict=True):
        hit = (d.chrom_index == chrom) & (d.starts < end) & (start < d.ends)
        counts[cell, hit] += 1
    return counts


def test_anndata_counts_are_the_overlaps_of_the_fragments(sample):
    adata = sample.to_anndata()
    assert adata.shape == (80, 2_000)
    np.testing.assert_array_equal(adata.X.toarray(), brute_force_counts(sample))
    assert list(adata.obs_names) == sample.barcodes
    assert list(adata.obs["cell_type"].cat.categories) == list(sample.design.type_names)
    np.testing.assert_array_equal(adata.var["start"], sample.design.starts)
    assert list(adata.var["chr"].astype(str)) == list(sample.design.chroms)
    assert (adata.obs["n_fragments"].to_numpy() == np.bincount(sample.fragments["cell"])).all()


def test_h5ad_file_round_trips(sample, tmp_path):
    import anndata as ad

    back = ad.read_h5ad(sample.write_h5ad(tmp_path / "cells.h5ad"))
    np.testing.assert_array_equal(back.X.toarray(), sample.count_matrix().toarray())
    assert list(back.obs["cell_type"].astype(str)) == list(sample.type_labels)


def test_tokenizer_reads_the_fragment_file_like_the_count_matrix(sample, tmp_path):
    universe = sample.design.write_universe(tmp_path / "universe.bed.gz")
    tok = atacformer.Tokenizer(universe)
    cells = tok.tokenize_fragments(sample.write_fragments(tmp_path / "f.tsv.gz"))
    counts = brute_force_counts(sample)
    row = {b: i for i, b in enumerate(sample.barcodes)}
    open_any = counts.sum(axis=1) > 0
    assert sorted(cells.names) == sorted(
        b for b, o in zip(sample.barcodes, open_any, strict=True) if o
    )
    for name, ids in zip(cells.names, cells, strict=True):
        assert sorted(ids.tolist()) == np.flatnonzero(counts[row[name]]).tolist()


def test_cell_types_open_their_own_peaks_more():
    design = synthetic.make_design(SMALL)
    sample = synthetic.sample_cells(design, synthetic.CellSpec(n_cells=200, seed=8))
    counts = sample.count_matrix().toarray()
    for t, name in enumerate(design.type_names):
        own = design.program == f"type:{name}"
        others = np.char.startswith(design.program.astype(str), "type:") & ~own
        mine = sample.cell_type == t
        assert mine.sum() > 5
        # The expected ratio is specific_fold / leak_fold (12 by default); allow sampling noise.
        ratio = counts[mine][:, own].mean() / counts[mine][:, others].mean()
        assert ratio > 0.5 * SMALL.specific_fold / SMALL.leak_fold, (name, ratio)


def test_fragments_per_cell_are_log_normal(design):
    spec = synthetic.CellSpec(
        n_cells=1_500, median_fragments=200, fragments_sigma=0.6, min_fragments=1, seed=21
    )
    sample = synthetic.sample_cells(design, spec)
    depth = np.log(sample.fragments_per_cell())
    assert abs(np.median(depth) - np.log(200)) < 0.05
    assert abs(depth.std() - 0.6) < 0.05
    # Fraction in peaks: Beta with mean 0.5
    assert abs(sample.frip.mean() - 0.5) < 0.02


def test_invalid_specs_are_refused():
    with pytest.raises(ValueError, match="exceed n_peaks"):
        synthetic.DesignSpec(n_peaks=100, peaks_per_type=50)
    with pytest.raises(ValueError, match="n_lineages"):
        synthetic.DesignSpec(n_types=2, n_lineages=3)
