"""chrom_names="auto": input named the other way (Ensembl vs UCSC) gives the ids of the
input renamed by hand, on every tokenizing path; "exact" does not rename."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest

import atacformer
from atacformer import Tokenizer

from conftest import write_bed

UCSC = ["chr1", "chr2", "chrX", "chrM"]


def to_ensembl(name: str) -> str:
    """The hand-written oracle of the renaming: UCSC -> Ensembl."""
    return "MT" if name == "chrM" else name.removeprefix("chr")


def to_ucsc(name: str) -> str:
    """Ensembl -> UCSC (the inverse of :func:`to_ensembl`)."""
    return "chrM" if name == "MT" else f"chr{name}"


def universe(rng: random.Random, names) -> list[tuple[str, int, int]]:
    regions = set()
    for c in names:
        top = 16_000 if c in ("chrM", "MT") else 200_000
        for s in rng.sample(range(0, top - 1000, 13), 60):
            regions.add((c, s, s + rng.randrange(100, 800)))
    out = sorted(regions)
    rng.shuffle(out)
    return out


def fragments(rng: random.Random, names, n: int = 3000) -> list[tuple[str, int, int, str]]:
    out = []
    for _ in range(n):
        c = rng.choice(names)
        top = 16_000 if c in ("chrM", "MT") else 200_000
        s = rng.randrange(0, top)
        out.append((c, s, s + rng.randrange(40, 500), f"BC{rng.randrange(40)}"))
    out.sort(key=lambda f: (f[0], f[1]))
    return out


def write_frags(path: Path, frags) -> Path:
    path.write_text("".join(f"{c}\t{s}\t{e}\t{b}\t1\n" for c, s, e, b in frags))
    return path


@pytest.fixture(scope="module", params=["ucsc-universe", "ensembl-universe"])
def case(request, tmp_path_factory):
    """A universe in one naming, input in the other, and the input renamed by hand."""
    rng = random.Random(11)
    tmp = tmp_path_factory.mktemp(request.param)
    ucsc_universe = request.param == "ucsc-universe"
    to_universe = to_ucsc if ucsc_universe else to_ensembl
    universe_names = UCSC if ucsc_universe else [to_ensembl(c) for c in UCSC]
    input_names = [to_ensembl(c) for c in UCSC] if ucsc_universe else UCSC
    regions = universe(rng, universe_names)
    tok = Tokenizer.from_bed(write_bed(tmp / "universe.bed", regions))
    frags = fragments(rng, input_names)
    renamed = [(to_universe(c), s, e, b) for c, s, e, b in frags]
    return {
        "tok": tok,
        "tmp": tmp,
        "frags": frags,
        "renamed": renamed,
        "to_universe": to_universe,
        "input_names": input_names,
    }


def same(a, b) -> None:
    assert a.names == b.names
    assert np.array_equal(a.offsets, b.offsets)
    assert np.array_equal(a.ids, b.ids)
    if a.counts is not None or b.counts is not None:
        assert np.array_equal(a.counts, b.counts)


# The fragments are uniform random intervals: their coverage warning is not the point here.
@pytest.mark.filterwarnings("ignore::atacformer.CoverageWarning")
def test_fragments_auto_equals_renamed_input(case):
    tok, tmp = case["tok"], case["tmp"]
    given = write_frags(tmp / "given.tsv", case["frags"])
    renamed = write_frags(tmp / "renamed.tsv", case["renamed"])
    want = tok.tokenize_fragments(renamed)
    got = tok.tokenize_fragments(given)
    assert len(want) > 10  # the oracle's input does overlap the universe
    same(got, want)
    assert got.qc["n_fragments_in_universe"].tolist() == want.qc["n_fragments_in_universe"].tolist()
    # The aliases used are reported, one per input chromosome.
    cov = got.coverage
    assert cov.aliases == {c: case["to_universe"](c) for c in case["input_names"]}
    assert cov.missing_chroms == []
    assert cov.n_overlapping == want.coverage.n_overlapping
    # "exact" renames nothing: every chromosome is missing and no cell has a token.
    with pytest.warns(atacformer.CoverageWarning, match="lacks"):
        exact = tok.tokenize_fragments(given, chrom_names="exact")
    assert len(exact) == 0
    assert sorted(exact.coverage.missing_chroms) == sorted(case["input_names"])
    assert exact.coverage.aliases == {}


def test_auto_prefers_the_exact_name(tmp_path):
    # A universe with both "1" and "chr1": each input name keeps its own.
    tok = Tokenizer.from_bed(write_bed(tmp_path / "u.bed", [("1", 0, 100), ("chr1", 200, 300)]))
    path = write_frags(tmp_path / "f.tsv", [("1", 10, 20, "A"), ("chr1", 10, 20, "B")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", atacformer.CoverageWarning)
        cells = tok.tokenize_fragments(path)
    assert cells.names == ["A"] and cells.coverage.aliases == {}


def test_bad_chrom_names_value(case):
    with pytest.raises(atacformer.InvalidInputError, match="'auto' or 'exact'"):
        case["tok"].tokenize_fragments(case["tmp"] / "given.tsv", chrom_names="ucsc")
