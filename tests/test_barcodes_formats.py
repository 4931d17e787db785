"""Barcode lists: cellranger's formats, -1 suffixes on one side only, and what is missing.

Expected cells are hand-checked on a four-region universe (ids in genomic order):
chr1:100-200 = 0, chr1:300-400 = 1, chr1:500-600 = 2, chr2:100-200 = 3.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import pytest

import atacformer as af
from atacformer import BarcodeWarning, InvalidInputError, ParseError, Tokenizer
from atacformer.barcodes import match_suffixes, peek_fragment_barcodes, read_barcodes

UNIVERSE = "chr1\t100\t200\nchr1\t300\t400\nchr1\t500\t600\nchr2\t100\t200\n"
FRAGMENTS = [
    ("chr1", 120, 130, "AAAC"),
    ("chr1", 150, 320, "CCCG"),  # regions 0 and 1
    ("chr1", 510, 520, "AAAC"),
    ("chr2", 110, 150, "TTTA"),
    ("chr2", 900, 950, "GGGT"),  # overlaps nothing
]
# Hand-checked: the ids of each barcode's fragments, once each, in genomic order.
EXPECTED = {"AAAC": [0, 2], "CCCG": [0, 1], "TTTA": [3], "GGGT": None}  # None: [unk]


def fragment_file(tmp_path: Path, suffix: str = "-1", name: str = "fragments.tsv.gz") -> Path:
    lines = [f"{c}\t{s}\t{e}\t{bc}{suffix}\t1\n" for c, s, e, bc in FRAGMENTS]
    path = tmp_path / name
    path.write_bytes(gzip.compress(("# cellranger-atac header\n" + "".join(lines)).encode()))
    return path


@pytest.fixture
def tok(tmp_path: Path) -> Tokenizer:
    (tmp_path / "universe.bed").write_text(UNIVERSE)
    return Tokenizer(tmp_path / "universe.bed")


def cells_dict(tok: Tokenizer, cells) -> dict[str, list[int]]:
    return {n: c.tolist() for n, c in zip(cells.names, cells, strict=True)}


def expected(tok: Tokenizer, names: list[str], strip: str = "") -> dict[str, list[int]]:
    out = {}
    for name in names:
        ids = EXPECTED[name.removesuffix(strip)] if strip else EXPECTED[name]
        out[name] = ids if ids is not None else [tok.unk_token_id]
    return out


SINGLECELL = (
    "barcode,total,duplicate,chimeric,unmapped,lowmapq,mitochondrial,passed_filters,"
    "cell_id,is__cell_barcode\n"
    "NO_BARCODE,900,10,1,2,3,4,0,None,0\n"
    "CCCG-1,40,3,0,0,1,2,30,_cell_0,1\n"
    "GGGT-1,5,0,0,0,0,0,5,None,0\n"
    "AAAC-1,55,5,0,0,1,2,44,_cell_1,1\n"
)


def test_every_format_lists_the_same_cells(tok, tmp_path):
    frags = fragment_file(tmp_path)
    want = expected(tok, ["CCCG-1", "AAAC-1"], strip="-1")
    plain = tmp_path / "cells.txt"
    plain.write_text("CCCG-1\nAAAC-1\n")
    tsv_gz = tmp_path / "barcodes.tsv.gz"
    tsv_gz.write_bytes(gzip.compress(b"CCCG-1\nAAAC-1\n"))
    singlecell = tmp_path / "singlecell.csv"
    singlecell.write_text(SINGLECELL)
    arc = tmp_path / "per_barcode_metrics.csv"
    arc.write_text("gex_barcode,atac_barcode,is_cell\nX,CCCG-1,1\nY,GGGT-1,0\nZ,AAAC-1,1\n")
    arc_plain = tmp_path / "arc.csv"  # no cell column: every row
    arc_plain.write_text("barcode,total\nCCCG-1,3\nAAAC-1,4\n")
    for listed in (["CCCG-1", "AAAC-1"], ("CCCG-1", "AAAC-1"), plain, tsv_gz, singlecell):
        cells = tok.tokenize_fragments(frags, barcodes=listed)
        assert cells.names == ["CCCG-1", "AAAC-1"], listed
        assert cells_dict(tok, cells) == want, listed
    assert read_barcodes(arc_plain) == ["CCCG-1", "AAAC-1"]
    # cellranger-arc calls the barcode column atac_barcode: not a `barcode` column, so that
    # table is read by its first column, which is not what we want; the is_cell rule is
    # checked on a table that names its column `barcode`.
    arc.write_text("barcode,is_cell\nCCCG-1,1\nGGGT-1,0\nAAAC-1,1\n")
    assert read_barcodes(arc) == ["CCCG-1", "AAAC-1"]
    assert cells_dict(tok, tok.tokenize_fragments(frags, barcodes=arc)) == want


def test_singlecell_csv_keeps_cells_and_skips_no_barcode(tmp_path):
    path = tmp_path / "singlecell.csv"
    path.write_bytes(b"\xef\xbb\xbf" + SINGLECELL.replace("AAAC-1", '"AAAC-1"').encode())
    assert read_barcodes(path) == ["CCCG-1", "AAAC-1"]
    gz = tmp_path / "singlecell.csv.gz"
    gz.write_bytes(gzip.compress(SINGLECELL.encode()))
    assert read_barcodes(gz) == ["CCCG-1", "AAAC-1"]


def test_a_bad_singlecell_row_names_the_file_and_line(tmp_path):
    path = tmp_path / "singlecell.csv"
    path.write_text("barcode,total,is__cell_barcode\nAAAC-1,4,1\nCCCG-1\n")
    with pytest.raises(ParseError, match=r"singlecell\.csv:3: too few columns") as info:
        read_barcodes(path)
    assert info.value.line == 3
    path.write_text("barcode,is__cell_barcode\nAAAC-1,yes\n")
    with pytest.raises(ParseError, match=r"singlecell\.csv:2:.*'yes'|singlecell\.csv:2:.*yes"):
        read_barcodes(path)


@pytest.mark.parametrize(
    ("file_suffix", "listed"),
    [
        ("-1", ["TTTA", "AAAC", "GGGT"]),  # the file has -1, the list has none
        ("", ["TTTA-1", "AAAC-1", "GGGT-1"]),  # the list has -1, the file has none
    ],
)
def test_a_suffix_on_one_side_still_matches_and_keeps_the_listed_names(
    tok, tmp_path, file_suffix, listed
):
    frags = fragment_file(tmp_path, suffix=file_suffix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BarcodeWarning)
        cells = tok.tokenize_fragments(frags, barcodes=listed)
    assert cells.names == listed
    strip = "-1" if listed[0].endswith("-1") else ""
    assert cells_dict(tok, cells) == expected(tok, listed, strip=strip)


def test_exact_suffixes_do_not_match_and_the_error_shows_both_sides(tok, tmp_path):
    frags = fragment_file(tmp_path, suffix="-1")
    listed = ["TTTA", "AAAC", "CCCG", "GGGT"]
    with pytest.raises(InvalidInputError) as info:
        tok.tokenize_fragments(frags, barcodes=listed, barcode_suffix="exact")
    message = str(info.value)
    assert "none of the 4 listed barcodes" in message
    assert "listed: TTTA, AAAC, CCCG, ..." in message
    assert "in the file: AAAC-1, CCCG-1, TTTA-1, ..." in message
    assert str(frags) in message


def test_another_samples_list_is_refused_with_examples(tok, tmp_path):
    frags = fragment_file(tmp_path, suffix="-1")
    with pytest.raises(InvalidInputError, match="listed: XXXX-1, YYYY-1; in the file: AAAC-1"):
        af.pp.tokenize(frags, tok, barcodes=["XXXX-1", "YYYY-1"])


def test_listed_barcodes_missing_from_the_file_are_counted(tok, tmp_path):
    frags = fragment_file(tmp_path, suffix="-1")
    listed = ["AAAC-1", "ZZZZ-1", "TTTA-1", "QQQQ-1"]
    with pytest.warns(BarcodeWarning, match=r"2 of 4 listed barcodes are not in the file"):
        cells = tok.tokenize_fragments(frags, barcodes=listed)
    assert cells.names == listed
    assert cells[1].tolist() == cells[3].tolist() == [tok.unk_token_id]
    qc = getattr(cells, "qc", None)
    if qc is not None:  # per-cell QC (interface A): absent barcodes have no fragments
        assert qc["n_fragments"].tolist() == [2, 0, 1, 0]
    # GGGT-1 is in the file but overlaps nothing: it is found, so not counted.
    with warnings.catch_warnings():
        warnings.simplefilter("error", BarcodeWarning)
        found = tok.tokenize_fragments(frags, barcodes=["GGGT-1", "AAAC-1"])
    assert found.names == ["GGGT-1", "AAAC-1"]


def test_min_fragments_still_applies_to_listed_barcodes(tok, tmp_path):
    frags = fragment_file(tmp_path, suffix="-1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BarcodeWarning)
        cells = tok.tokenize_fragments(frags, barcodes=["TTTA", "AAAC", "ZZZZ"], min_fragments=2)
    assert cells.names == ["AAAC"]  # 2 lines; TTTA has 1, ZZZZ none
    assert cells[0].tolist() == [0, 2]


def test_suffix_matching_rules():
    seen = ["AAAC-1", "CCCG-1"]
    assert match_suffixes(["AAAC"], seen, "auto").query == ["AAAC-1"]
    assert match_suffixes(["AAAC"], seen, "exact").query == ["AAAC"]
    assert match_suffixes(["AAAC-1"], ["AAAC", "CCCG"], "auto").query == ["AAAC"]
    # Aggregated lists (-1 and -2) would collide without their suffix: kept exact.
    assert match_suffixes(["AAAC-1", "AAAC-2"], ["AAAC"], "auto").query == ["AAAC-1", "AAAC-2"]
    # A file with several suffixes: no single one to add.
    assert match_suffixes(["AAAC"], ["AAAC-1", "CCCG-2"], "auto").query == ["AAAC"]
    # Already matching barcodes are left alone.
    assert match_suffixes(["AAAC-1", "CCCG"], ["AAAC-1"], "auto").query == ["AAAC-1", "CCCG"]


def test_peek_reads_plain_gzip_and_skips_headers(tmp_path):
    frags = fragment_file(tmp_path, suffix="-1")
    assert peek_fragment_barcodes(frags) == ["AAAC-1", "CCCG-1", "TTTA-1", "GGGT-1"]
    plain = tmp_path / "f.tsv"
    plain.write_bytes(gzip.decompress(frags.read_bytes()))
    assert peek_fragment_barcodes(plain, limit=2) == ["AAAC-1", "CCCG-1"]
    assert peek_fragment_barcodes(tmp_path / "absent.tsv") == []


def test_a_bad_suffix_mode_is_refused(tok, tmp_path):
    frags = fragment_file(tmp_path)
    with pytest.raises(InvalidInputError, match="barcode_suffix"):
        tok.tokenize_fragments(frags, barcodes=["AAAC-1"], barcode_suffix="strip")
    with pytest.raises(InvalidInputError, match="barcode_suffix"):
        af.pp.tokenize(tmp_path / "universe.bed", tok, barcode_suffix="exact")


def test_cli_reads_singlecell_csv_and_reports_missing_barcodes(tok, tmp_path, capsys):
    from atacformer.cli import main

    frags = fragment_file(tmp_path, suffix="")
    listing = tmp_path / "singlecell.csv"
    not_in_file = "ZZZZ-1,5,0,0,0,0,0,5,x,1"
    listing.write_text(SINGLECELL.replace("GGGT-1,5,0,0,0,0,0,5,None,0", not_in_file))
    out = tmp_path / "cells.atok"
    code = main(
        ["tokenize", str(frags), "--tokenizer", str(tmp_path / "universe.bed"),
         "--barcodes", str(listing), "-o", str(out)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 of 3 listed barcodes are not in the file (ZZZZ-1)" in err
    cells = af.TokenizedCells.load(out)
    assert cells.names == ["CCCG-1", "ZZZZ-1", "AAAC-1"]
    assert cells_dict(tok, cells) == {
        "CCCG-1": [0, 1],
        "ZZZZ-1": [tok.unk_token_id],
        "AAAC-1": [0, 2],
    }
    code = main(
        ["tokenize", str(frags), "--tokenizer", str(tmp_path / "universe.bed"),
         "--barcodes", str(listing), "--barcode-suffix", "exact", "-o", str(out)]
    )  # fmt: skip
    assert code != 0 and "none of the 3 listed barcodes" in capsys.readouterr().err
