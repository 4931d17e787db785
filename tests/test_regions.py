"""Region and RegionSet: constructors, access, ordering, I/O, identifier."""

from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import atacformer
from atacformer import Region, RegionSet

from conftest import write_bed


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def test_region_value_semantics():
    r = Region("chr1", 10, 25)
    assert (r.chr, r.start, r.end, r.rest) == ("chr1", 10, 25, None)
    assert len(r) == 15
    assert r == Region("chr1", 10, 25) and r != Region("chr1", 10, 26)
    assert hash(r) == hash(Region("chr1", 10, 25))
    assert len({r, Region("chr1", 10, 25)}) == 1
    assert sorted([Region("chr2", 1, 2), Region("chr1", 5, 9), Region("chr1", 5, 6)]) == [
        Region("chr1", 5, 6),
        Region("chr1", 5, 9),
        Region("chr2", 1, 2),
    ]
    assert repr(r) == 'Region("chr1", 10, 25)'
    assert str(r) == "chr1:10-25"
    assert pickle.loads(pickle.dumps(Region("c", 1, 2, "x"))) == Region("c", 1, 2, "x")
    with pytest.raises(atacformer.InvalidInputError):
        Region("chr1", 5, 4)
    with pytest.raises(ValueError):
        Region("chr1", -1, 4)


def test_from_bed_keeps_file_order_rest_and_skips_headers(tmp_path: Path):
    path = write_bed(
        tmp_path / "a.bed",
        [
            "track name=test",
            "browser position chr1",
            "#comment",
            "chrom\tstart\tend",  # a header: start is not an integer
            "chr2  5   9  name  0.5",  # runs of spaces
            "chr1\t30\t40\t.\t3",
            "",
            "chr1\t10\t20\r",  # CRLF
        ],
    )
    for rs in (RegionSet(path), RegionSet.from_bed(str(path)), RegionSet.from_bed(path)):
        assert [str(r) for r in rs] == ["chr2:5-9", "chr1:30-40", "chr1:10-20"]
        assert rs[0].rest == "name  0.5"  # kept verbatim
        assert rs[1].rest == ".\t3"
        assert rs[2].rest is None


def test_gzip_detected_by_magic_bytes(tmp_path: Path):
    rows = [("chr1", 1, 5), ("chr3", 7, 9)]
    hidden = write_bed(tmp_path / "plain_name.bed", rows, gz=True)  # gzip, no .gz suffix
    fake = write_bed(tmp_path / "fake.bed.gz", rows)  # plain text with a .gz suffix
    for p in (hidden, fake):
        assert [(r.chr, r.start, r.end) for r in RegionSet(p)] == rows


def test_indexing_slicing_and_independent_iteration():
    rs = RegionSet.from_regions([Region("c", i, i + 1) for i in range(6)])
    assert len(rs) == 6
    assert rs[-1] == Region("c", 5, 6)
    assert [r.start for r in rs[1:5:2]] == [1, 3]
    assert [r.start for r in rs[::-1]] == [5, 4, 3, 2, 1, 0]
    with pytest.raises(IndexError):
        rs[6]
    with pytest.raises(IndexError):
        rs[-7]
    pairs = [(a.start, b.start) for a in rs for b in rs]  # nested iteration
    assert len(pairs) == 36 and pairs[7] == (1, 1)
    assert list(rs) == list(rs)  # repeatable


def test_columns_arrays_and_pandas_round_trip():
    rs = RegionSet.from_arrays(["chr1", "chr2", "chr1"], [10, 0, 5], np.array([20, 7, 9]))
    assert rs.chroms.tolist() == ["chr1", "chr2", "chr1"]
    assert rs.starts.tolist() == [10, 0, 5] and rs.starts.dtype == np.int64
    assert rs.ends.tolist() == [20, 7, 9]
    df = rs.to_pandas()
    assert list(df.columns) == ["chr", "start", "end"]
    assert RegionSet.from_pandas(df) == rs
    cat = pd.DataFrame(
        {"chrom": pd.Categorical(["chr1", "chr2", "chr1"]), "start": [10, 0, 5], "end": [20, 7, 9]}
    )
    assert RegionSet.from_pandas(cat) == rs
    with pytest.raises(ValueError, match="chr"):
        RegionSet.from_pandas(pd.DataFrame({"start": [1], "end": [2]}))
    with pytest.raises(ValueError, match=r"starts\[1\]"):
        RegionSet.from_arrays(["a", "a"], [1, -1], [2, 2])
    with pytest.raises(ValueError, match="start > end"):
        RegionSet.from_arrays(["a"], [5], [2])


def test_sort_mean_width_and_identifier():
    rs = RegionSet.from_arrays(["chr2", "chr1", "chr1"], [5, 30, 10], [9, 40, 20])
    want = md5(",".join([md5("chr2,chr1,chr1"), md5("5,30,10"), md5("9,40,20")]))
    assert rs.identifier == want
    assert rs.mean_region_width() == pytest.approx((4 + 10 + 10) / 3)
    rs.sort()
    assert [str(r) for r in rs] == ["chr1:10-20", "chr1:30-40", "chr2:5-9"]
    assert rs.identifier == md5(",".join([md5("chr1,chr1,chr2"), md5("10,30,5"), md5("20,40,9")]))
    assert RegionSet.from_regions([]).mean_region_width() == 0.0


def test_to_bed_plain_and_gzip_round_trip(tmp_path: Path):
    rs = RegionSet.from_regions([Region("chr1", 1, 5, "n1\t9"), Region("chrX", 2, 3)])
    rs.to_bed(tmp_path / "o.bed")
    assert (tmp_path / "o.bed").read_text() == "chr1\t1\t5\tn1\t9\nchrX\t2\t3\n"
    rs.to_bed(tmp_path / "o.bed.gz")
    assert (
        gzip.decompress((tmp_path / "o.bed.gz").read_bytes()) == b"chr1\t1\t5\tn1\t9\nchrX\t2\t3\n"
    )
    assert RegionSet(tmp_path / "o.bed.gz") == rs
    assert pickle.loads(pickle.dumps(rs)) == rs


def test_empty_file_gives_empty_set(tmp_path: Path):
    empty = tmp_path / "e.bed"
    empty.write_text("")
    assert len(RegionSet(empty)) == 0
    assert RegionSet(empty).chroms.tolist() == []
