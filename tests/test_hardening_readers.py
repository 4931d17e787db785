"""Hardening of the Rust readers and writers (issue 12): bounded lines, bounded configs,
atomic writes with unique temporary names, and an all-or-nothing ``save_pretrained``.

Calls that could kill the process (an allocation abort, a signal) run in a subprocess with
a timeout and an address-space limit, so a regression fails the test instead of the run.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import pytest

from atacformer import ParseError, RegionSet, Tokenizer

MAX_LINE = 1 << 20  # atacformer_core::io::MAX_LINE_BYTES, stated in the README
REPO = Path(__file__).resolve().parents[1]
PEAKS = REPO / "tests" / "data" / "tokenizers" / "peaks.bed"


def run_child(code: str, timeout: float = 60, memory_gb: float = 4) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter under an address-space limit (so an unbounded
    allocation aborts fast) and returns the finished process."""
    prelude = textwrap.dedent(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({int(memory_gb * 2**30)}, resource.RLIM_INFINITY))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def peak_rss_mb(code: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    """Runs ``code`` in a child and returns it with its peak resident memory, MB."""
    wrapper = textwrap.dedent(
        f"""
        import resource, subprocess, sys
        p = subprocess.run([sys.executable, "-c", {code!r}], capture_output=True, text=True)
        sys.stdout.write(p.stdout)
        sys.stderr.write(p.stderr)
        print("RSS", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        sys.exit(p.returncode)
        """
    )
    p = subprocess.run(
        [sys.executable, "-c", wrapper],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    rss = [line for line in p.stdout.splitlines() if line.startswith("RSS ")]
    assert rss, p.stdout + p.stderr
    return p, int(rss[-1].split()[1]) / 1024


def baseline_rss_mb() -> float:
    _, rss = peak_rss_mb("import atacformer")
    return rss


# ---- lines without a newline ---------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        "atacformer.RegionSet('/dev/zero')",
        "atacformer.Tokenizer('/dev/zero')",
        f"atacformer.Tokenizer({str(PEAKS)!r})('/dev/zero')",
        f"atacformer.Tokenizer({str(PEAKS)!r}).tokenize_fragments('/dev/zero')",
        f"atacformer.Tokenizer({str(PEAKS)!r})"
        f".tokenize_fragments({str(PEAKS)!r}, barcodes='/dev/zero')",
    ],
)
def test_a_file_without_newlines_is_a_parse_error(call: str) -> None:
    p = run_child(
        f"""
        import atacformer
        try:
            {call}
        except atacformer.ParseError as e:
            print("PARSE-ERROR", e.path, e.line, e)
        """,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "PARSE-ERROR /dev/zero 1 " in p.stdout, p.stdout
    assert "longer than 1048576 bytes" in p.stdout


def write_gzip_with_long_line(path: Path, first: bytes, size: int, after: bytes) -> None:
    """A gzip file whose first line is ``first`` padded with ``size`` bytes, written in
    pieces so that the test itself never holds the line."""
    piece = b"x" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(first)
        for _ in range(size // len(piece)):
            f.write(piece)
        f.write(after)


def test_a_long_line_names_the_file_and_its_line(tmp_path: Path) -> None:
    bed = tmp_path / "long.bed"
    bed.write_bytes(b"chr1\t1\t2\n# short comment\nchr1\t5\t" + b"9" * (MAX_LINE + 5) + b"\n")
    with pytest.raises(ParseError) as e:
        RegionSet(bed)
    assert (e.value.path, e.value.line) == (str(bed), 3)
    # The limit is exclusive of the terminator: a line of exactly the limit is read.
    name = "n" * (MAX_LINE - len("chr1\t5\t9\t"))
    bed.write_bytes(b"chr1\t5\t9\t" + name.encode() + b"\n")
    assert len(RegionSet(bed)) == 1


def test_a_huge_gzipped_comment_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    # 256 MiB of comment in about 1 MB of gzip: read whole, it would cost 256 MiB or more.
    big = tmp_path / "comment.bed.gz"
    write_gzip_with_long_line(big, b"# ", 256 << 20, b"\nchr1\t10\t20\tAAAC-1\t1\n")
    assert big.stat().st_size < 4 << 20
    base = baseline_rss_mb()
    code = f"""
import atacformer
rs = atacformer.RegionSet({str(big)!r})
print("REGIONS", len(rs), rs[0])
tok = atacformer.Tokenizer({str(PEAKS)!r})
cells = tok.tokenize_fragments({str(big)!r})
print("CELLS", len(cells))
"""
    p, rss = peak_rss_mb(code, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "REGIONS 1 chr1:10-20" in p.stdout
    assert "CELLS 0" in p.stdout
    assert rss < base + 120, f"peak {rss:.0f} MB (baseline {base:.0f} MB)"


def test_a_config_is_read_up_to_a_few_megabytes(tmp_path: Path) -> None:
    (tmp_path / "u.bed").write_text("chr1\t1\t2\n")
    # Valid TOML, but 6 MB of comments: refused, not parsed.
    config = tmp_path / "tokenizer.toml"
    config.write_text('universe = "u.bed"\n' + "# padding\n" * 600_000)
    with pytest.raises(ParseError) as e:
        Tokenizer(config)
    assert e.value.path == str(config)
    assert "longer than 4194304 bytes" in str(e.value)
    # A small gzipped config that inflates to 256 MB is refused in bounded memory.
    bomb = tmp_path / "bomb.toml"
    write_gzip_with_long_line(bomb, b'universe = "u.bed"\n#', 256 << 20, b"\n")
    base = baseline_rss_mb()
    code = f"""
import atacformer
try:
    atacformer.Tokenizer({str(bomb)!r})
except atacformer.ParseError as e:
    print("PARSE-ERROR", e.path)
"""
    p, rss = peak_rss_mb(code, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"PARSE-ERROR {bomb}" in p.stdout
    assert rss < base + 120, f"peak {rss:.0f} MB (baseline {base:.0f} MB)"


# ---- atomic writes -------------------------------------------------------------------


def region_set(n: int, chrom: str) -> RegionSet:
    return RegionSet.from_arrays(
        [chrom] * n, list(range(0, 10 * n, 10)), list(range(5, 10 * n + 5, 10))
    )


def test_two_threads_writing_one_path_never_tear_it(tmp_path: Path) -> None:
    a, b = region_set(200_000, "chrA"), region_set(150_000, "chrB")
    want = {}
    for name, rs in (("a", a), ("b", b)):
        rs.to_bed(tmp_path / f"{name}.bed")
        want[name] = (tmp_path / f"{name}.bed").read_bytes()
    out = tmp_path / "out.bed"
    errors: list[BaseException] = []

    def write(rs: RegionSet) -> None:
        try:
            rs.to_bed(out)
        except BaseException as e:  # reported below
            errors.append(e)

    for _ in range(10):
        threads = [threading.Thread(target=write, args=(rs,)) for rs in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert out.read_bytes() in (want["a"], want["b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bed", "b.bed", "out.bed"]


def test_a_write_that_fails_midway_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "regions.bed"
    out.write_text("chr1\t1\t2\n")
    # RLIMIT_FSIZE with SIGXFSZ ignored makes writes fail with EFBIG, like a full disk.
    p = run_child(
        f"""
        import resource, signal
        import atacformer
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        n = 100_000
        rs = atacformer.RegionSet.from_arrays(["chr1"] * n, list(range(n)), list(range(1, n + 1)))
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        try:
            rs.to_bed({str(out)!r})
        except atacformer.AtacformerIOError as e:
            print("IO-ERROR", e.errno, e)
        """
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("IO-ERROR 27 "), p.stdout
    assert str(out) in p.stdout
    assert out.read_text() == "chr1\t1\t2\n"
    assert [q.name for q in tmp_path.iterdir()] == ["regions.bed"]


# ---- save_pretrained -----------------------------------------------------------------


def vocab_and_specials(tok: Tokenizer) -> tuple[dict[str, int], dict[str, str]]:
    return tok.get_vocab(), tok.special_tokens_map


def config_with(folder: Path, universe: Path, name: str, token: str) -> Path:
    """A tokenizer config over ``universe`` that sets one special token."""
    config = folder / f"{name}.toml"
    special = f"{{ name = {name!r}, token = {token!r} }}"
    config.write_text(f"universe = {str(universe)!r}\nspecial_tokens = [{special}]\n")
    return config


def test_save_pretrained_is_all_or_nothing(tmp_path: Path) -> None:
    old = Tokenizer(PEAKS)
    folder = tmp_path / "tok"
    old.save_pretrained(folder)
    # The new tokenizer: a one-region universe (a tiny file) and long special tokens (a
    # large config), so that a file-size limit lets the universe through and stops the
    # config: the failure falls between the two writes.
    (tmp_path / "one.bed").write_text("chr9\t100\t200\n")
    config = config_with(tmp_path, tmp_path / "one.bed", "unk", "<" + "u" * 100_000 + ">")
    p = run_child(
        f"""
        import resource, signal
        import atacformer
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        new = atacformer.Tokenizer({str(config)!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, resource.RLIM_INFINITY))
        try:
            new.save_pretrained({str(folder)!r})
        except atacformer.AtacformerIOError as e:
            print("IO-ERROR", e)
        """
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "IO-ERROR" in p.stdout, p.stdout
    loaded = Tokenizer.from_pretrained(folder)
    assert vocab_and_specials(loaded) == vocab_and_specials(old)
    assert loaded == old
    # Saving without the limit then gives the new tokenizer, in the published layout.
    new = Tokenizer(config)
    assert new.unk_token.startswith("<uuu")
    new.save_pretrained(folder)
    loaded = Tokenizer.from_pretrained(folder)
    assert vocab_and_specials(loaded) == vocab_and_specials(new)
    assert sorted(q.name for q in folder.iterdir()) == ["tokenizer.toml", "universe.bed.gz"]
    assert (folder / "tokenizer.toml").read_text().startswith('universe = "universe.bed.gz"')


def test_save_pretrained_over_the_published_layout(tmp_path: Path) -> None:
    # A folder as published on the Hub: only universe.bed.gz, default special tokens.
    folder = tmp_path / "hub"
    folder.mkdir()
    old = Tokenizer(PEAKS)
    old.universe.to_bed(folder / "universe.bed.gz")
    assert Tokenizer.from_pretrained(folder) == old
    new = Tokenizer(config_with(tmp_path, PEAKS, "mask", "[MASK]"))
    assert new.mask_token == "[MASK]"
    new.save_pretrained(folder)
    assert vocab_and_specials(Tokenizer.from_pretrained(folder)) == vocab_and_specials(new)


# ---- BGZF blocks ---------------------------------------------------------------------


def bgzf_block(data: bytes, bsize_extra: int = 0, crc_xor: int = 0, isize_xor: int = 0) -> bytes:
    """One BGZF block made by hand: a gzip member whose extra field holds BSIZE (the block
    size minus one, here grown by ``bsize_extra``), then a CRC32 and ISIZE (here altered)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = c.compress(data) + c.flush()
    bsize = 12 + 6 + len(deflated) + 8 - 1 + bsize_extra
    header = struct.pack("<4BI2BH2BHH", 0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6, 66, 67, 2, bsize)
    trailer = struct.pack("<II", zlib.crc32(data) ^ crc_xor, len(data) ^ isize_xor)
    return header + deflated + trailer


EOF_BLOCK = bgzf_block(b"")
# Three blocks of equal ISIZE, one barcode each; every line overlaps region 0 of peaks.bed.
LINES = {bc: f"chr17\t7915700\t7915750\t{bc}\t1\n".encode() * 4 for bc in ("AA", "BB", "CC")}


def bgzf_file(path: Path, blocks: list[bytes]) -> Path:
    path.write_bytes(b"".join(blocks) + EOF_BLOCK)
    return path


def test_a_bgzf_block_that_swallows_the_next_is_an_error(tmp_path: Path) -> None:
    tok = Tokenizer(PEAKS)
    a, b, c = (bgzf_block(LINES[bc]) for bc in ("AA", "BB", "CC"))
    good = bgzf_file(tmp_path / "good.tsv.gz", [a, b, c])
    cells = tok.tokenize_fragments(good)
    assert (cells.names, [list(cells[i]) for i in range(3)]) == (["AA", "BB", "CC"], [[0]] * 3)
    # Block AA's BSIZE covers block BB as well: BB's lines used to vanish without a word.
    swallowing = bgzf_block(LINES["AA"], bsize_extra=len(b))
    bad = bgzf_file(tmp_path / "swallow.tsv.gz", [swallowing[: len(a)] + b, c])
    with pytest.raises(ParseError, match="BGZF block at byte 0.*BSIZE") as e:
        tok.tokenize_fragments(bad)
    assert e.value.path == str(bad)
    # Both blocks are lost: the swallowed one is counted too (issue 12, D4).
    with pytest.warns(UserWarning, match="skipped 2 corrupt BGZF block"):
        cells = tok.tokenize_fragments(bad, on_error="skip")
    assert (cells.names, [list(cells[0])]) == (["CC"], [[0]])


@pytest.mark.parametrize("damage", [{"crc_xor": 1}, {"isize_xor": 1}])
def test_a_bgzf_block_with_a_wrong_crc_or_isize_is_an_error(
    tmp_path: Path, damage: dict[str, int]
) -> None:
    tok = Tokenizer(PEAKS)
    a, c = bgzf_block(LINES["AA"]), bgzf_block(LINES["CC"])
    bad = bgzf_file(tmp_path / "bad.tsv.gz", [a, bgzf_block(LINES["BB"], **damage), c])
    with pytest.raises(ParseError, match=f"BGZF block at byte {len(a)}"):
        tok.tokenize_fragments(bad)
    with pytest.warns(UserWarning, match="skipped 1 corrupt BGZF block"):
        cells = tok.tokenize_fragments(bad, on_error="skip")
    assert (cells.names, [list(cells[i]) for i in range(2)]) == (["AA", "CC"], [[0], [0]])


# ---- one separator rule for fragments --------------------------------------------------


def fragments(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "fragments.tsv"
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    "line",
    [
        "chr17\t7915700\t7915750\tAAAC-1 \t1",  # a trailing space after the barcode
        "chr17 \t7915700\t7915750\tAAAC-1\t1",  # a trailing space after the chromosome
        "chr17 7915700 7915750 AAAC-1 1",  # spaces only
        "chr17\t7915700  7915750\t AAAC-1\t1 ",  # a mix
    ],
)
def test_spaces_separate_fragment_columns_as_tabs_do(tmp_path: Path, line: str) -> None:
    tok = Tokenizer(PEAKS)
    # Two lines of one cell: region 0 from the plain line, region 1 from the spaced one.
    plain = "chr6\t157381100\t157381150\tAAAC-1\t1"
    cells = tok.tokenize_fragments(fragments(tmp_path, [plain, line]))
    assert cells.names == ["AAAC-1"]
    assert list(cells[0]) == [0, 1]


@pytest.mark.parametrize("sep", ["\t", " "])
def test_a_barcode_with_a_space_is_two_columns_whatever_the_separator(
    tmp_path: Path, sep: str
) -> None:
    tok = Tokenizer(PEAKS)
    line = sep.join(["chr17", "7915700", "7915750", "A B", "1"])
    with pytest.raises(ParseError, match="count is not an integer") as e:
        tok.tokenize_fragments(fragments(tmp_path, [line]))
    assert e.value.line == 1


# ---- memory bounded by the output --------------------------------------------------------


def test_two_million_barcodes_that_overlap_nothing_stay_under_450_mb(tmp_path: Path) -> None:
    n = 2_000_000
    path = tmp_path / "distinct.tsv"
    with open(path, "w") as f:
        for at in range(0, n, 200_000):
            ids = range(at, at + 200_000)
            f.write("".join(f"chrUn\t{i}\t{i + 50}\t{i:016d}-1\t1\n" for i in ids))
    code = f"""
import atacformer
cells = atacformer.Tokenizer({str(PEAKS)!r}).tokenize_fragments({str(path)!r})
print("CELLS", len(cells))
"""
    p, rss = peak_rss_mb(code, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "CELLS 0" in p.stdout
    assert rss < 450, f"peak RSS {rss:.0f} MB"


# ---- duplicate universe regions ------------------------------------------------------------


def test_a_duplicate_universe_region_fails_before_the_rest_is_read(tmp_path: Path) -> None:
    # Line 3 repeats line 1 (out of order), then 24 million more lines (216 MB inflated)
    # follow in a gzip of well under a megabyte: read to its end, they would take
    # hundreds of megabytes and seconds.
    universe = tmp_path / "universe.bed.gz"
    piece = b"chr2\t1\t2\n" * (1 << 17)
    with gzip.open(universe, "wb", compresslevel=1) as f:
        f.write(b"chr1\t1\t2\nchr1\t5\t6\nchr1\t1\t2\n")
        for _ in range(24_000_000 // (1 << 17)):
            f.write(piece)
    base = baseline_rss_mb()
    code = f"""
import time, atacformer
t = time.perf_counter()
try:
    atacformer.Tokenizer({str(universe)!r})
except atacformer.ParseError as e:
    print("PARSE-ERROR", e.line, e, time.perf_counter() - t)
"""
    p, rss = peak_rss_mb(code, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    error = next(line for line in p.stdout.splitlines() if line.startswith("PARSE-ERROR"))
    assert error.startswith("PARSE-ERROR 3 "), error
    assert "duplicate universe region chr1:1-2 (first seen on line 1)" in error
    assert float(error.split()[-1]) < 0.5, error
    assert rss < base + 60, f"peak {rss:.0f} MB (baseline {base:.0f} MB)"
