"""Bad input: every failure is a clear exception under AtacformerError, never a panic."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
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
    with pytest.raises(atacformer.AtacformerTypeError, match="region 1"):
        tok([("chr1", 1, 5), object()])
    with pytest.raises(atacformer.InvalidInputError, match="start > end"):
        tok([("chr1", 9, 5)])
    with pytest.raises(atacformer.AtacformerTypeError, match="expected regions"):
        tok(42)
    with pytest.raises(atacformer.AtacformerTypeError):
        tok.decode(["a"])
    with pytest.raises(atacformer.AtacformerTypeError, match="paths"):
        tok.tokenize_files([path, 5])
    with pytest.raises(atacformer.AtacformerError, match="is a directory"):
        RegionSet(path.parent)


def _raises(kind: type, call, match: str):
    """Calls ``call`` and checks that it raises ``kind``, inside the package's hierarchy."""
    with pytest.raises(kind, match=match) as info:
        call()
    assert isinstance(info.value, atacformer.AtacformerError)


def test_coordinates_must_be_whole_numbers_in_range():
    # Whole floats (pandas columns with missing values elsewhere become floats) are fine.
    assert list(RegionSet.from_arrays(["chr1"], [49.0], [51.0])) == [
        atacformer.Region("chr1", 49, 51)
    ]
    bad = atacformer.InvalidInputError
    _raises(bad, lambda: RegionSet.from_arrays(["a"], [1.5], [3]), r"starts\[0\].*1\.5")
    _raises(bad, lambda: RegionSet.from_arrays(["a", "a"], [1, np.nan], [3, 4]), r"starts\[1\]")
    _raises(bad, lambda: RegionSet.from_arrays(["a"], [1], [np.inf]), r"ends\[0\]")
    big = np.array([2**63 + 1], dtype=np.uint64)
    _raises(bad, lambda: RegionSet.from_arrays(["a"], big, [3]), "9223372036854775809")
    _raises(bad, lambda: RegionSet.from_arrays(["a"], [-1], [3]), "got -1")
    _raises(bad, lambda: RegionSet.from_arrays(["a"], [[1]], [[3]]), "one-dimensional")
    _raises(bad, lambda: RegionSet.from_arrays(["a", None], [1, 2], [3, 4]), r"chroms\[1\]")
    _raises(
        atacformer.AtacformerTypeError, lambda: RegionSet.from_arrays([np.nan], [1], [3]), "strings"
    )
    wrong = atacformer.AtacformerTypeError
    _raises(wrong, lambda: RegionSet.from_arrays(["a"], [True], [3]), "bool")
    _raises(wrong, lambda: RegionSet.from_arrays(["a"], ["1"], [3]), "integers")
    frame = pd.DataFrame({"chr": ["chr1"], "start": [49.9], "end": [50.5]})
    _raises(bad, lambda: RegionSet.from_pandas(frame), "49.9")
    _raises(wrong, lambda: RegionSet.from_pandas([1]), "DataFrame")


def test_empty_columns_make_an_empty_set():
    assert len(RegionSet.from_arrays([], [], [])) == 0
    empty = pd.DataFrame({"chr": [], "start": [], "end": []})
    assert len(RegionSet.from_pandas(empty)) == 0


def test_region_objects_are_checked_field_by_field():
    wrong, bad = atacformer.AtacformerTypeError, atacformer.InvalidInputError
    _raises(wrong, lambda: RegionSet.from_regions([("c", "1", 2)]), "region 0: start")
    _raises(wrong, lambda: RegionSet.from_regions([("c", 1, 2), (1, 1, 2)]), "region 1: chr")
    _raises(bad, lambda: RegionSet.from_regions([("c", 1)]), "got 2 item")
    _raises(wrong, lambda: RegionSet(5), "path")
    _raises(wrong, lambda: Tokenizer(5), "path")
    _raises(wrong, lambda: Tokenizer(), "needs a path")
    rs = RegionSet.from_regions([("c", 1, 2)])
    _raises(atacformer.AtacformerIndexError, lambda: rs[5], "out of range")
    _raises(atacformer.AtacformerIndexError, lambda: rs[2**70], "out of range")
    _raises(wrong, lambda: rs["x"], "integers or slices")


def test_names_and_rest_must_survive_a_bed_round_trip(tmp_path: Path):
    bad = atacformer.InvalidInputError
    _raises(bad, lambda: RegionSet.from_arrays(["chr 1"], [1], [3]), "whitespace")
    _raises(bad, lambda: RegionSet.from_arrays([""], [1], [3]), "empty")
    _raises(bad, lambda: RegionSet.from_regions([("chr1\t", 1, 3)]), "whitespace")
    # Refused on construction already, so no Region can carry it into a set.
    _raises(bad, lambda: atacformer.Region("chr1", 1, 3, rest="a\nb"), "line break")
    _raises(bad, lambda: atacformer.Region("chr 1", 1, 3), "whitespace")
    ok = RegionSet.from_regions([atacformer.Region("chr1", 1, 3, rest="a\tb")])
    ok.to_bed(tmp_path / "ok.bed")
    assert list(RegionSet(tmp_path / "ok.bed")) == list(ok)


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path):
    text = b"\xef\xbb\xbfchr1\t60\t70\nchr2\t1\t2\n"
    path = tmp_path / "bom.bed"
    path.write_bytes(text)
    assert RegionSet(path).chroms.tolist() == ["chr1", "chr2"]
    assert Tokenizer(path).tokenize([("chr1", 65, 66)]) == ["chr1:60-70"]
    # Split across gzip members, the mark (and the first line) arrives in pieces.
    for cut in range(1, 6):
        split = tmp_path / f"bom{cut}.bed.gz"
        split.write_bytes(gzip.compress(text[:cut]) + gzip.compress(text[cut:]))
        assert RegionSet(split).chroms.tolist() == ["chr1", "chr2"], cut


def test_special_tokens_in_a_config_must_be_unambiguous(tmp_path: Path):
    write_bed(tmp_path / "u.bed", ["chr1\t50\t150", "chr1\t100\t300"])
    cases = {
        "twice.toml": (
            '{name="unk", token="<a>"},\n{name="unk", token="<b>"}',
            4,
            "more than once",
        ),
        "same.toml": ('{name="unk", token="<a>"},\n{name="pad", token="<a>"}', 4, "both"),
        "region.toml": ('{name="mask", token="chr1:50-150"}', 3, "universe region"),
    }
    for name, (tokens, line, problem) in cases.items():
        path = tmp_path / name
        path.write_text(f'universe = "u.bed"\nspecial_tokens = [\n{tokens}\n]\n')
        with pytest.raises(atacformer.ParseError, match=f"{name}:{line}: .*{problem}"):
            Tokenizer(path)
    # The line is the one that sets the clashing token, also when it clashes with a default.
    late = tmp_path / "late.toml"
    late.write_text(
        'universe = "u.bed"\nspecial_tokens = [\n{ name = "pad", token = "unk" },\n'
        '{ name = "unk", token = "" },\n]\n'
    )
    with pytest.raises(atacformer.ParseError, match="late.toml:4: .*empty"):
        Tokenizer(late)
    default = tmp_path / "default.toml"
    default.write_text(
        'universe = "u.bed"\nspecial_tokens = [\n{ name = "unk", token = "<pad>" }]\n'
    )
    with pytest.raises(atacformer.ParseError, match="default.toml:3: .*both"):
        Tokenizer(default)
    # A token that only looks like a region, and an upper-case extension, are fine.
    upper = tmp_path / "C.TOML"
    upper.write_text('universe = "u.bed"\nspecial_tokens = [{name="mask", token="chr9:1-2"}]\n')
    assert Tokenizer(upper).mask_token == "chr9:1-2"


def test_return_tensors_and_hub_names_fail_inside_the_hierarchy(tmp_path: Path, small_universe):
    _, path = small_universe
    tok = Tokenizer(path)
    _raises(atacformer.InvalidInputError, lambda: tok([("chr1", 1, 5)], return_tensors="tf"), "tf")
    for name in [str(tmp_path / "not" / "here"), "./nothere", "a/b/c"]:
        with pytest.raises(FileNotFoundError) as info:
            Tokenizer.from_pretrained(name)
        assert isinstance(info.value, atacformer.MissingFileError)


def test_exception_hierarchy_is_declared_once():
    from atacformer import _core, exceptions

    want = {
        "AtacformerError": (Exception,),
        "ParseError": (atacformer.AtacformerError, ValueError),
        "MissingFileError": (atacformer.AtacformerError, FileNotFoundError),
        "AtacformerIOError": (atacformer.AtacformerError, OSError),
        "InvalidInputError": (atacformer.AtacformerError, ValueError),
        "AtacformerTypeError": (atacformer.AtacformerError, TypeError),
        "AtacformerIndexError": (atacformer.AtacformerError, IndexError),
    }
    for name, bases in want.items():
        cls = getattr(atacformer, name)
        assert cls is getattr(_core, name) is getattr(exceptions, name), name
        assert cls.__bases__ == bases, name
        assert cls.__module__ == "atacformer", name
    assert atacformer.ParseError.__mro__[1:3] == (atacformer.AtacformerError, ValueError)


def test_core_errors_map_to_their_classes(tmp_path: Path):
    # A duplicate universe region: ParseError on the second line, with path and line.
    path = write_bed(tmp_path / "dup.bed", ["chr1\t1\t5", "chr2\t1\t5", "chr1\t1\t5"])
    with pytest.raises(atacformer.ParseError, match="dup.bed:3: duplicate") as info:
        Tokenizer(path)
    assert (info.value.path, info.value.line) == (str(path), 3)
    # A bad config: ParseError naming the TOML file.
    config = tmp_path / "t.toml"
    config.write_text('universe = "u.bed"\nspecial_tokens = 3\n')
    write_bed(tmp_path / "u.bed", ["chr1\t1\t5"])
    with pytest.raises(atacformer.ParseError) as info:
        Tokenizer.from_config(config)
    assert info.value.path == str(config) and info.value.line >= 1
    # A missing file keeps errno and filename, as FileNotFoundError does.
    with pytest.raises(atacformer.MissingFileError) as missing:
        RegionSet(tmp_path / "gone.bed")
    assert missing.value.errno == 2 and missing.value.filename.endswith("gone.bed")
    # A directory given as a BED file is refused as a bad argument, naming it.
    with pytest.raises(atacformer.InvalidInputError, match="is a directory"):
        RegionSet(tmp_path)
    # Bad values from the caller are InvalidInputError, raised by the core.
    with pytest.raises(atacformer.InvalidInputError):
        RegionSet.from_arrays(["chr1"], [5], [1])
    err = atacformer.ParseError("x.bed:2: bad", "x.bed", 2)
    import pickle

    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.path, back.line, str(back)) == (
        atacformer.ParseError,
        "x.bed",
        2,
        str(err),
    )
