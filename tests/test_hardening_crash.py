"""Inputs that used to kill the process (abort, panic, segfault, SIGBUS): each runs in a
child interpreter, and the test asserts on its exit code and output (issue 12, section 1)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
PYTHON_DIR = Path(__file__).resolve().parents[1] / "python"


def run_child(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh interpreter that imports this tree's atacformer."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PYTHON_DIR), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("RUST_BACKTRACE", "0")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_survived(r: subprocess.CompletedProcess[str], expect: str = "OK") -> None:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "PanicException" not in r.stderr and "panicked" not in r.stderr, r.stderr
    assert r.stdout.strip().splitlines()[-1] == expect, r.stdout


# ----------------------------------------------------------------- over-reported __len__
PRELUDE = f"""
import sys
import numpy as np
import atacformer
from atacformer import AtacformerError, RegionSet, Tokenizer, TokenizedCells, _core

class Liar(list):
    # A list that claims to hold more items than it has.
    def __len__(self):
        return N

tok = Tokenizer.from_bed({str(DATA / "tokenizers" / "peaks.bed")!r})
"""

# Every entry point that takes a sequence from the user, called with a lying list.
SEQUENCE_CALLS = {
    "RegionSet.from_regions": "RegionSet.from_regions(Liar([('chr1', 1, 2)]))",
    "RegionSet.from_arrays": "RegionSet.from_arrays(Liar(['chr1']), Liar([1]), Liar([2]))",
    "RegionSet._from_state": (
        "RegionSet._from_state(Liar(['chr1']), np.zeros(1, np.uint32), "
        "np.ones(1, np.uint32), np.full(1, 2, np.uint32), Liar([None]))"
    ),
    "Tokenizer.__call__ (one cell)": "tok(Liar([('chr1', 1, 2)]))",
    "Tokenizer.__call__ (batch)": "tok(Liar([Liar([('chr1', 1, 2)])]), padding=True)",
    "Tokenizer.tokenize": "tok.tokenize(Liar([('chr1', 1, 2)]))",
    "Tokenizer.encode_cells": "tok.encode_cells(Liar([Liar([('chr1', 1, 2)])]))",
    "Tokenizer.encode": "tok.encode(Liar(['chr1:1-2']))",
    "Tokenizer.convert_tokens_to_ids": "tok.convert_tokens_to_ids(Liar(['chr1:1-2']))",
    "core tokens_to_ids": "tok._tok.tokens_to_ids(Liar(['chr1:1-2']))",
    "Tokenizer.decode": "tok.decode(Liar([1, 2]))",
    "Tokenizer.batch_decode": "tok.batch_decode(Liar([Liar([1, 2]), [3]]))",
    "Tokenizer.get_special_tokens_mask": "tok.get_special_tokens_mask(Liar([1, 2]))",
    "Tokenizer.pad (rows)": "tok.pad(Liar([{'input_ids': Liar([1, 2])}]))",
    "Tokenizer.pad (mapping)": "tok.pad({'input_ids': Liar([Liar([1, 2])])})",
    "Tokenizer.tokenize_files": "tok.tokenize_files(Liar([]))",
    "Tokenizer.tokenize_fragments barcodes": (
        f"tok.tokenize_fragments({str(DATA / 'fragments' / 'fragments1.bed.gz')!r}, "
        "barcodes=Liar(['AAACGCAAGCAAAGGGATGCCA']))"  # a barcode of the file: none is an error
    ),
    "core tokenize_fragments barcodes": (
        f"_core.tokenize_fragments(tok._tok, {str(DATA / 'fragments' / 'fragments1.bed.gz')!r},"
        " barcodes=Liar(['AAAC-1']))"
    ),
    "TokenizedCells.from_lists": "TokenizedCells.from_lists(Liar([Liar([1, 2])]))",
    "TokenizedCells names": "TokenizedCells.from_lists([[1, 2]], names=Liar(['a']))",
    "TokenizedCells.concat": ("TokenizedCells.concat(Liar([TokenizedCells.from_lists([[1]])]))"),
    "core Ragged.from_cells": "_core.Ragged.from_cells(Liar([np.array([1], np.int32)]))",
    "core Ragged.concat": (
        "_core.Ragged.concat(Liar([_core.Ragged.from_cells([np.array([1], np.int32)])]))"
    ),
    "TokenizedCells.from_gtok": "TokenizedCells.from_gtok(Liar([]))",
}


@pytest.mark.parametrize("claim", ["10**11", "sys.maxsize"])
def test_an_over_reported_len_never_kills_the_process(claim: str):
    """A list subclass whose __len__ claims 10^11 items (or sys.maxsize) aborted the process
    ("memory allocation of 400000000000 bytes failed") or raised PanicException: capacity
    overflow. Every call must now finish or raise an AtacformerError."""
    calls = "\n".join(
        f"""
try:
    {call}
    print({name!r}, 'ok')
except AtacformerError as e:
    print({name!r}, 'AtacformerError', type(e).__name__)
except BaseException as e:
    print({name!r}, 'FOREIGN', type(e).__name__, e)
"""
        for name, call in SEQUENCE_CALLS.items()
    )
    r = run_child(PRELUDE.replace("return N", f"return {claim}") + calls)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(SEQUENCE_CALLS), r.stdout + r.stderr[-2000:]
    foreign = [line for line in lines if "FOREIGN" in line]
    assert not foreign, "\n".join(foreign)
    # Growing as it goes, each call works on the real items.
    assert all(line.endswith(" ok") for line in lines), r.stdout


def test_an_over_reported_len_gives_the_real_items():
    r = run_child(
        PRELUDE.replace("return N", "return 10**11")
        + """
rs = RegionSet.from_regions(Liar([('chr1', 1, 2), ('chr2', 5, 9)]))
assert len(rs) == 2 and str(rs[1]) == 'chr2:5-9', rs
cells = TokenizedCells.from_lists(Liar([Liar([1, 2]), [3]]), names=Liar(['a', 'b']))
assert cells.names == ['a', 'b'] and cells.lengths.tolist() == [2, 1]
assert tok._tok.tokens_to_ids(Liar([str(tok.universe[0])])) == [0]
print('OK')
"""
    )
    assert_survived(r)


# ------------------------------------------------------------- crafted .atok offsets
def _atok_with_offsets(path: Path, offsets: list[int], n_ids: int = 4) -> Path:
    """An .atok file whose header is consistent but whose offsets are ``offsets``."""
    import numpy as np

    from atacformer.tokenized_cells import _HEADER, _MAGIC, _VERSION

    header = np.zeros((), dtype=_HEADER)
    header["magic"], header["version"] = _MAGIC, _VERSION
    header["n_cells"], header["n_ids"] = len(offsets) - 1, n_ids
    header["pad"] = -1
    names = "\n".join(f"c{i}" for i in range(len(offsets) - 1)).encode()
    header["names_bytes"] = len(names)
    body = (
        header.tobytes()
        + np.array(offsets, dtype="<i8").tobytes()
        + np.arange(n_ids, dtype="<i4").tobytes()
        + b"\0" * (-4 * n_ids % 8)
        + names
    )
    path.write_bytes(body)
    return path


@pytest.mark.parametrize(
    "offsets",
    [
        [0, 2**63 - 1, -2, 4],
        [0, -1, 4],
        [0, 5, 4],
        [1, 2, 4],
        [0, 2, 3],
        [0, 2, 2**62],
        [0, 3, 2, 4],
    ],
)
@pytest.mark.parametrize("mmap", [False, True])
def test_crafted_atok_offsets_are_parse_errors(tmp_path: Path, offsets: list[int], mmap: bool):
    """Offsets [0, 2**63-1, -2, 4] passed an np.diff check through overflow: load then
    segfaulted, filter() read past the buffer and slicing raised a built-in ValueError."""
    path = _atok_with_offsets(tmp_path / "bad.atok", offsets)
    r = run_child(
        f"""
from atacformer import ParseError, TokenizedCells
try:
    cells = TokenizedCells.load({str(path)!r}, mmap={mmap})
except ParseError as e:
    assert e.path == {str(path)!r}, e.path
    print('refused')
else:
    cells.filter(min_tokens=1)
    cells[1:]
    print('loaded')
"""
    )
    assert_survived(r, "refused")


@pytest.mark.parametrize(
    "header_change",
    [
        {"n_cells": 2**64 - 1},
        {"n_cells": 2**61},
        {"n_ids": 2**62},
        {"names_bytes": 2**63},
        {"n_ids": 5},
    ],
)
def test_atok_headers_that_disagree_with_the_file_size(tmp_path: Path, header_change: dict):
    import numpy as np

    from atacformer.tokenized_cells import _HEADER

    path = _atok_with_offsets(tmp_path / "bad.atok", [0, 2, 4])
    data = bytearray(path.read_bytes())
    header = np.frombuffer(bytes(data[: _HEADER.itemsize]), dtype=_HEADER).copy()
    for k, v in header_change.items():
        header[k] = v
    data[: _HEADER.itemsize] = header.tobytes()
    path.write_bytes(bytes(data))
    r = run_child(
        f"""
from atacformer import ParseError, TokenizedCells
for mmap in (False, True):
    try:
        TokenizedCells.load({str(path)!r}, mmap=mmap)
    except ParseError:
        pass
    else:
        raise SystemExit('loaded a corrupt file')
print('OK')
"""
    )
    assert_survived(r)


# ------------------------------------------------------------ a file rewritten in place
def test_rewriting_a_loaded_atok_in_place_does_not_kill_the_process(tmp_path: Path):
    """load() memory-mapped the file by default, so rewriting it in place (as cp does:
    open for writing, truncate, write) killed the process with SIGBUS when the cells were
    read. The default now reads the file, so the cells keep the old data."""
    r = run_child(
        f"""
import numpy as np
from atacformer import TokenizedCells
path = {str(tmp_path / "cells.atok")!r}
old = TokenizedCells.from_lists([np.arange(50_000) % 1000, [7, 8, 9]], names=['a', 'b'])
old.save(path)
cells = TokenizedCells.load(path)
small = TokenizedCells.from_lists([[1]], names=['z'])
small.save(path + '.new')
with open(path, 'r+b') as f:  # what `cp new path` does to the file
    f.truncate(0)
    f.write(open(path + '.new', 'rb').read())
total = int(cells.ids.astype(np.int64).sum()) + sum(int(c.sum()) for c in cells)
assert cells == old, 'the loaded cells changed'
assert total == 2 * int(old.ids.astype(np.int64).sum())
print('OK')
"""
    )
    assert_survived(r)


def test_mmap_true_still_maps_the_file(tmp_path: Path):
    import numpy as np

    from atacformer import TokenizedCells

    path = tmp_path / "cells.atok"
    cells = TokenizedCells.from_lists([[1, 2, 3], [4]], names=["a", "b"])
    cells.save(path)
    mapped = TokenizedCells.load(path, mmap=True)
    assert isinstance(mapped._ragged.ids, np.memmap)
    assert mapped == cells
    in_memory = TokenizedCells.load(path)
    assert not isinstance(in_memory._ragged.ids, np.memmap)
    assert not isinstance(in_memory._ragged.offsets, np.memmap)
    assert in_memory == cells
