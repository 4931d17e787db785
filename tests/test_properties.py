"""Property tests (hypothesis) of the Python API against plain-Python oracles.

- Region inputs of every form (tuples, tuples of NumPy integers or whole floats, Region
  objects, token strings, NumPy columns, a RegionSet, a DataFrame, a BED path) tokenize to
  what a brute-force overlap search over the universe says.
- TokenizedCells indexing, slicing (negative steps included), take, filter and save/load
  behave like the same operations on a list of lists.
- Padding and truncation (``to_padded``, ``truncate``, ``Tokenizer.pad`` and the
  ``__call__`` arguments) match a list-based oracle.

The profile is fixed (``derandomize=True``, bounded examples, no deadline, no example
database), so every run draws the same examples and CI is deterministic.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from atacformer import (
    AtacformerIndexError,
    InvalidInputError,
    Region,
    RegionSet,
    TokenizedCells,
    Tokenizer,
)

CHROMS = ["chr1", "chr2", "chrX"]

# ------------------------------------------------------------------- strategies
coordinate = st.integers(min_value=0, max_value=120)
# Coordinates near the top of the range, where off-by-one and overflow live.
top = st.integers(min_value=2**32 - 40, max_value=2**32 - 1)


@st.composite
def regions(draw, min_size=0, max_size=12, high=False):
    """(chrom, start, end) triples with start <= end."""
    n = draw(st.integers(min_size, max_size))
    out = []
    for _ in range(n):
        a = draw(top if high and draw(st.booleans()) else coordinate)
        b = draw(top if high and draw(st.booleans()) else coordinate)
        out.append((draw(st.sampled_from(CHROMS)), min(a, b), max(a, b)))
    return out


@st.composite
def universes(draw):
    """A non-empty list of distinct universe regions, in file order."""
    rs = draw(regions(min_size=1, max_size=14, high=True))
    return list(dict.fromkeys(rs))


def overlaps(universe, query):
    """The brute-force oracle: every universe id each query overlaps (``start < q_end`` and
    ``q_start < end``), in (start, end) order per query, queries in order; ``[unk]`` for
    nothing."""
    out = []
    for c, s, e in query:
        hits = [i for i, (uc, us, ue) in enumerate(universe) if uc == c and us < e and s < ue]
        out += sorted(hits, key=lambda i: universe[i][1:])
    return out or [len(universe)]  # <unk> is the first id after the universe


def token(r):
    return f"{r[0]}:{r[1]}-{r[2]}"


def write_bed(path: Path, rows) -> Path:
    path.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in rows))
    return path


class Tmp:
    """A temporary folder per example (pytest's tmp_path is per test, not per example)."""

    def __enter__(self) -> Path:
        self._dir = tempfile.TemporaryDirectory()
        return Path(self._dir.name)

    def __exit__(self, *exc) -> None:
        self._dir.cleanup()


def tokenizer_for(folder: Path, universe) -> Tokenizer:
    return Tokenizer(write_bed(folder / "universe.bed", universe))


# ----------------------------------------------------------------- region inputs
@given(universe=universes(), query=regions(high=True))
def test_every_region_form_tokenizes_like_the_oracle(universe, query):
    want = overlaps(universe, query)
    with Tmp() as d:
        tok = tokenizer_for(d, universe)
        assert tok.vocab_size == len(universe) + 7
        forms = {
            "tuples": query,
            "lists": [list(r) for r in query],
            "numpy scalars": [(c, np.int64(s), np.uint32(e)) for c, s, e in query],
            "whole floats": [(c, float(s), float(e)) for c, s, e in query],
            "Region objects": [Region(*r) for r in query],
            "generator": (r for r in query),
            "RegionSet.from_regions": RegionSet.from_regions([Region(*r) for r in query]),
            "RegionSet.from_arrays(numpy)": RegionSet.from_arrays(
                np.array([r[0] for r in query], dtype=object),
                np.array([r[1] for r in query], dtype=np.int64),
                np.array([r[2] for r in query], dtype=np.uint32),
            ),
            "RegionSet.from_arrays(lists)": RegionSet.from_arrays(
                [r[0] for r in query], [r[1] for r in query], [r[2] for r in query]
            ),
            "DataFrame": pd.DataFrame(
                {
                    "chrom": [r[0] for r in query],
                    "start": [r[1] for r in query],
                    "end": [r[2] for r in query],
                }
            ),
            "BED path (str)": str(write_bed(d / "q.bed", query)),
            "BED path (Path)": write_bed(d / "q2.bed", query),
            "RegionSet(path)": RegionSet(write_bed(d / "q3.bed", query)),
        }
        for form, value in forms.items():
            got = tok(value)["input_ids"].tolist()
            assert got == want, form
        # Token strings: tokenize gives the universe tokens, and encode maps them back.
        assert tok.tokenize(query) == [
            token(universe[i]) if i < len(universe) else tok.unk_token for i in want
        ]
        assert tok.encode([token(universe[i]) for i in range(len(universe))]) == list(
            range(len(universe))
        )
        assert tok.encode(tok.decode(want)) == want


# An empty list is one empty region set, not a batch: batches here hold a cell or more.
@given(universe=universes(), cells=st.lists(regions(max_size=6), min_size=1, max_size=6))
def test_a_batch_tokenizes_each_cell_like_the_oracle(universe, cells):
    with Tmp() as d:
        tok = tokenizer_for(d, universe)
        assert as_lists(tok.encode_cells(cells)) == [overlaps(universe, c) for c in cells]
        got = tok(cells)["input_ids"]
        assert isinstance(got, TokenizedCells)
        assert [c.tolist() for c in got] == [overlaps(universe, c) for c in cells]
        paths = [write_bed(d / f"cell{i}.bed", c) for i, c in enumerate(cells)]
        files = tok.tokenize_files(paths)
        assert [c.tolist() for c in files] == [overlaps(universe, c) for c in cells]
        assert files.names == [p.name for p in paths]


@given(query=regions(high=True))
def test_region_sets_round_trip_through_bed(query):
    rs = RegionSet.from_regions([Region(*r) for r in query])
    assert [(r.chr, r.start, r.end) for r in rs] == query
    assert rs.starts.tolist() == [r[1] for r in query]
    with Tmp() as d:
        for name in ("out.bed", "out.bed.gz"):
            rs.to_bed(d / name)
            assert RegionSet(d / name) == rs
    rs.sort()
    assert [(r.chr, r.start, r.end) for r in rs] == sorted(query)


# --------------------------------------------------------------- TokenizedCells
ids = st.integers(min_value=-(2**31), max_value=2**31 - 1)
cell_lists = st.lists(st.lists(ids, max_size=8), max_size=10)
# Names are written one per line: no newlines (save refuses them). Lone surrogates are left
# out: they cannot be encoded, and today raise a built-in error (issue 12, section 4).
names_for = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
    max_size=6,
)


@st.composite
def cells_and_names(draw):
    cells = draw(cell_lists)
    names = draw(st.lists(names_for, min_size=len(cells), max_size=len(cells)))
    return cells, names


def as_lists(tc: TokenizedCells):
    return [c.tolist() for c in tc]


@given(data=cells_and_names(), i=st.integers(-12, 12))
def test_indexing_matches_a_list(data, i):
    cells, names = data
    tc = TokenizedCells.from_lists(cells, names=names)
    assert len(tc) == len(cells)
    assert as_lists(tc) == cells
    assert tc.lengths.tolist() == [len(c) for c in cells]
    assert tc.offsets[0] == 0 and tc.offsets[-1] == sum(map(len, cells))
    if -len(cells) <= i < len(cells):
        assert tc[i].tolist() == cells[i]
        assert tc[np.int64(i)].tolist() == cells[i]
    else:
        try:
            tc[i]
        except AtacformerIndexError as e:
            assert isinstance(e, IndexError)
        else:
            raise AssertionError(f"index {i} of {len(cells)} cells did not raise")


@given(
    data=cells_and_names(),
    start=st.none() | st.integers(-14, 14),
    stop=st.none() | st.integers(-14, 14),
    step=st.none() | st.integers(-4, 4),
)
def test_slicing_matches_a_list(data, start, stop, step):
    cells, names = data
    tc = TokenizedCells.from_lists(cells, names=names, pad_token_id=3)
    if step == 0:
        try:
            tc[start:stop:step]
        except InvalidInputError as e:
            assert isinstance(e, ValueError)
        else:
            raise AssertionError("a slice step of 0 did not raise")
        return
    part = tc[start:stop:step]
    assert as_lists(part) == cells[start:stop:step]
    assert part.names == names[start:stop:step]
    assert part.pad_token_id == 3


@given(data=cells_and_names(), picks=st.lists(st.integers(-12, 12), max_size=12))
def test_take_and_masks_match_a_list(data, picks):
    cells, names = data
    tc = TokenizedCells.from_lists(cells, names=names)
    n = len(cells)
    if all(-n <= p < n for p in picks):
        got = tc.take(picks)
        assert as_lists(got) == [cells[p] for p in picks]
        assert got.names == [names[p] for p in picks]
        assert as_lists(tc[np.array(picks, dtype=np.int64)]) == [cells[p] for p in picks]
    else:
        try:
            tc.take(picks)
        except AtacformerIndexError:
            pass
        else:
            raise AssertionError(f"take({picks}) of {n} cells did not raise")
    mask = [bool(p % 2) for p in range(n)]
    assert as_lists(tc[np.array(mask, dtype=bool)]) == [
        c for c, m in zip(cells, mask, strict=True) if m
    ]


@given(
    data=cells_and_names(),
    low=st.none() | st.integers(0, 9),
    high=st.none() | st.integers(0, 9),
)
def test_filter_matches_a_list(data, low, high):
    cells, names = data
    tc = TokenizedCells.from_lists(cells, names=names)
    keep = [
        k
        for k, c in enumerate(cells)
        if (low is None or len(c) >= low) and (high is None or len(c) <= high)
    ]
    got = tc.filter(min_tokens=low, max_tokens=high)
    assert as_lists(got) == [cells[k] for k in keep]
    assert got.names == [names[k] for k in keep]


@given(data=cells_and_names(), pad=st.none() | st.integers(0, 2**31 - 1))
def test_save_and_load_round_trip(data, pad):
    cells, names = data
    tc = TokenizedCells.from_lists(cells, names=names, pad_token_id=pad)
    with Tmp() as d:
        path = d / "cells.atok"
        tc.save(path)
        back = TokenizedCells.load(os.fspath(path))
        assert back == tc
        assert as_lists(back) == cells and back.names == names
        assert back.pad_token_id == pad
        # Saving again over the loaded file gives the same bytes.
        before = path.read_bytes()
        back.save(d / "again.atok")
        assert (d / "again.atok").read_bytes() == before
        del back


@given(parts=st.lists(cells_and_names(), max_size=4))
def test_concat_matches_list_concatenation(parts):
    tcs = [TokenizedCells.from_lists(c, names=n) for c, n in parts]
    got = TokenizedCells.concat(tcs)
    assert as_lists(got) == [cell for c, _ in parts for cell in c]
    assert got.names == [name for _, n in parts for name in n]


# ------------------------------------------------------------ padding, truncation
def padded_oracle(cells, width, pad):
    """First-ids truncation to ``width``, then ``pad`` to the right; mask 1 for real ids."""
    rows = [c[:width] + [pad] * (width - len(c[:width])) for c in cells]
    masks = [[1] * len(c[:width]) + [0] * (width - len(c[:width])) for c in cells]
    return rows, masks


def is_subsequence(small, big) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


@given(
    cells=cell_lists,
    width=st.none() | st.integers(0, 10),
    pad=st.integers(-5, 2**31 - 1),
    exact=st.booleans(),
)
def test_to_padded_first_matches_the_oracle(cells, width, pad, exact):
    tc = TokenizedCells.from_lists(cells, pad_token_id=pad)
    enc = tc.to_padded(width, "first", pad_to_max_length=exact)
    longest = max(map(len, cells), default=0)
    w = longest if width is None else (width if exact else min(longest, width))
    rows, masks = padded_oracle(cells, w, pad)
    assert enc["input_ids"].shape == (len(cells), w)
    assert enc["input_ids"].tolist() == rows
    assert enc["attention_mask"].tolist() == masks


@given(cells=cell_lists, width=st.integers(0, 10), seed=st.integers(0, 2**64 - 1))
def test_random_truncation_keeps_an_ordered_subset_deterministically(cells, width, seed):
    tc = TokenizedCells.from_lists(cells)
    cut = tc.truncate(width, "random", seed)
    again = tc.truncate(width, "random", seed)
    assert as_lists(cut) == as_lists(again)
    for c, got in zip(cells, as_lists(cut), strict=True):
        assert len(got) == min(len(c), width)
        assert is_subsequence(got, c)
    assert as_lists(tc.truncate(width, "first")) == [c[:width] for c in cells]
    # Padding truncates the same way.
    enc = tc.to_padded(width, "random", seed, pad_token_id=-1, pad_to_max_length=True)
    rows, _ = padded_oracle(as_lists(cut), width, -1)
    assert enc["input_ids"].tolist() == rows


@given(
    cells=st.lists(st.lists(st.integers(0, 60), max_size=8), min_size=1, max_size=6),
    max_length=st.none() | st.integers(0, 10),
    multiple=st.none() | st.integers(1, 4),
    as_rows=st.booleans(),
)
def test_tokenizer_pad_matches_the_oracle(cells, max_length, multiple, as_rows):
    with Tmp() as d:
        tok = tokenizer_for(d, [("chr1", i, i + 1) for i in range(61)])
        pad = tok.pad_token_id
        features = (
            [{"input_ids": c} for c in cells]
            if as_rows
            else {"input_ids": [list(c) for c in cells]}
        )
        enc = tok.pad(
            features, padding="max_length", max_length=max_length, pad_to_multiple_of=multiple
        )
        width = max(max(map(len, cells)), max_length or 0)
        if multiple:
            width = -(-width // multiple) * multiple
        rows, masks = padded_oracle(cells, width, pad)
        assert enc["input_ids"].tolist() == rows
        assert enc["attention_mask"].tolist() == masks
        longest = tok.pad(features)
        assert longest["input_ids"].tolist() == padded_oracle(cells, max(map(len, cells)), pad)[0]


@given(
    universe=universes(),
    cells=st.lists(regions(max_size=8), min_size=1, max_size=5),
    max_length=st.integers(1, 6),
)
def test_call_padding_and_truncation_match_the_oracle(universe, cells, max_length):
    with Tmp() as d:
        tok = tokenizer_for(d, universe)
        pad = tok.pad_token_id
        want = [overlaps(universe, c) for c in cells]
        longest = max(map(len, want))
        enc = tok(cells, padding=True)
        assert enc["input_ids"].tolist() == padded_oracle(want, longest, pad)[0]
        enc = tok(
            cells,
            padding="max_length",
            truncation=True,
            max_length=max_length,
            truncation_strategy="first",
        )
        rows, masks = padded_oracle(want, max_length, pad)
        assert enc["input_ids"].tolist() == rows
        assert enc["attention_mask"].tolist() == masks
        enc = tok(cells, padding=True, truncation=True, max_length=max_length)
        w = min(longest, max_length)
        for c, row, m in zip(
            want, enc["input_ids"].tolist(), enc["attention_mask"].tolist(), strict=True
        ):
            k = min(len(c), w)
            assert m == [1] * k + [0] * (w - k)
            assert row[k:] == [pad] * (w - k) and is_subsequence(row[:k], c)
        if any(len(c) > max_length for c in want):
            try:
                tok(cells, padding="max_length", max_length=max_length)
            except InvalidInputError:
                pass
            else:
                raise AssertionError("padding past max_length without truncation did not raise")
