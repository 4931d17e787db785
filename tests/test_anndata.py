"""tokenize_anndata: peaks from var, CSR/CSC/dense/backed matrices, against an oracle."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import atacformer
from atacformer import Tokenizer

from conftest import write_bed


def genomic_rank(universe):
    """Rank of each universe id in (chromosome name, start, end) order."""
    order = sorted(range(len(universe)), key=lambda i: universe[i])
    rank = [0] * len(universe)
    for r, i in enumerate(order):
        rank[i] = r
    return rank


def oracle(universe, peaks, dense):
    """Per cell: the unique universe ids overlapping its nonzero peaks, genomic order."""
    rank = genomic_rank(universe)
    out = []
    for row in dense:
        ids = {
            u
            for p in np.flatnonzero(row)
            for u, (c, s, e) in enumerate(universe)
            if c == peaks[p][0] and s < peaks[p][2] and peaks[p][1] < e
        }
        out.append(sorted(ids, key=lambda u: rank[u]) or [len(universe)])
    return out


@pytest.fixture
def case(tmp_path: Path):
    rng = np.random.default_rng(3)
    universe = []
    seen = set()
    while len(universe) < 300:
        c = f"chr{rng.integers(1, 4)}"
        s = int(rng.integers(0, 50_000))
        w = int(rng.choice([int(rng.integers(50, 800)), 20_000]))
        if (c, s, s + w) not in seen:
            seen.add((c, s, s + w))
            universe.append((c, s, s + w))
    peaks = [
        (f"chr{rng.integers(1, 5)}", int(s), int(s) + 500) for s in rng.integers(0, 50_000, 80)
    ]
    dense = rng.integers(0, 3, size=(25, len(peaks))) * (rng.random((25, len(peaks))) < 0.2)
    dense[4] = 0  # a cell with nothing accessible
    tok = Tokenizer(write_bed(tmp_path / "u.bed", universe))
    var = pd.DataFrame(
        {
            "chr": pd.Categorical([p[0] for p in peaks]),
            "start": [p[1] for p in peaks],
            "end": [p[2] for p in peaks],
        },
        index=[f"peak{i}" for i in range(len(peaks))],
    )
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(25)])
    return tok, universe, peaks, dense, var, obs


def _shuffled_csr(dense):
    """CSR with unsorted column indices and explicit stored zeros."""
    csr = sp.csr_matrix(dense)
    rng = np.random.default_rng(9)
    for r in range(csr.shape[0]):
        lo, hi = csr.indptr[r], csr.indptr[r + 1]
        perm = rng.permutation(hi - lo)
        csr.indices[lo:hi] = csr.indices[lo:hi][perm]
        csr.data[lo:hi] = csr.data[lo:hi][perm]
    csr.data[::7] = 0
    return csr


def test_matrix_forms_match_oracle(case, tmp_path: Path):
    tok, universe, peaks, dense, var, obs = case
    csr = _shuffled_csr(dense)
    want = oracle(universe, peaks, csr.toarray())
    forms = {
        "csr": csr,
        "csc": csr.tocsc(),
        "dense": csr.toarray(),
        "float": csr.astype(np.float32),
    }
    for name, x in forms.items():
        cells = tok.tokenize_anndata(ad.AnnData(X=x, obs=obs, var=var))
        assert [c.tolist() for c in cells] == want, name
        assert cells.names == list(obs.index)
    layered = ad.AnnData(X=np.zeros(dense.shape), obs=obs, var=var, layers={"counts": csr})
    assert [c.tolist() for c in tok.tokenize_anndata(layered, layer="counts")] == want
    with pytest.raises(atacformer.InvalidInputError, match="no layer"):
        tok.tokenize_anndata(layered, layer="nope")
    path = tmp_path / "a.h5ad"
    ad.AnnData(X=csr, obs=obs, var=var).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    assert [c.tolist() for c in tok.tokenize_anndata(backed, chunk_size=4)] == want


def test_peaks_from_var_names(case):
    tok, universe, peaks, dense, var, obs = case
    want = oracle(universe, peaks, dense)
    for sep in (":", "-"):
        names = [f"{c}{sep}{s}-{e}" for c, s, e in peaks]
        a = ad.AnnData(X=sp.csr_matrix(dense), obs=obs, var=pd.DataFrame(index=names))
        assert [c.tolist() for c in tok.tokenize_anndata(a)] == want
    bad = ad.AnnData(X=sp.csr_matrix(dense), obs=obs, var=pd.DataFrame(index=var.index))
    with pytest.raises(atacformer.InvalidInputError, match="var_names like"):
        tok.tokenize_anndata(bad)


def test_peak_table_is_built_once_for_all_chunks(case, tmp_path: Path, monkeypatch):
    tok, universe, peaks, dense, var, obs = case
    csr = _shuffled_csr(dense)
    want = oracle(universe, peaks, csr.toarray())
    path = tmp_path / "a.h5ad"
    ad.AnnData(X=csr, obs=obs, var=var).write_h5ad(path)
    from atacformer import _core, tokenizers

    built, gathered = [], []
    real = _core.PeakTable

    class Counting:
        def __init__(self, tok, peaks, *rest):
            self.table = real(tok, peaks, *rest)
            built.append(self.table)

        @property
        def coverage(self):
            return self.table.coverage

        def gather(self, *args):
            gathered.append(self.table)
            return self.table.gather(*args)

    monkeypatch.setattr(tokenizers._core, "PeakTable", Counting)
    backed = ad.read_h5ad(path, backed="r")
    cells = tok.tokenize_anndata(backed, chunk_size=4)
    assert [c.tolist() for c in cells] == want
    assert cells.names == list(obs.index)
    assert len(built) == 1 and len(gathered) == 7  # 25 rows in chunks of 4
    assert all(t is built[0] for t in gathered)


def test_identity_fast_path_matches_the_general_path(tmp_path: Path):
    rng = np.random.default_rng(5)
    # Disjoint universe regions, written out of genomic order.
    universe = [
        (c, 1000 * i + 5, 1000 * i + 5 + int(rng.integers(50, 900)))
        for c in ("chr2", "chr1", "chr10")
        for i in range(60)
    ]
    order = rng.permutation(len(universe))
    universe = [universe[i] for i in order]
    tok = Tokenizer(write_bed(tmp_path / "u.bed", universe))
    dense = (rng.random((30, len(universe))) < 0.3) * rng.integers(0, 3, (30, len(universe)))
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(30)])
    var = pd.DataFrame(
        {
            "chr": [u[0] for u in universe],
            "start": [u[1] for u in universe],
            "end": [u[2] for u in universe],
        }
    )
    var.index = var.index.astype(str)
    same = tok.tokenize_anndata(ad.AnnData(X=sp.csr_matrix(dense), obs=obs, var=var))
    assert atacformer._core.PeakTable(tok._tok, tok.universe).is_identity
    # The general path: the same peaks in another order (columns permuted alike).
    perm = rng.permutation(len(universe))
    general_var = var.iloc[perm].reset_index(drop=True)
    general_var.index = general_var.index.astype(str)
    from atacformer._anndata import peaks_of

    general_adata = ad.AnnData(X=sp.csr_matrix(dense[:, perm]), obs=obs, var=general_var)
    assert not atacformer._core.PeakTable(tok._tok, peaks_of(general_adata)).is_identity
    general = tok.tokenize_anndata(general_adata)
    assert same == general
    assert [c.tolist() for c in same] == oracle(universe, universe, dense)


def test_backed_chunk_size_must_be_positive(case, tmp_path: Path):
    tok, _, _, dense, var, obs = case
    path = tmp_path / "a.h5ad"
    ad.AnnData(X=sp.csr_matrix(dense), obs=obs, var=var).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    for size in (0, -3):
        with pytest.raises(atacformer.InvalidInputError, match="chunk_size"):
            tok.tokenize_anndata(backed, chunk_size=size)


def test_real_pbmc_cells(tmp_path: Path):
    path = Path(__file__).parent.parent / "examples" / "pbmc_hg38.h5ad"
    adata = ad.read_h5ad(path)
    peaks = atacformer.RegionSet.from_pandas(adata.var)
    peaks.to_bed(tmp_path / "peaks.bed")
    tok = Tokenizer(tmp_path / "peaks.bed")  # the universe is the matrix's own peaks
    cells = tok.tokenize_anndata(adata)
    x = adata.X.toarray()
    for i, row in enumerate(x):
        assert sorted(cells[i].tolist()) == np.flatnonzero(row).tolist()
