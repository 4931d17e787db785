"""Bad input: every failure is a clear exception under AtacformerError, never a panic."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

import atacformer
from atacformer import RegionSet, Tokenizer

from conftest import write_bed

BAD_LINES = [
    ("chr1\t5", "too few columns"),
    ("chr1\tfive\t9", "start is not an integer"),
    ("chr1\t1\t9.5", "end is not an integer"),
    ("chr1\t-3\t9", "start is negative"),
    ("chr1\t3\t4294967296", r"end is above 2\^32-1"),
    ("chr1\t30\t9", "start > end"),
]


@pytest.mark.parametrize(("line", "problem"), BAD_LINES)
@pytest.mark.parametrize("reader", [RegionSet, Tokenizer])
def test_malformed_line_names_file_line_and_problem(tmp_path: Path, reader, line, problem):
    path = write_bed(tmp_path / "bad.bed", ["chr1\t1\t2", "# fine", line, "chr1\t7\t8"])
    with pytest.raises(atacformer.ParseError, match=rf"bad.bed:3: {problem}") as info:
        reader(path)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, atacformer.AtacformerError)
    assert err.line == 3 and err.path.endswith("bad.bed")


def test_only_the_first_line_may_be_a_header(tmp_path: Path):
    path = write_bed(tmp_path / "h.bed", ["chr1\t1\t2", "chrom\tstart\tend"])
    with pytest.raises(atacformer.ParseError, match="h.bed:2: start is not an integer"):
        RegionSet(path)


def test_missing_file_is_file_not_found(tmp_path: Path):
    for call in (RegionSet, Tokenizer, Tokenizer.from_bed, Tokenizer.from_config):
        with pytest.raises(FileNotFoundError) as info:
            call(tmp_path / "nope.bed")
        assert isinstance(info.value, atacformer.AtacformerError)
        assert "nope.bed" in str(info.value)


def test_truncated_gzip(tmp_path: Path):
    data = gzip.compress(b"".join(b"chr1\t%d\t%d\n" % (i, i + 5) for i in range(0, 50_000, 10)))
    path = tmp_path / "cut.bed.gz"
    path.write_bytes(data[: len(data) // 2])
    for reader in (RegionSet, Tokenizer):
        with pytest.raises(atacformer.ParseError, match="cut.bed.gz:[0-9]+: corrupt or truncated"):
            reader(path)


def test_corrupt_gzip_body(tmp_path: Path):
    data = bytearray(gzip.compress(b"chr1\t1\t2\n" * 1000))
    data[20:40] = b"\xff" * 20
    path = tmp_path / "corrupt.bed.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(atacformer.ParseError, match="corrupt.bed.gz"):
        RegionSet(path)


def test_binary_garbage(tmp_path: Path):
    path = tmp_path / "garbage.bed"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(atacformer.ParseError, match="garbage.bed:1"):
        RegionSet(path)
    utf8 = write_bed(tmp_path / "latin1.bed", [])
    utf8.write_bytes(b"chr\xe91\t1\t5\n")
    with pytest.raises(atacformer.ParseError, match="latin1.bed:1: text is not valid UTF-8"):
        RegionSet(utf8)


def test_empty_universe_is_an_error_but_empty_queries_are_not(tmp_path: Path, small_universe):
    empty = write_bed(tmp_path / "empty.bed", ["# only a comment"])
    with pytest.raises(atacformer.ParseError, match="empty.bed: the universe has no regions"):
        Tokenizer(empty)
    _, upath = small_universe
    tok = Tokenizer(upath)
    assert tok(empty)["input_ids"].tolist() == [tok.unk_token_id]


def test_duplicate_universe_region_names_both_lines(tmp_path: Path):
    path = write_bed(tmp_path / "dup.bed", ["chr1\t1\t5", "chr2\t1\t5", "#x", "chr1\t1\t5"])
    with pytest.raises(atacformer.ParseError, match=r"dup.bed:4: .*chr1:1-5 .*line 1"):
        Tokenizer(path)


def test_four_column_universe_and_crlf(tmp_path: Path):
    path = tmp_path / "u4.bed"
    path.write_bytes(b"chr1\t10\t20\tpeak1\r\nchr1\t30\t40\tpeak2\r\n")
    tok = Tokenizer(path)
    assert tok.decode([0, 1]) == ["chr1:10-20", "chr1:30-40"]
    assert tok([("chr1", 15, 35)])["input_ids"].tolist() == [0, 1]


def test_bad_config_files(tmp_path: Path, peaks_dir: Path):
    broken = tmp_path / "broken.toml"
    broken.write_text('universe = "peaks.bed"\nspecial_tokens = [\n  {name = "unk", token = }\n]\n')
    with pytest.raises(atacformer.ParseError, match="broken.toml:3"):
        Tokenizer(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(
        f'universe = "{peaks_dir / "peaks.bed"}"\n'
        'special_tokens = [\n  {name = "unk", token = "U"},\n  {name = "foo", token = "F"},\n]\n'
    )
    with pytest.raises(atacformer.ParseError, match='unknown.toml:4: unknown special token "foo"'):
        Tokenizer(unknown)
    no_universe = tmp_path / "nouni.toml"
    no_universe.write_text('tokenizer_type = "bits"\n')
    with pytest.raises(atacformer.ParseError, match="nouni.toml:1: missing field `universe`"):
        Tokenizer(no_universe)
    missing_bed = tmp_path / "missing.toml"
    missing_bed.write_text('universe = "not_here.bed.gz"\n')
    with pytest.raises(FileNotFoundError, match="not_here.bed.gz"):
        Tokenizer(missing_bed)


def test_bad_python_inputs(small_universe):
    _, path = small_universe
    tok = Tokenizer(path)
    with pytest.raises(atacformer.InvalidInputError, match="region 1"):
        tok([("chr1", 1, 5), object()])
    with pytest.raises(atacformer.InvalidInputError, match="start > end"):
        tok([("chr1", 9, 5)])
    with pytest.raises(atacformer.InvalidInputError, match="expected regions"):
        tok(42)
    with pytest.raises(TypeError):
        tok.decode(["a"])
    with pytest.raises(atacformer.AtacformerError, match="is a directory"):
        RegionSet(path.parent)
