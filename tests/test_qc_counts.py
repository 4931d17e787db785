"""Per-id counts and per-cell QC of tokenization results, against brute-force oracles, and
their journey through every TokenizedCells operation."""

from __future__ import annotations

import bisect
import gzip
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import atacformer
from atacformer import TokenizedCells, Tokenizer

from conftest import write_bed

CHROMS = ["chr1", "chr2", "chr10"]


def make_universe(rng: random.Random) -> list[tuple[str, int, int]]:
    """Distinct regions, some overlapping each other (so a fragment can hit several)."""
    regions: set[tuple[str, int, int]] = set()
    for c in CHROMS:
        for s in rng.sample(range(0, 300_000, 7), 250):
            regions.add((c, s, s + rng.randrange(150, 900)))
    out = sorted(regions)
    rng.shuffle(out)  # ids in file order, not genomic order
    return out


def make_fragments(rng: random.Random, n: int, barcodes: list[str]) -> list[tuple]:
    """Position-sorted fragments on the universe's chromosomes and one it lacks, with
    repeated lines (duplicates) and long fragments that span several regions."""
    frags = []
    weights = [rng.random() ** 3 for _ in barcodes]  # cells of very different sizes
    for _ in range(n):
        c = rng.choice(CHROMS + ["chrUn_x"])
        s = rng.randrange(0, 310_000)
        length = rng.choice([rng.randrange(30, 400), rng.randrange(400, 3000)])
        bc = rng.choices(barcodes, weights)[0]
        frags.append((c, s, s + length, bc))
        if rng.random() < 0.1:
            frags.append((c, s, s + length, bc))  # a PCR duplicate kept in the file
    frags.sort(key=lambda f: (f[0], f[1]))
    return frags


def write_fragments(path: Path, frags, gz: bool) -> Path:
    text = "# header\n" + "".join(f"{c}\t{s}\t{e}\t{bc}\t1\n" for c, s, e, bc in frags)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def oracle(universe, frags, barcodes=None, min_fragments=0, max_fragments=None):
    """Brute force, per cell: ids in genomic order, counts, n_fragments, in-universe.
    Each fragment is checked against every region of its chromosome whose start lies
    within the longest region's length before it (no region outside can overlap)."""
    by_chrom: dict[str, list[int]] = {}
    for i in sorted(range(len(universe)), key=lambda i: universe[i][1]):
        by_chrom.setdefault(universe[i][0], []).append(i)
    starts = {c: [universe[i][1] for i in ids] for c, ids in by_chrom.items()}
    longest = max(e - s for _, s, e in universe)
    order = {i: r for r, i in enumerate(sorted(range(len(universe)), key=lambda i: universe[i]))}
    lines: dict[str, int] = {}
    hits: dict[str, int] = {}
    counts: dict[str, dict[int, int]] = {}
    for c, s, e, bc in frags:
        lines[bc] = lines.get(bc, 0) + 1
        ids = by_chrom.get(c, [])
        lo = bisect.bisect_left(starts.get(c, []), s - longest)
        hi = bisect.bisect_left(starts.get(c, []), e)
        over = [i for i in ids[lo:hi] if universe[i][1] < e and s < universe[i][2]]
        hits[bc] = hits.get(bc, 0) + bool(over)
        cell = counts.setdefault(bc, {})
        for i in over:
            cell[i] = cell.get(i, 0) + 1

    def keep(bc: str) -> bool:
        n = lines.get(bc, 0)
        return n >= min_fragments and (max_fragments is None or n <= max_fragments)

    wanted = barcodes if barcodes is not None else list(lines)  # dicts keep first-seen order
    out = {}
    for bc in wanted:
        if not keep(bc):
            continue
        cell = counts.get(bc, {})
        ids = sorted(cell, key=order.get)
        if not ids and barcodes is None:
            continue
        out[bc] = {
            "ids": ids or [len(universe)],
            "counts": [cell[i] for i in ids] or [0],
            "n_fragments": lines.get(bc, 0),
            "n_in": hits.get(bc, 0),
            "n_tokens": len(ids),
        }
    return out


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    rng = random.Random(2024)
    tmp = tmp_path_factory.mktemp("qc")
    universe = make_universe(rng)
    barcodes = [f"{''.join(rng.choices('ACGT', k=16))}-1" for _ in range(60)]
    # Long enough (about 2 MB) to cross the reader's 1 MiB chunks.
    frags = make_fragments(rng, 45_000, barcodes)
    return {
        "tok": Tokenizer.from_bed(write_bed(tmp / "universe.bed", universe)),
        "universe": universe,
        "frags": frags,
        "barcodes": barcodes,
        "plain": write_fragments(tmp / "fragments.tsv", frags, gz=False),
        "gz": write_fragments(tmp / "fragments.tsv.gz", frags, gz=True),
    }


def check(cells: TokenizedCells, expected: dict) -> None:
    assert cells.names == list(expected)
    assert cells.counts is not None and cells.counts.dtype == np.uint32
    assert len(cells.counts) == len(cells.ids)
    qc = cells.qc
    assert set(qc) == {"n_fragments", "n_fragments_in_universe", "frac_in_universe", "n_tokens"}
    for i, (bc, want) in enumerate(expected.items()):
        lo, hi = cells.offsets[i], cells.offsets[i + 1]
        assert cells.ids[lo:hi].tolist() == want["ids"], bc
        assert cells.counts[lo:hi].tolist() == want["counts"], bc
        assert qc["n_fragments"][i] == want["n_fragments"], bc
        assert qc["n_fragments_in_universe"][i] == want["n_in"], bc
        assert qc["n_tokens"][i] == want["n_tokens"], bc
        frac = want["n_in"] / want["n_fragments"] if want["n_fragments"] else 0.0
        assert qc["frac_in_universe"][i] == pytest.approx(frac)
    for key in ("n_fragments", "n_fragments_in_universe", "n_tokens"):
        assert qc[key].dtype == np.int64
    assert qc["frac_in_universe"].dtype == np.float64


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["plain", "gz"])
def test_counts_and_qc_match_the_oracle(case, kind, threads):
    before = atacformer.get_num_threads()
    atacformer.set_num_threads(threads)
    try:
        cells = case["tok"].tokenize_fragments(case[kind])
    finally:
        atacformer.set_num_threads(before)
    check(cells, oracle(case["universe"], case["frags"]))
    # Some cells overlap several regions per fragment and some fragments overlap nothing.
    assert (cells.counts > 1).any()
    assert (cells.qc["n_fragments_in_universe"] < cells.qc["n_fragments"]).any()


def test_barcode_list_min_max_fragments(case):
    tok, universe, frags = case["tok"], case["universe"], case["frags"]
    rng = random.Random(5)
    listed = rng.sample(case["barcodes"], 25) + ["AAAAAAAAAAAAAAAA-1", "NOT-IN-FILE-2"]
    rng.shuffle(listed)
    lines = {}
    for f in frags:
        lines[f[3]] = lines.get(f[3], 0) + 1
    sizes = sorted(lines.values())
    lo, hi = sizes[len(sizes) // 4], sizes[3 * len(sizes) // 4]
    for kwargs in [
        {},
        {"min_fragments": lo},
        {"max_fragments": hi},
        {"min_fragments": lo, "max_fragments": hi},
    ]:
        got = tok.tokenize_fragments(case["plain"], barcodes=listed, **kwargs)
        want = oracle(universe, frags, barcodes=listed, **kwargs)
        check(got, want)
        got = tok.tokenize_fragments(case["plain"], **kwargs)
        check(got, oracle(universe, frags, **kwargs))
    # A listed barcode absent from the file: [unk] with count 0 and no fragments.
    got = tok.tokenize_fragments(case["plain"], barcodes=listed)
    i = got.names.index("NOT-IN-FILE-2")
    assert got[i].tolist() == [tok.unk_token_id]
    assert got.counts[got.offsets[i]] == 0
    assert got.qc["n_fragments"][i] == 0 and got.qc["n_tokens"][i] == 0
    assert got.qc["frac_in_universe"][i] == 0.0


def test_non_unique_has_qc_but_no_counts(case):
    cells = case["tok"].tokenize_fragments(case["plain"], unique=False)
    want = oracle(case["universe"], case["frags"])
    assert cells.counts is None
    assert cells.names == list(want)
    assert cells.qc["n_fragments"].tolist() == [w["n_fragments"] for w in want.values()]
    assert cells.qc["n_fragments_in_universe"].tolist() == [w["n_in"] for w in want.values()]
    # Every overlap is kept: the lengths are the sums of the unique mode's counts.
    assert cells.lengths.tolist() == [sum(w["counts"]) for w in want.values()]
    assert cells.qc["n_tokens"].tolist() == cells.lengths.tolist()


def test_a_cell_past_the_compaction_size(tmp_path):
    """One cell with far more overlaps than the merge buffer's first compaction (4096)."""
    rng = random.Random(9)
    universe = [("chr1", s, s + 100) for s in range(0, 100_000, 100)]
    tok = Tokenizer.from_bed(write_bed(tmp_path / "u.bed", universe))
    frags = []
    for _ in range(30_000):
        s = rng.randrange(0, 100_000)
        frags.append(("chr1", s, s + rng.randrange(1, 350), rng.choice(["A", "B"])))
    frags.sort(key=lambda f: (f[0], f[1]))
    path = write_fragments(tmp_path / "f.tsv", frags, gz=False)
    check(tok.tokenize_fragments(path), oracle(universe, frags))
    rng.shuffle(frags)  # unsorted input: a rank is no longer counted in place
    path = write_fragments(tmp_path / "g.tsv", frags, gz=False)
    check(tok.tokenize_fragments(path), oracle(universe, frags))


# ---------------------------------------------------------------- carried by operations
@pytest.fixture(scope="module")
def cells(case):
    return case["tok"].tokenize_fragments(case["plain"])


def pairs(cells: TokenizedCells, i: int) -> list[tuple[int, int]]:
    lo, hi = cells.offsets[i], cells.offsets[i + 1]
    return list(zip(cells.ids[lo:hi].tolist(), cells.counts[lo:hi].tolist(), strict=True))


def same_cells(a: TokenizedCells, b: TokenizedCells, rows: list[int]) -> None:
    """``a``'s cells are ``b``'s ``rows``, counts and qc included."""
    assert a.names == [b.names[r] for r in rows]
    for k, r in enumerate(rows):
        assert pairs(a, k) == pairs(b, r)
    for key, values in b.qc.items():
        assert a.qc[key].tolist() == values[rows].tolist(), key


def test_take_slice_mask_filter(cells):
    rows = [5, 0, 0, len(cells) - 1, 2]
    same_cells(cells.take(rows), cells, rows)
    same_cells(cells[3:11:2], cells, list(range(3, 11, 2)))
    same_cells(cells.take([-1]), cells, [len(cells) - 1])
    mask = cells.lengths > np.median(cells.lengths)
    same_cells(cells[mask], cells, np.flatnonzero(mask).tolist())
    kept = cells.filter(min_tokens=20)
    same_cells(kept, cells, np.flatnonzero(cells.lengths >= 20).tolist())


@pytest.mark.parametrize("strategy", ["first", "random"])
def test_truncate_cuts_counts_with_ids(cells, strategy):
    cut = cells.truncate(10, strategy, seed=3)
    assert len(cut.counts) == len(cut.ids)
    for i in range(len(cells)):
        full = dict(pairs(cells, i))
        kept = pairs(cut, i)
        assert len(kept) == min(10, len(full))
        assert all(full[idx] == n for idx, n in kept)  # each id keeps its own count
        if strategy == "first":
            assert kept == pairs(cells, i)[:10]
    # The QC describes the tokenization, not the cut.
    for key, values in cells.qc.items():
        assert np.array_equal(cut.qc[key], values), key


def test_concat_and_pickle(cells, case):
    both = TokenizedCells.concat([cells[:7], cells[7:]])
    same_cells(both, cells, list(range(len(cells))))
    again = pickle.loads(pickle.dumps(cells))
    same_cells(again, cells, list(range(len(cells))))
    # A part without counts (built from lists): the result has none, and keeps n_tokens.
    plain = TokenizedCells.from_lists([[1, 2], [3]], names=["x", "y"])
    mixed = TokenizedCells.concat([cells[:2], plain])
    assert mixed.counts is None
    assert set(mixed.qc) == {"n_tokens"}
    assert mixed.qc["n_tokens"].tolist() == cells.qc["n_tokens"][:2].tolist() + [2, 1]


def test_csr_round_trip_carries_counts(cells, case):
    n_vars = case["tok"].vocab_size
    m = cells.to_csr(n_vars)
    assert m.data.dtype == np.uint32
    assert np.shares_memory(m.data, cells.counts)
    # data is the peak-count matrix: the brute-force counts per (cell, region).
    want = oracle(case["universe"], case["frags"])
    dense_row = np.zeros(n_vars, dtype=np.int64)
    for idx, n in zip(want[cells.names[0]]["ids"], want[cells.names[0]]["counts"], strict=True):
        dense_row[idx] = n
    assert np.array_equal(m[0].toarray().ravel(), dense_row)
    back = TokenizedCells.from_csr(m, names=cells.names)
    assert np.array_equal(back.counts, cells.counts)
    assert np.array_equal(back.ids, cells.ids)
    # Whole-number floats are counts too; scores are not.
    floats = sp.csr_matrix((m.data.astype(np.float64), m.indices, m.indptr), shape=m.shape)
    assert np.array_equal(TokenizedCells.from_csr(floats).counts, cells.counts)
    scores = floats.copy()
    scores.data = scores.data * 0.5 + 0.25
    assert TokenizedCells.from_csr(scores).counts is None
    # Cells without counts keep the old float32 ones.
    ones = TokenizedCells.from_lists([[1, 2], [3]]).to_csr()
    assert ones.data.dtype == np.float32 and ones.data.tolist() == [1.0, 1.0, 1.0]


def test_save_load_drops_counts_and_keeps_the_format(cells, tmp_path):
    path = tmp_path / "cells.atok"
    cells.save(path)
    back = TokenizedCells.load(path)
    assert back == cells
    assert back.counts is None
    assert back.qc["n_tokens"].tolist() == back.lengths.tolist()
    assert path.read_bytes()[:8] == b"ATOK\x01\x00\x00\x00"  # still version 1


def test_constructor_checks_counts_and_qc():
    with pytest.raises(atacformer.InvalidInputError, match="counts"):
        TokenizedCells([1, 2, 3], [0, 3], counts=[1, 2])
    with pytest.raises(atacformer.InvalidInputError, match="fit"):
        TokenizedCells([1], [0, 1], counts=[-1])
    with pytest.raises(atacformer.InvalidInputError, match="2 values for 1 cells"):
        TokenizedCells([1], [0, 1], qc={"n_fragments": [1, 2]})
    with pytest.raises(atacformer.InvalidInputError, match="unknown qc key"):
        TokenizedCells([1], [0, 1], qc={"frip": [1.0]})
    cells = TokenizedCells(
        [4, 5, 6],
        [0, 2, 3],
        counts=[3, 1, 2],
        qc={"n_fragments": [4, 0], "n_fragments_in_universe": [3, 0]},
    )
    assert cells.counts.tolist() == [3, 1, 2]
    assert cells.qc["frac_in_universe"].tolist() == [0.75, 0.0]
    assert cells.qc["n_tokens"].tolist() == [2, 1]
