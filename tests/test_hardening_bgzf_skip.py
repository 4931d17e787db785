"""Hardening of the fragments reader (issue 12, §2): lost BGZF blocks and the lines around
them are counted, unreadable blocks are skipped with ``on_error="skip"``, a file missing its
BGZF end-of-file block is read, a byte-order mark is not part of the first line, and listed
barcodes that can never match are refused.

BGZF files are built by hand (zlib + struct); the expected cells are written out by hand.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import pytest

import atacformer as af

EOF_BLOCK = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff\x06\0BC\x02\0\x1b\0\x03\0\0\0\0\0\0\0\0\0"


def blk(data: bytes, crc: int = 0, bsize: int | None = None) -> bytes:
    """One BGZF block holding ``data``; ``crc`` is added to its CRC32 (to corrupt it),
    ``bsize`` replaces its BSIZE field (the block size minus one)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    z = c.compress(data) + c.flush()
    size = len(z) + 25 if bsize is None else bsize
    return (
        b"\x1f\x8b\x08\x04\0\0\0\0\0\xff\x06\0BC\x02\0"
        + struct.pack("<H", size)
        + z
        + struct.pack("<II", (zlib.crc32(data) + crc) & 0xFFFFFFFF, len(data))
    )


@pytest.fixture(scope="module")
def tok() -> af.Tokenizer:
    return af.Tokenizer.from_pretrained("demo")


@pytest.fixture(scope="module")
def lines(tok: af.Tokenizer) -> list[bytes]:
    """Line ``i`` is a fragment on universe region ``i`` of barcode ``BC<i>``."""
    u = tok.universe
    return [f"{u[i].chr}\t{u[i].start}\t{u[i].end}\tBC{i}\t1\n".encode() for i in range(6)]


def tokenize(tok: af.Tokenizer, path: Path, **kw) -> tuple[list[str], list[str]]:
    """Cell names and the warnings' messages."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cells = tok.tokenize_fragments(path, **kw)
    return list(cells.names), [str(w.message) for w in caught]


def test_the_first_line_after_a_lost_block_is_counted(tok, lines, tmp_path):
    # Block 1 (lines 2 and 3) has a bad CRC. Line 4 starts block 2; what the lost block
    # held is unknown, so line 4 may continue a line begun there: it is dropped, and counted.
    path = tmp_path / "crc.bgz"
    path.write_bytes(
        blk(lines[0] + lines[1])
        + blk(lines[2] + lines[3], crc=1)
        + blk(lines[4] + lines[5])
        + EOF_BLOCK
    )
    names, messages = tokenize(tok, path, on_error="skip")
    assert names == ["BC0", "BC1", "BC5"]
    lost = [m for m in messages if "corrupt BGZF block(s)" in m]
    assert len(lost) == 1, messages
    assert "skipped 1 corrupt BGZF block(s)" in lost[0]
    assert "1 skipped line(s) in all" in lost[0]
    assert "byte " in lost[0]
    with pytest.raises(af.AtacformerError, match="CRC32"):
        tok.tokenize_fragments(path)


def test_a_line_cut_by_a_lost_block_is_not_kept_truncated(tok, lines, tmp_path):
    # Block 1 holds the end of line 1 ("1\t1\n") and the start of line 2. Line 1 cut
    # there, "...\tBC", is a well-formed fragment of barcode "BC": it must not be kept.
    cut = len(lines[1]) - 4
    assert lines[1][:cut].endswith(b"\tBC")
    path = tmp_path / "cut.bgz"
    path.write_bytes(
        blk(lines[0] + lines[1][:cut])
        + blk(lines[1][cut:] + lines[2][:6], crc=1)
        + blk(lines[2][6:] + lines[3])
        + EOF_BLOCK
    )
    names, messages = tokenize(tok, path, on_error="skip")
    assert names == ["BC0", "BC3"]
    lost = [m for m in messages if "corrupt BGZF block(s)" in m]
    # The piece of line 1 before the gap and the piece of line 2 after it are one run of
    # text between two newlines: one skipped line.
    assert (
        len(lost) == 1 and "skipped 1 corrupt" in lost[0] and "1 skipped line(s) in all" in lost[0]
    )


def test_a_block_that_swallows_the_next_counts_both(tok, lines, tmp_path):
    # Block 0's BSIZE covers block 1 too: both blocks' lines are lost, and the warning
    # says two blocks.
    b0, b1 = blk(lines[0] + lines[1]), blk(lines[2] + lines[3])
    swallow = blk(lines[0] + lines[1], bsize=len(b0) + len(b1) - 1)
    path = tmp_path / "swallow.bgz"
    path.write_bytes(swallow + b1 + blk(lines[4] + lines[5]) + EOF_BLOCK)
    names, messages = tokenize(tok, path, on_error="skip")
    assert names == ["BC5"]
    lost = [m for m in messages if "corrupt BGZF block(s)" in m]
    assert len(lost) == 1 and "skipped 2 corrupt BGZF block(s)" in lost[0], messages
    assert "BGZF block at byte 0" in lost[0]
    with pytest.raises(af.AtacformerError, match="byte 0"):
        tok.tokenize_fragments(path)


@pytest.mark.parametrize("kind", ["bsize too small", "truncated last block"])
def test_unreadable_blocks_are_skipped_in_skip_mode(tok, lines, tmp_path, kind):
    good = blk(lines[0] + lines[1])
    bad = blk(lines[2] + lines[3])
    if kind == "bsize too small":
        tail = blk(lines[2] + lines[3], bsize=10) + blk(lines[4] + lines[5]) + EOF_BLOCK
    else:
        tail = bad[:-5]
    path = tmp_path / "unreadable.bgz"
    path.write_bytes(good + tail)
    with pytest.raises(af.AtacformerError):
        tok.tokenize_fragments(path)
    # The rest of the file cannot be found again: it is lost, with a warning.
    names, messages = tokenize(tok, path, on_error="skip")
    assert names == ["BC0", "BC1"]
    lost = [m for m in messages if "corrupt BGZF block(s)" in m]
    assert len(lost) == 1 and "skipped 1 corrupt BGZF block(s)" in lost[0], messages
    assert "the rest of the file is not read" in lost[0]


def test_a_bgzf_file_without_its_eof_block_is_read_with_a_warning(tok, lines, tmp_path):
    path = tmp_path / "noeof.bgz"
    path.write_bytes(blk(lines[0] + lines[1]) + blk(lines[2] + lines[3]))
    for on_error in ("raise", "skip"):
        names, messages = tokenize(tok, path, on_error=on_error)
        assert names == ["BC0", "BC1", "BC2", "BC3"]
        assert len(messages) == 1 and "without its end-of-file block" in messages[0]
    # The BED reader reads the same file whole too.
    assert len(af.RegionSet(path)) == 4


def test_a_bgzf_file_with_its_eof_block_does_not_warn(tok, lines, tmp_path):
    path = tmp_path / "eof.bgz"
    path.write_bytes(blk(lines[0] + lines[1]) + EOF_BLOCK)
    assert tokenize(tok, path) == (["BC0", "BC1"], [])


@pytest.mark.parametrize("compressed", [False, True])
def test_a_byte_order_mark_starts_no_line(tok, lines, tmp_path, compressed):
    text = b"\xef\xbb\xbf" + lines[0] + lines[1]
    path = tmp_path / "bom.tsv"
    path.write_bytes(blk(text) + EOF_BLOCK if compressed else text)
    assert tokenize(tok, path) == (["BC0", "BC1"], [])


def test_a_byte_order_mark_starts_no_listed_barcode(tok, lines, tmp_path):
    frags = tmp_path / "f.tsv"
    frags.write_bytes(lines[0] + lines[1])
    listing = tmp_path / "barcodes.txt"
    listing.write_bytes(b"\xef\xbb\xbfBC1\nBC0 \n")
    cells = tok.tokenize_fragments(frags, barcodes=listing)
    assert list(cells.names) == ["BC1", "BC0"]
    unk = tok.unk_token_id
    assert all(list(cells[i]) != [unk] for i in range(2))


@pytest.mark.parametrize("bad", ["BC0 ", "B C", "\tBC0", "BC0\n", ""])
def test_listed_barcodes_that_can_never_match_are_refused(tok, lines, tmp_path, bad):
    frags = tmp_path / "f.tsv"
    frags.write_bytes(lines[0])
    with pytest.raises(af.InvalidInputError, match=repr(bad).replace("\\", "\\\\")):
        tok.tokenize_fragments(frags, barcodes=["BC0", bad])


def test_listed_barcodes_must_be_strings(tok, lines, tmp_path):
    frags = tmp_path / "f.tsv"
    frags.write_bytes(lines[0])
    with pytest.raises(af.AtacformerTypeError, match="bytes"):
        tok.tokenize_fragments(frags, barcodes=[b"BC0"])
    with pytest.raises(TypeError):
        tok.tokenize_fragments(frags, barcodes=["BC0", 7])
    assert list(tok.tokenize_fragments(frags, barcodes=["BC0"]).names) == ["BC0"]
