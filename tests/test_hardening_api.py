"""Hardening of the Python API (issue 12): a RegionSet shared across threads, atomic
writes, cell names that cannot escape a folder, chromosome names that cannot round-trip,
and every user error an AtacformerError."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import atacformer
from atacformer import (
    AtacformerError,
    AtacformerIndexError,
    AtacformerTypeError,
    InvalidInputError,
    Region,
    RegionSet,
    TokenizedCells,
    Tokenizer,
    _core,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_bed(DATA / "tokenizers" / "peaks.bed")


# ------------------------------------------------------- a RegionSet shared by threads
def test_sort_while_other_threads_read_never_raises(tok: Tokenizer):
    """sort() in one thread while others tokenized or indexed the same set raised
    PanicException 'Already mutably borrowed' or RuntimeError 'Already borrowed'. Readers
    now see the old order or the new one."""
    universe = tok.universe
    rows = [(universe[i].chr, universe[i].start, universe[i].end) for i in range(len(universe))]
    rows = rows[::-1] * 20  # file order differs from sorted order
    shared = RegionSet.from_regions(rows)
    before = [str(r) for r in shared]
    after = sorted(
        before, key=lambda s: (s.rsplit(":", 1)[0], *map(int, s.rsplit(":")[1].split("-")))
    )
    # Sorting reorders the regions, so the ids come in another order: compare multisets.
    ids_before = sorted(tok(RegionSet.from_regions(rows))["input_ids"].tolist())
    errors: list[BaseException] = []
    seen_orders: set[str] = set()
    stop = time.monotonic() + 1.5

    def sorter() -> None:
        while time.monotonic() < stop:
            try:
                shared.sort()
            except BaseException as e:  # PanicException is a BaseException
                errors.append(e)
                return

    def reader(kind: int) -> None:
        while time.monotonic() < stop:
            try:
                if kind == 0:
                    ids = tok(shared)["input_ids"].tolist()
                    assert sorted(ids) == ids_before
                elif kind == 1:
                    order = [str(r) for r in shared]
                    assert order in (before, after), "a half-sorted set"
                    seen_orders.add("before" if order == before else "after")
                elif kind == 2:
                    assert str(shared[0]) in (before[0], after[0])
                    assert len(shared[1:5]) == 4 and len(shared) == len(before)
                else:
                    tok.encode_cells([shared, shared])
                    assert shared.identifier and shared.chroms.shape == (len(before),)
            except BaseException as e:
                errors.append(e)
                return

    threads = [threading.Thread(target=sorter)] + [
        threading.Thread(target=reader, args=(k % 4,)) for k in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, repr(errors[0])
    assert [str(r) for r in shared] == after
    assert sorted(tok(shared)["input_ids"].tolist()) == ids_before


def test_an_iterator_keeps_the_order_it_started_with():
    rs = RegionSet.from_regions([("chr2", 5, 9), ("chr1", 30, 40), ("chr1", 10, 20)])
    it = iter(rs)
    first = next(it)
    rs.sort()
    assert [str(first)] + [str(r) for r in it] == ["chr2:5-9", "chr1:30-40", "chr1:10-20"]
    assert [str(r) for r in rs] == ["chr1:10-20", "chr1:30-40", "chr2:5-9"]
    shared_it = iter(rs)
    got: list[str] = []
    lock = threading.Lock()

    def drain() -> None:
        for r in shared_it:
            with lock:
                got.append(str(r))

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == ["chr1:10-20", "chr1:30-40", "chr2:5-9"]


# ---------------------------------------------------------------------- atomic writes
def test_two_threads_saving_one_path_never_tear_it(tmp_path: Path):
    """Two threads writing the same path tore the file in 10 of 10 trials."""
    path = tmp_path / "cells.atok"
    a = TokenizedCells.from_lists([np.arange(200_000) % 5000] * 3, names=["a1", "a2", "a3"])
    b = TokenizedCells.from_lists([[9, 8, 7]] * 5, names=[f"b{i}" for i in range(5)])
    for _ in range(10):
        threads = [threading.Thread(target=c.save, args=(path,)) for c in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = TokenizedCells.load(path)
        assert got == a or got == b
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.atok"]


def test_two_threads_writing_one_gtok_never_tear_it(tmp_path: Path):
    path = tmp_path / "cell.gtok"
    big, small = np.arange(300_000) % 60_000, np.array([1, 2, 3])
    for _ in range(10):
        threads = [
            threading.Thread(target=atacformer.write_gtok, args=(path, ids)) for ids in (big, small)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = atacformer.read_gtok(path)
        assert np.array_equal(got, big) or np.array_equal(got, small)
    assert [p.name for p in tmp_path.iterdir()] == ["cell.gtok"]


@pytest.mark.parametrize("kind", ["atok", "gtok"])
def test_a_reader_never_sees_a_half_written_file(tmp_path: Path, kind: str):
    """Writing in place let a reader see a truncated or half-written file; with a rename
    it sees the old file or the new one."""
    path = tmp_path / f"x.{kind}"
    big, small = np.arange(1_000_000) % 60_000, np.array([1, 2, 3])
    if kind == "atok":
        versions = [TokenizedCells.from_lists([ids], names=["c"]) for ids in (big, small)]

        def write(i: int) -> None:
            versions[i].save(path)

        def read_is_whole() -> bool:
            got = TokenizedCells.load(path)  # read once, then compared with both
            return got == versions[0] or got == versions[1]
    else:

        def write(i: int) -> None:
            atacformer.write_gtok(path, (big, small)[i])

        def read_is_whole() -> bool:
            got = atacformer.read_gtok(path)
            return np.array_equal(got, big) or np.array_equal(got, small)

    write(1)
    done = threading.Event()
    bad: list[str] = []

    def writer() -> None:
        for k in range(20):
            write(k % 2)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    reads = 0
    while not done.is_set():
        try:
            ok = read_is_whole()
        except AtacformerError as e:
            ok = False
            bad.append(repr(e))
        reads += 1
        if not ok:
            bad.append("a torn file")
            break
    t.join()
    assert not bad, bad[:3]
    assert reads > 0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path):
    path = tmp_path / "cells.atok"
    old = TokenizedCells.from_lists([[1, 2]], names=["old"])
    old.save(path)
    bad = TokenizedCells.from_lists([[3]], names=["\ud800"])  # cannot be written as UTF-8
    with pytest.raises(InvalidInputError, match="surrogate"):
        bad.save(path)

    class Boom(TokenizedCells):
        @property
        def offsets(self) -> np.ndarray:  # fails half-way through the write
            raise OSError(28, "No space left on device")

    boom = Boom.from_lists([[5, 6]], names=["new"])
    with pytest.raises(atacformer.AtacformerIOError, match="cells.atok"):
        boom.save(path)
    assert TokenizedCells.load(path) == old
    assert [p.name for p in tmp_path.iterdir()] == ["cells.atok"]


# ---------------------------------------------------------------- to_gtok cell names
@pytest.mark.parametrize(
    "name",
    ["../../x", "/abs/path", "a/b", "a\\b", "..", ".", "", "a\x00b", "a\nb", "tab\there", "\ud800"],
)
def test_to_gtok_refuses_names_that_are_not_plain_file_names(tmp_path: Path, name: str):
    out = tmp_path / "deep" / "out"
    cells = TokenizedCells.from_lists([[1], [2]], names=["fine", name])
    with pytest.raises(InvalidInputError, match="cell name"):
        cells.to_gtok(out)
    # Nothing was written anywhere: not the valid cell, not outside the folder.
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert not Path("/abs/path.gtok").exists()


def test_to_gtok_refuses_duplicate_names(tmp_path: Path):
    cells = TokenizedCells.from_lists([[1], [2], [3]], names=["a", "b", "a"])
    with pytest.raises(InvalidInputError, match="both named 'a'"):
        cells.to_gtok(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_to_gtok_writes_plain_names_and_reads_them_back(tmp_path: Path):
    names = ["AAAC-1", "cell 2", "ünïcode", ".hidden", "x.y"]
    cells = TokenizedCells.from_lists([[1], [2, 3], [70_000], [], [4]], names=names)
    paths = cells.to_gtok(tmp_path / "out")
    assert [p.name for p in paths] == [f"{n}.gtok" for n in names]
    assert all(p.parent == tmp_path / "out" for p in paths)
    back = TokenizedCells.from_gtok(paths)
    assert back.names == names
    assert [c.tolist() for c in back] == [[1], [2, 3], [70_000], [], [4]]


# ------------------------------------------------------- names that cannot round-trip
@pytest.mark.parametrize(
    "name",
    [
        "#contig",
        "#",
        "track",
        "browser",
        "chr\x001",
        "chr\x1b[0m",
        "chr\x7f",
        "chr\u0085",
        "\ufeffchr1",
        "chr 1",
        "chr\t1",
        "",
        "\ud800",
    ],
)
def test_names_a_bed_file_cannot_hold_are_refused_on_construction(tmp_path: Path, name: str):
    with pytest.raises(InvalidInputError):
        Region(name, 1, 2)
    with pytest.raises(InvalidInputError):
        RegionSet.from_regions([(name, 1, 2)])
    with pytest.raises(InvalidInputError):
        RegionSet.from_arrays([name], [1], [2])
    with pytest.raises(InvalidInputError):
        RegionSet._from_state([name], *(np.array([v], np.uint32) for v in (0, 1, 2)), None)


@pytest.mark.parametrize(
    "name", ["chr1", "tracks", "Track", "browser2", "chr#1", "HLA-A*01:01", "ünï", "c-1_2.3"]
)
def test_accepted_names_round_trip_through_bed(tmp_path: Path, name: str):
    rs = RegionSet.from_regions([Region(name, 5, 9), (name, 1, 2), ("chr2", 3, 4)])
    rs.to_bed(tmp_path / "x.bed")
    back = RegionSet(tmp_path / "x.bed")
    assert [str(r) for r in back] == [f"{name}:5-9", f"{name}:1-2", "chr2:3-4"]
    assert back == rs


# ------------------------------------------------------ every error an AtacformerError
def test_whole_floats_are_coordinates_like_in_tuples():
    assert Region("c", 1.0, 5) == Region("c", 1, 5)
    assert Region("c", np.float64(2.0), np.int64(7)).start == 2
    assert str(RegionSet.from_regions([("c", 1.0, 5.0)])[0]) == "c:1-5"


def _tensor(kind: str):
    torch = pytest.importorskip("torch")
    if kind == "bf16":
        return torch.tensor([1, 2], dtype=torch.bfloat16)
    return torch.empty(2, dtype=torch.int64, device="meta")


def _cells() -> TokenizedCells:
    return TokenizedCells.from_lists([[1, 2], [3]], names=["a", "b"], pad_token_id=5)


def _rs() -> RegionSet:
    return RegionSet.from_regions([("chr1", 1, 2), ("chr2", 3, 4)])


FRAGMENTS = DATA / "fragments" / "fragments1.bed.gz"

# (description, call, expected class). Each call raised something else before.
ERROR_CASES = [
    ("Region 1.5", lambda t: Region("c", 1.5, 5), InvalidInputError),
    ("Region 2**200", lambda t: Region("c", 2**200, 2**201), InvalidInputError),
    ("Region nan", lambda t: Region("c", float("nan"), 5), InvalidInputError),
    ("Region str coordinate", lambda t: Region("c", "1", 5), AtacformerTypeError),
    ("Region bool coordinate", lambda t: Region("c", True, 5), AtacformerTypeError),
    ("Region int name", lambda t: Region(5, 1, 2), AtacformerTypeError),
    ("Region surrogate name", lambda t: Region("\ud800", 1, 2), InvalidInputError),
    ("Region rest with newline", lambda t: Region("c", 1, 2, "a\nb"), InvalidInputError),
    ("Region rest surrogate", lambda t: Region("c", 1, 2, "\udc80"), InvalidInputError),
    ("rs[::0]", lambda t: _rs()[::0], InvalidInputError),
    ("rs['a':]", lambda t: _rs()["a":], AtacformerTypeError),
    ("rs[1.5]", lambda t: _rs()[1.5], AtacformerTypeError),
    ("rs[2**100]", lambda t: _rs()[2**100], AtacformerIndexError),
    ("tc[::0]", lambda t: _cells()[::0], InvalidInputError),
    ("tc['a':]", lambda t: _cells()["a":], AtacformerTypeError),
    ("tc[ragged]", lambda t: _cells()[[[0, 1], [0]]], AtacformerIndexError),
    ("tc.take(ragged)", lambda t: _cells().take([[0, 1], [0]]), AtacformerIndexError),
    ("to_csr(2**100)", lambda t: _cells().to_csr(2**100), InvalidInputError),
    (
        "TokenizedCells ragged ids",
        lambda t: TokenizedCells([[1, 2], [3]], [0, 3]),
        InvalidInputError,
    ),
    (
        "from_arrays ragged starts",
        lambda t: RegionSet.from_arrays(["c"], [[1, 2], [3]], [2]),
        InvalidInputError,
    ),
    ("to_bed(123)", lambda t: _rs().to_bed(123), AtacformerTypeError),
    ("to_bed(NUL)", lambda t: _rs().to_bed("a\0b.bed"), InvalidInputError),
    ("RegionSet(123)", lambda t: RegionSet(123), AtacformerTypeError),
    (
        "surrogate chrom tuple",
        lambda t: RegionSet.from_regions([("\ud800", 1, 2)]),
        InvalidInputError,
    ),
    (
        "from_arrays bytes",
        lambda t: RegionSet.from_arrays(np.array([b"\xff"]), [1], [2]),
        InvalidInputError,
    ),
    (
        "from_arrays surrogate",
        lambda t: RegionSet.from_arrays(["\ud800"], [1], [2]),
        InvalidInputError,
    ),
    (
        "from_arrays object surrogate",
        lambda t: RegionSet.from_arrays(np.array(["\ud800"], object), [1], [2]),
        InvalidInputError,
    ),
    ("TokenizedCells.save(5)", lambda t: _cells().save(5), AtacformerTypeError),
    ("TokenizedCells.load(5)", lambda t: TokenizedCells.load(5), AtacformerTypeError),
    (
        "TokenizedCells.load(mmap='yes')",
        lambda t: TokenizedCells.load("x.atok", mmap="yes"),
        AtacformerTypeError,
    ),
    ("to_gtok(5)", lambda t: _cells().to_gtok(5), AtacformerTypeError),
    ("from_gtok(5)", lambda t: TokenizedCells.from_gtok(5), AtacformerTypeError),
    ("read_gtok(5)", lambda t: atacformer.read_gtok(5), AtacformerTypeError),
    ("write_gtok(5)", lambda t: atacformer.write_gtok(5, [1]), AtacformerTypeError),
    ("from_lists(5)", lambda t: TokenizedCells.from_lists(5), AtacformerTypeError),
    (
        "from_lists ragged cell",
        lambda t: TokenizedCells.from_lists([[1, [2, 3]]]),
        InvalidInputError,
    ),
    ("concat(5)", lambda t: TokenizedCells.concat(5), AtacformerTypeError),
    ("filter('a')", lambda t: _cells().filter(min_tokens="a"), AtacformerTypeError),
    (
        "pad_token_id=2**63",
        lambda t: TokenizedCells.from_lists([[1]], pad_token_id=2**63),
        InvalidInputError,
    ),
    ("to_padded pad 2**63", lambda t: _cells().to_padded(pad_token_id=2**63), InvalidInputError),
    ("to_padded max_length='3'", lambda t: _cells().to_padded(max_length="3"), AtacformerTypeError),
    ("truncate('3')", lambda t: _cells().truncate("3"), AtacformerTypeError),
    (
        "truncate strategy 5",
        lambda t: _cells().truncate(1, truncation_strategy=5),
        AtacformerTypeError,
    ),
    ("core pad id 2**63", lambda t: _cells()._ragged.pad(2, 2**63), InvalidInputError),
    ("tokenize_fragments(path=123)", lambda t: t.tokenize_fragments(path=123), AtacformerTypeError),
    (
        "tokenize_fragments(unique='no')",
        lambda t: t.tokenize_fragments(FRAGMENTS, unique="no"),
        AtacformerTypeError,
    ),
    (
        "tokenize_fragments(barcodes=5)",
        lambda t: t.tokenize_fragments(FRAGMENTS, barcodes=5),
        AtacformerTypeError,
    ),
    (
        "core tokenize_fragments surrogate barcode",
        lambda t: _core.tokenize_fragments(t._tok, FRAGMENTS, barcodes=["\ud800"]),
        InvalidInputError,
    ),
    ("decode ragged", lambda t: t.decode([[1, 2], [3]]), InvalidInputError),
    ("decode bfloat16", lambda t: t.decode(_tensor("bf16")), AtacformerTypeError),
    ("decode meta", lambda t: t.decode(_tensor("meta")), InvalidInputError),
    ("decode_regions ragged", lambda t: t.decode_regions([[1, 2], [3]]), InvalidInputError),
    ("pad([{}])", lambda t: t.pad([{}]), InvalidInputError),
    ("pad([5])", lambda t: t.pad([5]), AtacformerTypeError),
    ("pad(5)", lambda t: t.pad(5), AtacformerTypeError),
    ("pad({})", lambda t: t.pad({}), InvalidInputError),
    (
        "pad max_length='3'",
        lambda t: t.pad([{"input_ids": [1]}], padding="max_length", max_length="3"),
        AtacformerTypeError,
    ),
    (
        "pad pad_to_multiple_of='a'",
        lambda t: t.pad([{"input_ids": [1]}], pad_to_multiple_of="a"),
        AtacformerTypeError,
    ),
    (
        "pad uneven extra key",
        lambda t: t.pad([{"input_ids": [1], "x": [1]}, {"input_ids": [2]}]),
        InvalidInputError,
    ),
    ("tokenize_anndata([1])", lambda t: t.tokenize_anndata([1]), AtacformerTypeError),
    (
        "call max_length='3' truncation",
        lambda t: t([("chr1", 1, 2)], truncation=True, max_length="3"),
        AtacformerTypeError,
    ),
    (
        "call max_length='3' padding",
        lambda t: t([[("chr1", 1, 2)]], padding=True, truncation=True, max_length="3"),
        AtacformerTypeError,
    ),
    (
        "call max_length='3' max_length padding",
        lambda t: t([[("chr1", 1, 2)]], padding="max_length", max_length="3"),
        AtacformerTypeError,
    ),
    (
        "call max_length=-1",
        lambda t: t([[("chr1", 1, 2)]], padding=True, truncation=True, max_length=-1),
        InvalidInputError,
    ),
    ("tokenize surrogate chrom", lambda t: t.tokenize([("\ud800", 1, 2)]), InvalidInputError),
    ("encode surrogate token", lambda t: t.encode("\ud800"), InvalidInputError),
    ("encode surrogate tokens", lambda t: t.encode(["chr1:1-2", "\ud800"]), InvalidInputError),
    (
        "convert_tokens_to_ids surrogate",
        lambda t: t.convert_tokens_to_ids("\udfff"),
        InvalidInputError,
    ),
    ("core token_to_id(5)", lambda t: t._tok.token_to_id(5), AtacformerTypeError),
    ("core tokens_to_ids('abc')", lambda t: t._tok.tokens_to_ids("abc"), AtacformerTypeError),
    ("encode_cells(5)", lambda t: t.encode_cells(5), AtacformerTypeError),
    ("tokenize_files(5)", lambda t: t.tokenize_files(5), AtacformerTypeError),
    ("get_special_tokens_mask(5)", lambda t: t.get_special_tokens_mask(5), AtacformerTypeError),
    ("batch_decode 1-D array", lambda t: t.batch_decode(np.array([1, 2])), InvalidInputError),
    ("Tokenizer.from_pretrained(5)", lambda t: Tokenizer.from_pretrained(5), AtacformerTypeError),
    ("Tokenizer(5)", lambda t: Tokenizer(5), AtacformerTypeError),
    ("core Ragged.from_cells(5)", lambda t: _core.Ragged.from_cells(5), AtacformerTypeError),
    ("core Ragged.concat([5])", lambda t: _core.Ragged.concat([5]), AtacformerTypeError),
    (
        "core RegionSet._from_state bad names",
        lambda t: RegionSet._from_state(5, *(np.zeros(0, np.uint32),) * 3, None),
        AtacformerTypeError,
    ),
]


@pytest.mark.parametrize(
    ("call", "expected"),
    [(c, e) for _, c, e in ERROR_CASES],
    ids=[d for d, _, _ in ERROR_CASES],
)
def test_user_errors_are_atacformer_errors(tok: Tokenizer, call, expected):
    with pytest.raises(AtacformerError) as info:
        call(tok)
    assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"


def test_from_pretrained_refuses_a_non_string_before_the_hub(monkeypatch):
    import atacformer.hub as hub

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(hub, "resolve_pretrained", no_hub)
    for bad in (5, None, ["demo"], b"demo"):
        with pytest.raises(AtacformerTypeError, match="from_pretrained"):
            Tokenizer.from_pretrained(bad)


def test_batch_decode_decodes_rows_of_any_length(tok: Tokenizer):
    tokens = [str(r) for r in tok.universe]
    assert tok.batch_decode([[0, 1], [2]]) == [tokens[:2], [tokens[2]]]
    assert tok.batch_decode(np.array([[0, 1], [1, 0]])) == [tokens[:2], tokens[1::-1]]
    assert tok.batch_decode(_cells()) == [tokens[1:3], [tokens[3]]]
    # decode keeps reading one flat sequence (a rectangle row after row).
    assert tok.decode([[0, 1], [2, 0]]) == tokens[:3] + tokens[:1]


def test_tokenize_fragments_flags_still_work(tok: Tokenizer):
    plain = tok.tokenize_fragments(FRAGMENTS)
    assert tok.tokenize_fragments(FRAGMENTS, unique=np.bool_(True)) == plain
    everything = tok.tokenize_fragments(FRAGMENTS, unique=False)
    assert everything.lengths.sum() >= plain.lengths.sum()
    assert everything.names == plain.names
