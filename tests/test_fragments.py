"""tokenize_fragments from Python: oracle comparison, barcodes, filters, bad lines."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

import atacformer
from atacformer import Tokenizer

from conftest import DATA, write_bed


def oracle(universe, fragments, unique=True, barcodes=None, min_fragments=0):
    """Brute force: per barcode (first-seen order), the overlapping universe ids."""
    rank = {u: r for r, u in enumerate(sorted(range(len(universe)), key=lambda i: universe[i]))}
    cells: dict[str, list[int]] = {}
    lines: dict[str, int] = {}
    for c, s, e, bc in fragments:
        lines[bc] = lines.get(bc, 0) + 1
        hits = sorted(
            (i for i, (uc, us, ue) in enumerate(universe) if uc == c and us < e and s < ue),
            key=lambda i: universe[i][1:],
        )
        cells.setdefault(bc, []).extend(hits)
    out = {}
    for bc, ids in cells.items():
        if lines[bc] < min_fragments:
            continue
        out[bc] = sorted(set(ids), key=rank.get) if unique else ids
    if barcodes is not None:
        return {
            bc: out.get(bc) or [len(universe)]
            for bc in barcodes
            if lines.get(bc, 0) >= min_fragments
        }
    return {bc: ids for bc, ids in out.items() if ids}


@pytest.fixture
def case(tmp_path: Path):
    rng = random.Random(21)
    universe = sorted({("chr1", s, s + 400) for s in rng.sample(range(0, 200_000, 10), 300)})
    universe += [("chr2", 1000, 90_000), ("chr2", 5000, 6000)]
    rng.shuffle(universe)
    barcodes = [f"BC{i:02d}-1" for i in range(12)]
    frags = []
    for _ in range(800):
        c = rng.choice(["chr1", "chr2", "chrM"])
        s = rng.randrange(0, 200_000)
        frags.append((c, s, s + rng.randrange(30, 600), rng.choice(barcodes)))
    frags.sort(key=lambda f: (f[0], f[1]))
    lines = [f"{c}\t{s}\t{e}\t{bc}\t{rng.randrange(1, 4)}" for c, s, e, bc in frags]
    text = "# a 10x header line\n" + "\n".join(lines) + "\n"
    plain = tmp_path / "fragments.tsv"
    plain.write_text(text)
    gz = tmp_path / "fragments.tsv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    tok = Tokenizer(write_bed(tmp_path / "u.bed", universe))
    return tok, universe, frags, plain, gz


def as_dict(cells):
    return {name: ids.tolist() for name, ids in zip(cells.names, cells, strict=True)}


def test_matches_oracle_plain_and_gzip(case):
    tok, universe, frags, plain, gz = case
    for path in (plain, gz):
        for threads in (1, 2):
            atacformer.set_num_threads(threads)
            got = tok.tokenize_fragments(path)
            want = oracle(universe, frags)
            assert as_dict(got) == want and got.names == list(want)
            assert as_dict(tok.tokenize_fragments(path, unique=False)) == oracle(
                universe, frags, unique=False
            )
    atacformer.set_num_threads(0)


def test_barcodes_list_file_and_filters(case, tmp_path: Path):
    tok, universe, frags, _, gz = case
    listed = ["BC03-1", "nobody", "BC00-1"]
    got = tok.tokenize_fragments(gz, barcodes=listed)
    assert got.names == listed
    assert as_dict(got) == oracle(universe, frags, barcodes=listed)
    assert got[1].tolist() == [tok.unk_token_id]
    bc_file = tmp_path / "barcodes.tsv"
    bc_file.write_text("\n".join(listed) + "\n")
    assert as_dict(tok.tokenize_fragments(gz, barcodes=bc_file)) == as_dict(got)
    counts = {}
    for f in frags:
        counts[f[3]] = counts.get(f[3], 0) + 1
    threshold = sorted(counts.values())[len(counts) // 2]
    kept = tok.tokenize_fragments(gz, min_fragments=threshold)
    assert as_dict(kept) == oracle(universe, frags, min_fragments=threshold)
    assert all(counts[n] >= threshold for n in kept.names)
    capped = tok.tokenize_fragments(gz, max_fragments=threshold)
    assert all(counts[n] <= threshold for n in capped.names)
    for bad in [
        dict(min_fragments=-1),
        dict(max_fragments=-1),
        dict(min_fragments=5, max_fragments=2),
    ]:
        with pytest.raises(atacformer.InvalidInputError):
            tok.tokenize_fragments(gz, **bad)


def test_bad_lines_raise_or_are_skipped_with_a_warning(case, tmp_path: Path):
    tok, universe, frags, plain, _ = case
    lines = plain.read_text().splitlines()
    lines.insert(10, "chr1\t100\tnot-a-number\tBC00-1\t1")
    lines.insert(20, "chr1\t100")
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(atacformer.ParseError, match=r"bad.tsv:11: end is not an integer"):
        tok.tokenize_fragments(bad)
    with pytest.warns(UserWarning, match=r"skipped 2 malformed line\(s\); the first, line 11"):
        skipped = tok.tokenize_fragments(bad, on_error="skip")
    assert as_dict(skipped) == oracle(universe, frags)
    with pytest.raises(atacformer.InvalidInputError, match="on_error"):
        tok.tokenize_fragments(bad, on_error="ignore")
    with pytest.raises(FileNotFoundError):
        tok.tokenize_fragments(tmp_path / "missing.tsv.gz")
    cut = tmp_path / "cut.tsv.gz"
    cut.write_bytes(gzip.compress(plain.read_bytes())[:-40])
    with pytest.raises(atacformer.ParseError, match="cut.tsv.gz"):
        tok.tokenize_fragments(cut)


def test_shared_tiny_fragment_files_with_space_separated_columns(tmp_path: Path):
    """The bundled example files separate columns by runs of spaces."""
    rows = []
    for i in (1, 2, 3):
        text = gzip.decompress((DATA / "fragments" / f"fragments{i}.bed.gz").read_bytes())
        rows += [line.split() for line in text.decode().splitlines() if line.strip()]
    universe = sorted({(r[0], int(r[1]), int(r[2])) for r in rows})
    tok = Tokenizer(write_bed(tmp_path / "u.bed", universe))
    text = gzip.decompress((DATA / "fragments" / "fragments1.bed.gz").read_bytes()).decode()
    frags = [(r[0], int(r[1]), int(r[2]), r[3]) for r in map(str.split, text.splitlines()) if r]
    got = tok.tokenize_fragments(DATA / "fragments" / "fragments1.bed.gz")
    assert as_dict(got) == oracle(universe, frags)
    assert len(got) >= 1
