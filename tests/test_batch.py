"""Batch calls, TokenizedCells, truncation/padding, pad(), files and fork safety."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import atacformer
from atacformer import Region, RegionSet, TokenizedCells, Tokenizer

from conftest import oracle_ids, write_bed


@pytest.fixture
def case(tmp_path: Path):
    rng = random.Random(11)
    universe = sorted({("chr1", s, s + 300) for s in rng.sample(range(0, 10**6, 5), 2000)})
    universe += [("chr2", 0, 10**6)]  # one long region: a second width group
    cells = [
        [(rng.choice(["chr1", "chr2", "chrX"]), s, s + 150) for s in rng.sample(range(10**6), n)]
        for n in [40, 0, 7, 120, 1, 60]
    ]
    tok = Tokenizer(write_bed(tmp_path / "u.bed", universe))
    return tok, universe, cells


def test_batch_matches_single_calls_and_oracle(case, tmp_path: Path):
    tok, universe, cells = case
    want = [oracle_ids(universe, c) for c in cells]
    as_sets = [RegionSet.from_regions([Region(*r) for r in c]) for c in cells]
    paths = [write_bed(tmp_path / f"c{i}.bed", c) for i, c in enumerate(cells)]
    for form in (cells, as_sets, paths, [str(p) for p in paths]):
        enc = tok(form)
        tc = enc["input_ids"]
        assert isinstance(tc, TokenizedCells) and enc.input_ids is tc
        assert [c.tolist() for c in tc] == want
        assert tc.ids.dtype == np.int32 and tc.offsets.dtype == np.int64
        assert tc.offsets.tolist() == np.cumsum([0] + [len(w) for w in want]).tolist()
    for threads in (1, 2):
        atacformer.set_num_threads(threads)
        assert [c.tolist() for c in tok(as_sets)["input_ids"]] == want
    atacformer.set_num_threads(0)
    files = tok.tokenize_files(paths)
    assert files.names == [f"c{i}.bed" for i in range(len(cells))]
    assert [c.tolist() for c in files] == want


def test_padding_and_truncation(case):
    tok, universe, cells = case
    want = [oracle_ids(universe, c) for c in cells]
    pad = tok.pad_token_id
    enc = tok(cells, padding=True)
    longest = max(map(len, want))
    assert enc["input_ids"].shape == (len(cells), longest)
    for row, mask, w in zip(enc["input_ids"], enc["attention_mask"], want, strict=True):
        assert row[: len(w)].tolist() == w and (row[len(w) :] == pad).all()
        assert mask.tolist() == [1] * len(w) + [0] * (longest - len(w))
    first = tok(
        cells, padding="max_length", truncation=True, max_length=8, truncation_strategy="first"
    )
    assert first["input_ids"].shape == (len(cells), 8)
    for row, w in zip(first["input_ids"], want, strict=True):
        assert row[: min(8, len(w))].tolist() == w[:8]
    rnd = tok(cells, padding=True, truncation=True, max_length=8)
    again = tok(cells, padding=True, truncation=True, max_length=8)
    np.testing.assert_array_equal(rnd["input_ids"], again["input_ids"])  # seeded
    for row, mask, w in zip(rnd["input_ids"], rnd["attention_mask"], want, strict=True):
        kept = row[mask == 1].tolist()
        assert len(kept) == min(8, len(w))
        # an order-preserving subsequence of the cell's ids
        it = iter(w)
        assert all(any(x == y for y in it) for x in kept)
    other_seed = tok(cells, padding=True, truncation=True, max_length=8, seed=1)
    assert not np.array_equal(other_seed["input_ids"], rnd["input_ids"])
    ragged = tok(cells, truncation=True, max_length=5)["input_ids"]
    assert ragged.lengths.tolist() == [min(5, len(w)) for w in want]
    with pytest.raises(atacformer.InvalidInputError, match="truncation=True"):
        tok(cells, padding="max_length", max_length=5)
    with pytest.raises(atacformer.InvalidInputError, match="needs padding"):
        tok(cells, return_tensors="np")
    with pytest.raises(atacformer.InvalidInputError, match="truncation_strategy"):
        tok(cells, padding=True, truncation=True, max_length=4, truncation_strategy="last")


def test_padded_torch_tensors_share_rust_memory(case):
    import torch

    tok, _, cells = case
    enc = tok(cells, padding=True, return_tensors="pt")
    assert enc["input_ids"].dtype == torch.int64
    np_enc = tok(cells, padding=True)
    arr = np_enc["input_ids"]
    t = torch.from_numpy(arr)
    assert t.data_ptr() == arr.ctypes.data  # no copy between NumPy and torch
    # The array's memory is the Vec that Rust filled, handed over without a copy: NumPy
    # does not own it, and no NumPy array lies underneath.
    for a in (arr, np_enc["attention_mask"]):
        assert not a.flags.owndata and a.base is not None and a.flags.c_contiguous
        assert not isinstance(a.base, np.ndarray)


def test_tokenized_cells_access_filter_and_files(case, tmp_path: Path):
    tok, universe, cells = case
    tc = tok(cells)["input_ids"]
    want = [oracle_ids(universe, c) for c in cells]
    assert len(tc) == len(cells) and tc.lengths.tolist() == [len(w) for w in want]
    view = tc[3]
    assert np.shares_memory(view, tc.ids) and view.tolist() == want[3]
    assert tc[-1].tolist() == want[-1]
    sub = tc[[3, 0]]
    assert [c.tolist() for c in sub] == [want[3], want[0]] and sub.names == ["3", "0"]
    mask = tc.lengths > 5
    assert [c.tolist() for c in tc[mask]] == [w for w in want if len(w) > 5]
    assert [c.tolist() for c in tc[1:4]] == want[1:4]
    kept = tc.filter(min_tokens=2, max_tokens=60)
    assert [c.tolist() for c in kept] == [w for w in want if 2 <= len(w) <= 60]
    with pytest.raises(IndexError):
        tc[len(cells)]
    path = tmp_path / "cells.atok"
    tc.save(path)
    back = TokenizedCells.load(path)
    assert back == tc and back.pad_token_id == tok.pad_token_id
    assert not isinstance(back.ids, np.memmap)  # read into memory by default (safe)
    mapped = TokenizedCells.load(path, mmap=True)
    assert mapped == tc and isinstance(mapped.ids, np.memmap)
    assert pickle.loads(pickle.dumps(tc)) == tc
    gtoks = tc.to_gtok(tmp_path / "g")
    assert (tmp_path / "g" / "3.gtok").read_bytes()[:5] == b"GTOK\x01"
    assert TokenizedCells.from_gtok(gtoks) == tc
    big = tmp_path / "big.gtok"
    atacformer.write_gtok(big, [1, 70000])
    assert big.read_bytes() == b"GTOK\x02" + np.array([1, 70000], "<u4").tobytes()
    assert atacformer.read_gtok(big).tolist() == [1, 70000]
    (tmp_path / "bad.atok").write_bytes(path.read_bytes()[:-3])
    with pytest.raises(atacformer.ParseError, match="bad.atok"):
        TokenizedCells.load(tmp_path / "bad.atok")
    (tmp_path / "bad.gtok").write_bytes(b"GTOK\x07\x00")
    with pytest.raises(atacformer.ParseError, match="flag"):
        atacformer.read_gtok(tmp_path / "bad.gtok")
    padded = tc.to_padded(max_length=10, truncation_strategy="first")
    assert padded["input_ids"].shape == (len(cells), 10)


def test_pad_follows_the_transformers_contract(case):
    tok, universe, cells = case
    feats = [{"input_ids": oracle_ids(universe, c), "labels": i} for i, c in enumerate(cells)]
    out = tok.pad(feats, return_tensors="np", pad_to_multiple_of=16)
    longest = max(len(f["input_ids"]) for f in feats)
    assert out["input_ids"].shape == (len(cells), -(-longest // 16) * 16)
    assert out["labels"].tolist() == list(range(len(cells)))
    assert out["attention_mask"].sum() == sum(len(f["input_ids"]) for f in feats)
    import transformers

    collator = transformers.DataCollatorWithPadding(tok, return_tensors="pt")
    batch = collator(feats)
    assert batch["input_ids"].shape == (len(cells), longest)
    assert batch["input_ids"][1, 0].item() == tok.unk_token_id  # the empty cell
    assert (batch["input_ids"][1, 1:] == tok.pad_token_id).all()


FORK_SCRIPT = """
import os, sys, atacformer
tok = atacformer.Tokenizer(sys.argv[1])
cells = [[("chr1", s, s + 500)] for s in range(0, 200000, 1000)]
parent = tok(cells, padding=True)["input_ids"]           # uses the thread pool
pid = os.fork()
if pid == 0:
    ok = atacformer.get_num_threads() == 1
    child = tok(cells, padding=True)["input_ids"]        # must not deadlock
    os._exit(0 if ok and (child == parent).all() else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


def _run_with_universe(script: str, universe: Path, threads: int) -> str:
    """Runs ``script`` in a fresh interpreter with ``threads`` atacformer threads (and one
    BLAS thread); returns what it printed."""
    env = dict(os.environ, ATACFORMER_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", script, str(universe)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def test_fork_after_parallel_use_neither_deadlocks_nor_oversubscribes(case, tmp_path: Path):
    _, universe, _ = case
    out = _run_with_universe(FORK_SCRIPT, write_bed(tmp_path / "u2.bed", universe), threads=2)
    assert out.strip() == "0"


def test_num_threads_env_and_setter():
    code = "import atacformer; print(atacformer.get_num_threads())"
    env = dict(os.environ, ATACFORMER_NUM_THREADS="3")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "3"
    atacformer.set_num_threads(5)
    assert atacformer.get_num_threads() == 5
    atacformer.set_num_threads(0)


SERIAL_FORK_SCRIPT = """
import os, sys, atacformer
tok = atacformer.Tokenizer(sys.argv[1])
cells = [[("chr1", s, s + 500)] for s in range(0, 200000, 1000)]
parent = tok(cells, padding=True)["input_ids"]           # one thread: no pool at all
pid = os.fork()
if pid == 0:
    child = tok(cells, padding=True)["input_ids"]        # must not deadlock
    threads = len(os.listdir("/proc/self/task"))
    os._exit(0 if threads == 1 and (child == parent).all() else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), len(os.listdir("/proc/self/task")))
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="counts threads in /proc")
def test_one_thread_pads_serially_and_survives_fork(case, tmp_path: Path):
    _, universe, _ = case
    path = write_bed(tmp_path / "u2.bed", universe)
    out = _run_with_universe(SERIAL_FORK_SCRIPT, path, threads=1)
    # The child padded on its own thread; the parent started no thread pool either.
    assert out.split() == ["0", "1"]


def test_pad_keeps_given_attention_masks(case):
    tok, _, cells = case
    feats = [dict(tok(c, padding="max_length", max_length=130)) for c in cells[:4]]
    lengths = [len(tok(c)["input_ids"]) for c in cells[:4]]
    out = tok.pad(feats)
    assert out["input_ids"].shape == (4, 130)
    assert out["attention_mask"].sum(axis=1).tolist() == lengths
    again = tok.pad(tok(cells, padding=True), padding="max_length", max_length=140)
    assert again["attention_mask"].sum(axis=1).tolist() == [len(tok(c)["input_ids"]) for c in cells]
    with pytest.raises(atacformer.InvalidInputError, match="differ in length"):
        tok.pad([{"input_ids": [1, 2], "attention_mask": [1]}])


def test_batch_options_edge_cases(case):
    tok, _, cells = case
    one = tok(cells[0], truncation=True, max_length=3)
    assert one["input_ids"].shape == (3,) and one["attention_mask"].tolist() == [1, 1, 1]
    # Cells of one length stack without padding, as in Hugging Face; others need padding.
    same = tok([cells[4], cells[4]], return_tensors="np")
    assert same["input_ids"].shape == (2, len(tok(cells[4])["input_ids"]))
    with pytest.raises(atacformer.InvalidInputError, match="differ in length"):
        tok(cells, return_tensors="np")
    for bad in [
        dict(padding=True, truncation=True, max_length=-1),
        dict(padding="max_length", max_length=2**40),
        dict(padding="max_length", max_length=2**62),
    ]:
        with pytest.raises(atacformer.InvalidInputError):
            tok(cells, **bad)
    # Any integer seeds (negative ones too); the default matches TokenizedCells'.
    kwargs = dict(padding=True, truncation=True, max_length=5)
    assert (
        tok(cells, seed=-1, **kwargs)["input_ids"] == tok(cells, seed=-1, **kwargs)["input_ids"]
    ).all()
    # NumPy integer seeds act like the same Python integers.
    numpy_seed = tok(cells, seed=np.int64(5), **kwargs)["input_ids"]
    assert (numpy_seed == tok(cells, seed=5, **kwargs)["input_ids"]).all()
    ragged = tok(cells)["input_ids"]
    assert ragged.truncate(3, seed=np.uint32(7)) == ragged.truncate(3, seed=7)
    assert (ragged.to_padded(max_length=5)["input_ids"] == tok(cells, **kwargs)["input_ids"]).all()
    with pytest.raises(atacformer.InvalidInputError, match="0 or more"):
        atacformer.set_num_threads(-1)


def test_tokenized_cells_refuse_values_that_would_wrap(tmp_path: Path):
    strided = TokenizedCells(np.arange(8, dtype=np.int32)[::2], [0, 2, 4])
    assert strided.to_padded(pad_token_id=0)["input_ids"].tolist() == [[0, 2], [4, 6]]
    assert strided.truncate(1, "first").ids.tolist() == [0, 4]
    with pytest.raises(atacformer.InvalidInputError, match="int32"):
        TokenizedCells(np.array([2**31 + 5]), [0, 1])
    with pytest.raises(atacformer.InvalidInputError, match="integers"):
        TokenizedCells(np.array([1.5]), [0, 1])
    with pytest.raises(atacformer.AtacformerIndexError):
        strided[np.array([0.9, 1.7])]
    with pytest.raises(atacformer.InvalidInputError, match="2\\^32"):
        atacformer.write_gtok(tmp_path / "x.gtok", [2**32])
    bad_names = tmp_path / "bad.atok"
    strided.save(bad_names)
    data = bytearray(bad_names.read_bytes())
    data[-1] = 0xFF  # the last byte of the names
    bad_names.write_bytes(bytes(data))
    with pytest.raises(atacformer.ParseError, match="UTF-8"):
        TokenizedCells.load(bad_names)
