"""Coverage statistics of tokenizations against brute-force counts, and CoverageWarning's
causes: names, genome build (shifted coordinates, coordinates past the chromosome ends),
no tokens."""

from __future__ import annotations

import bisect
import pickle
import random
import warnings
from pathlib import Path

import pytest

import atacformer
from atacformer import Coverage, CoverageWarning, TokenizedCells, Tokenizer

from conftest import write_bed

CHROMS = {"chr1": 10_000_000, "chr2": 8_000_000, "chr3": 6_000_000}
MARGIN = 1_000_000  # the documented PAST_END_MARGIN


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A universe of 500 bp peaks over three chromosomes, saved under a name with its build."""
    rng = random.Random(3)
    tmp = tmp_path_factory.mktemp("coverage")
    regions = sorted(
        {
            (c, s, s + 500)
            for c, size in CHROMS.items()
            for s in rng.sample(range(0, size - 500), 700)
        }
    )
    path = write_bed(tmp / "universe_hg38.bed", regions)
    return {"tmp": tmp, "regions": regions, "tok": Tokenizer.from_bed(path), "rng": rng}


def same_build(world, n=6000):
    """Fragments like real data: mostly on peaks, some in the background."""
    rng, regions = world["rng"], world["regions"]
    out = []
    for _ in range(n):
        if rng.random() < 0.7:
            c, s, e = rng.choice(regions)
            start = rng.randrange(s - 200, e)
        else:
            c = rng.choice(list(CHROMS))
            start = rng.randrange(0, CHROMS[c] - 1000)
        out.append(
            (c, max(start, 0), max(start, 0) + rng.randrange(50, 400), f"BC{rng.randrange(50)}")
        )
    return sorted(out)


def write(path: Path, frags) -> Path:
    path.write_text("".join(f"{c}\t{s}\t{e}\t{b}\t1\n" for c, s, e, b in frags))
    return path


def oracle(regions, frags):
    """Per input chromosome: (intervals, overlapping, past_end), brute force."""
    by_chrom: dict[str, list[tuple[int, int]]] = {}
    for c, s, e in regions:
        by_chrom.setdefault(c, []).append((s, e))
    for v in by_chrom.values():
        v.sort()
    out: dict[str, list[int]] = {}
    for c, s, e, _ in frags:
        row = out.setdefault(c, [0, 0, 0])
        row[0] += 1
        peaks = by_chrom.get(c, [])
        lo = bisect.bisect_left(peaks, (s - 500, -1))
        row[1] += any(
            ps < e and s < pe for ps, pe in peaks[lo : bisect.bisect_left(peaks, (e, -1))]
        )
        row[2] += bool(peaks) and s >= max(pe for _, pe in peaks) + MARGIN
    return out


def quietly(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        return f(*args, **kwargs)


def test_counts_match_brute_force(world):
    rng = world["rng"]
    frags = same_build(world, 4000)
    # Chromosomes the universe lacks, and fragments past chr2's end (by more than the margin).
    frags += [("chrUn_a", rng.randrange(10**6), 0, "BC1") for _ in range(30)]
    frags += [("chr2", 9_500_000 + i, 9_500_100 + i, "BC2") for i in range(20)]
    frags = sorted((c, s, max(e, s + 50), b) for c, s, e, b in frags)
    cells = quietly(world["tok"].tokenize_fragments, write(world["tmp"] / "f.tsv", frags))
    cov = cells.coverage
    want = oracle(world["regions"], frags)
    assert cov.per_chrom == {c: (v[0], v[1]) for c, v in want.items()}
    assert list(cov.per_chrom) == list(dict.fromkeys(c for c, *_ in frags))  # first seen
    assert cov.n_intervals == len(frags)
    assert cov.n_overlapping == sum(v[1] for v in want.values())
    assert cov.fraction == pytest.approx(cov.n_overlapping / len(frags))
    assert cov.missing_chroms == ["chrUn_a"]
    assert cov.n_past_end == sum(v[2] for v in want.values()) == 20
    assert cov.past_end == {"chr2": 20}
    assert cov.aliases == {}
    line = cov.summary()
    assert "\n" not in line and f"{cov.fraction:.1%}" in line and "chrUn_a" in line
    # Per-cell in-universe counts add up to the overlapping intervals.
    assert int(cells.qc["n_fragments_in_universe"].sum()) == cov.n_overlapping


def test_same_build_data_does_not_warn(world):
    path = write(world["tmp"] / "good.tsv", same_build(world))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoverageWarning)
        cells = world["tok"].tokenize_fragments(path)
    assert not cells.coverage.low
    assert cells.coverage.fraction > 2 * cells.coverage.expected_random


def test_another_build_warns_with_the_liftover_fix(world):
    # Liftover-like shifts: every fragment moves by 5-500 kb, more than a peak's width.
    rng = world["rng"]
    shifted = []
    for c, s, e, b in same_build(world):
        d = rng.randrange(5_000, 500_000) * rng.choice([-1, 1])
        if 0 <= s + d < CHROMS[c] - 1000:
            shifted.append((c, s + d, e + d, b))
    path = write(world["tmp"] / "shifted.tsv", sorted(shifted))
    with pytest.warns(CoverageWarning) as caught:
        cells = world["tok"].tokenize_fragments(path)
    message = str(caught[0].message)
    assert cells.coverage.low
    assert f"{cells.coverage.fraction:.1%}" in message
    assert "looks like another genome build (for example hg19 or mm10)" in message
    assert "lift the data over to hg38" in message  # the build named in the universe's path
    assert str(path) in message


def test_coordinates_past_the_ends_are_named(world, tmp_path):
    rng = world["rng"]
    frags = sorted(
        (c, s, s + 200, "BC1")
        for c in CHROMS
        for s in (rng.randrange(CHROMS[c] + MARGIN, CHROMS[c] + 20 * MARGIN) for _ in range(200))
    )
    # A universe file whose name says no build: the message names none either.
    tok = Tokenizer.from_bed(write_bed(tmp_path / "peaks.bed", world["regions"]))
    with pytest.warns(CoverageWarning, match="start past the universe's chromosome ends") as caught:
        tok.tokenize_fragments(write(tmp_path / "long.tsv", frags))
    assert "lift the data over to the universe's genome build" in str(caught[0].message)
    assert "no cells" in str(caught[0].message)


def test_names_the_universe_lacks(world, tmp_path):
    frags = [
        (f"NC_0000{i:02d}.11", 1000 * j, 1000 * j + 300, "BC1")
        for i in range(1, 4)
        for j in range(400)
    ]
    frags += same_build(world, 6)
    with pytest.warns(CoverageWarning) as caught:
        cells = world["tok"].tokenize_fragments(write(tmp_path / "refseq.tsv", sorted(frags)))
    message = str(caught[0].message)
    assert "chromosomes the universe lacks even after aliasing" in message
    assert "NC_000001.11" in message and "genome build" not in message
    assert cells.coverage.missing_chroms[:3] == ["NC_000001.11", "NC_000002.11", "NC_000003.11"]


def test_no_token_warns_even_with_good_coverage(world, tmp_path):
    # The one listed barcode is in the file, but its fragment lies before every region.
    assert min(s for c, s, e in world["regions"] if c == "chr1") > 100
    frags = same_build(world, 500) + [("chr1", 1, 50, "OFF")]
    path = write(tmp_path / "good.tsv", sorted(frags))
    with pytest.warns(CoverageWarning, match="no cell has a token"):
        cells = world["tok"].tokenize_fragments(path, barcodes=["OFF"])
    assert cells.qc["n_tokens"].tolist() == [0]
    assert cells.qc["n_fragments"].tolist() == [1]


def test_coverage_travels_with_the_cells(world):
    path = write(world["tmp"] / "travel.tsv", same_build(world, 2000))
    cells = world["tok"].tokenize_fragments(path)
    cov = cells.coverage
    assert cells[:3].coverage == cov and cells.truncate(2).coverage == cov
    assert pickle.loads(pickle.dumps(cells)).coverage == cov
    both = TokenizedCells.concat([cells, cells])
    assert both.coverage.n_intervals == 2 * cov.n_intervals
    assert both.coverage.per_chrom == {c: (2 * n, 2 * h) for c, (n, h) in cov.per_chrom.items()}
    assert Coverage.merge([cov]) == cov
    assert TokenizedCells.concat([cells, TokenizedCells.from_lists([[1]])]).coverage is None
    assert TokenizedCells.from_lists([[1]]).coverage is None
    assert isinstance(CoverageWarning("x"), UserWarning)
    assert atacformer.Coverage is Coverage
