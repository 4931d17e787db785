"""The one ragged type: take, concat, truncate, to_padded against brute-force oracles,
CSR round trips without copies, and offsets that must be refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import atacformer
from atacformer import InvalidInputError, TokenizedCells, _core
from atacformer.tokenized_cells import DEFAULT_SEED


def random_cells(rng: np.random.Generator, n: int, longest: int = 40) -> list[list[int]]:
    """Cells of 0..longest ids (some empty), ids in 0..999."""
    return [rng.integers(0, 1000, rng.integers(0, longest + 1)).tolist() for _ in range(n)]


def as_lists(cells: TokenizedCells) -> list[list[int]]:
    return [c.tolist() for c in cells]


@pytest.mark.parametrize("seed", range(4))
def test_take_concat_from_lists_match_python(seed: int):
    rng = np.random.default_rng(seed)
    lists = random_cells(rng, 50)
    names = [f"c{i}" for i in range(50)]
    cells = TokenizedCells.from_lists(lists, names=names, pad_token_id=7)
    assert as_lists(cells) == lists
    # Brute-force offsets: running sums of the lengths.
    assert (
        cells.offsets.tolist() == np.concatenate([[0], np.cumsum([len(c) for c in lists])]).tolist()
    )
    index = rng.integers(-50, 50, 80)
    got = cells.take(index)
    assert as_lists(got) == [lists[i] for i in index]
    assert got.names == [names[i] for i in index] and got.pad_token_id == 7
    mask = rng.random(50) < 0.5
    assert as_lists(cells[mask]) == [c for c, m in zip(lists, mask, strict=True) if m]
    assert as_lists(cells[5:40:3]) == lists[5:40:3]
    assert as_lists(cells[::-1]) == lists[::-1]
    parts = [cells[:10], cells[10:10], cells[10:], cells[3:4]]
    joined = TokenizedCells.concat(parts)
    assert as_lists(joined) == lists[:10] + lists[10:] + lists[3:4]
    assert joined.names == names + names[3:4] and joined.pad_token_id == 7
    assert len(TokenizedCells.concat([])) == 0
    with pytest.raises(atacformer.AtacformerIndexError):
        cells.take([50])
    with pytest.raises(atacformer.AtacformerIndexError):
        cells.take([-51])


@pytest.mark.parametrize("seed", range(3))
def test_truncate_and_pad_match_brute_force(seed: int):
    rng = np.random.default_rng(10 + seed)
    lists = random_cells(rng, 40)
    cells = TokenizedCells.from_lists(lists, pad_token_id=-3)
    k = int(rng.integers(1, 30))
    first = cells.truncate(k, "first")
    assert as_lists(first) == [c[:k] for c in lists]
    # Random: each cell keeps min(len, k) of its ids, as an ordered subsequence.
    rand = cells.truncate(k, "random", seed=5)
    for got, cell in zip(as_lists(rand), lists, strict=True):
        assert len(got) == min(len(cell), k)
        it = iter(cell)
        assert all(x in it for x in got), "an ordered subsequence"
    assert rand == cells.truncate(k, "random", seed=5), "deterministic"
    assert cells.truncate(k) == cells.truncate(k, "random", seed=DEFAULT_SEED), "default seed"
    # Padding: brute force row by row, from the truncated cells.
    for width in (0, k, 45):
        enc = cells.to_padded(width, "random", seed=5, pad_to_max_length=True)
        kept = as_lists(cells.truncate(width, "random", seed=5))
        want = [c + [-3] * (width - len(c)) for c in kept]
        want_mask = [[1] * len(c) + [0] * (width - len(c)) for c in kept]
        assert enc["input_ids"].dtype == np.int64 and enc["input_ids"].shape == (40, width)
        assert enc["input_ids"].tolist() == want
        assert enc["attention_mask"].tolist() == want_mask


def test_results_from_rust_are_moved_not_copied():
    cells = TokenizedCells.from_lists([[1, 2, 3], [4]], pad_token_id=0)
    enc = cells.to_padded()
    held = (cells._ragged.ids, cells._ragged.offsets)
    for arr in (*held, enc["input_ids"], enc["attention_mask"]):
        # The memory belongs to the Rust buffer handed over, not to a NumPy copy.
        assert not arr.flags.owndata and arr.base is not None
        assert not isinstance(arr.base, np.ndarray)
    # What users see are read-only views of those buffers.
    assert cells.ids.base is held[0] and cells.offsets.base is held[1]
    ids = np.arange(6, dtype=np.int32)
    offsets = np.array([0, 2, 6], dtype=np.int64)
    kept = TokenizedCells(ids, offsets)
    assert kept._ragged.ids is ids and kept._ragged.offsets is offsets, "input held as given"
    assert np.shares_memory(kept.ids, ids) and np.shares_memory(kept.offsets, offsets)


def test_csr_round_trip_shares_the_id_buffer():
    rng = np.random.default_rng(1)
    lists = random_cells(rng, 30)
    cells = TokenizedCells.from_lists(lists, names=[f"n{i}" for i in range(30)])
    csr = cells.to_csr(n_vars=1007)
    assert isinstance(csr, sp.csr_matrix) and csr.shape == (30, 1007)
    assert np.shares_memory(csr.indices, cells.ids)
    assert csr.data.dtype == np.float32
    # Brute force: the dense matrix counts each id of each cell.
    dense = np.zeros((30, 1007))
    for r, c in enumerate(lists):
        for i in c:
            dense[r, i] += 1
    assert np.array_equal(csr.toarray(), dense)
    back = TokenizedCells.from_csr(csr, names=cells.names)
    assert back == cells
    assert np.shares_memory(back.ids, csr.indices)
    # int64 indptr is shared too; other dtypes are converted.
    wide = sp.csr_matrix(csr.shape)
    wide.indices, wide.indptr, wide.data = csr.indices, csr.indptr.astype(np.int64), csr.data
    shared = TokenizedCells.from_csr(wide)
    assert np.shares_memory(shared.offsets, wide.indptr)
    assert as_lists(TokenizedCells.from_csr(csr.tocsc())) == [sorted(c) for c in lists]
    assert cells.to_csr().shape == (30, max(max(c) for c in lists if c) + 1)
    with pytest.raises(InvalidInputError, match="n_vars"):
        cells.to_csr(n_vars=10)
    with pytest.raises(atacformer.AtacformerTypeError):
        TokenizedCells.from_csr(np.zeros((2, 2)))


@pytest.mark.parametrize(
    "offsets",
    [
        [0, 2**63 - 1, -2, 4],
        [0, -1, 4],
        [1, 4],
        [0, 5],
        [0, 3, 2, 4],
        [0, 2**63 - 1],
        [],
    ],
)
def test_crafted_offsets_are_refused(offsets, tmp_path: Path):
    ids = np.arange(4, dtype=np.int32)
    off = np.array(offsets, dtype=np.int64)
    with pytest.raises(InvalidInputError):
        TokenizedCells(ids, off)
    with pytest.raises(InvalidInputError):
        _core.Ragged(ids, off)
    if len(offsets) < 2:
        return
    # The same offsets in an .atok file: refused on load, naming the file.
    path = tmp_path / "bad.atok"
    good = TokenizedCells(ids, np.array([0] * (len(offsets) - 1) + [4], dtype=np.int64))
    good.save(path)
    raw = bytearray(path.read_bytes())
    at = 40  # after the header
    raw[at : at + 8 * len(offsets)] = off.astype("<i8").tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(atacformer.ParseError, match="bad.atok"):
        TokenizedCells.load(path)


def test_atok_round_trip_keeps_memory_map(tmp_path: Path):
    cells = TokenizedCells.from_lists([[3, 1], [], [9, 9, 9]], names=["a", "b", "c"])
    path = tmp_path / "x.atok"
    cells.save(path)
    back = TokenizedCells.load(path, mmap=True)
    assert back == cells
    assert isinstance(back.ids, np.memmap) and isinstance(back.offsets, np.memmap)
    assert TokenizedCells.load(path) == cells  # the default reads the file instead
    assert as_lists(back.take([2, 0])) == [[9, 9, 9], [3, 1]]
    assert pickle.loads(pickle.dumps(back)) == cells
    ragged = _core.Ragged(np.array([1, 2], np.int32), np.array([0, 1, 2], np.int64))
    again = pickle.loads(pickle.dumps(ragged))
    assert again.ids.tolist() == [1, 2] and again.offsets.tolist() == [0, 1, 2]


def test_facts_come_from_the_core():
    from atacformer import tokenized_cells, tokenizers

    assert tokenizers.SPECIAL_TOKEN_NAMES == ("unk", "pad", "mask", "cls", "eos", "bos", "sep")
    assert tokenizers.SPECIAL_TOKEN_NAMES is _core.SPECIAL_TOKEN_NAMES
    assert tokenized_cells.DEFAULT_SEED == tokenizers.DEFAULT_SEED == _core.DEFAULT_SEED == 42
    assert tokenizers.CONFIG_FILE == _core.CONFIG_FILE == "tokenizer.toml"
    assert tokenizers.UNIVERSE_FILES == ("universe.bed.gz", "universe.bed")


def test_the_shared_csr_buffers_cannot_change_the_cells():
    cells = TokenizedCells.from_lists([[3, 1, 2], [5]])
    matrix = cells.to_csr()
    with pytest.raises(ValueError):
        matrix.sort_indices()  # would sort the shared id buffer in place
    with pytest.raises(ValueError):
        cells.ids[0] = 42
    assert cells[0].tolist() == [3, 1, 2] and cells.offsets.tolist() == [0, 3, 4]
    edited = matrix.copy()
    edited.sort_indices()
    assert edited.indices.tolist() == [1, 2, 3, 5] and cells[0].tolist() == [3, 1, 2]


def test_concat_refuses_parts_of_different_vocabularies():
    a = TokenizedCells.from_lists([[1]], pad_token_id=9)
    b = TokenizedCells.from_lists([[2]], pad_token_id=7)
    with pytest.raises(InvalidInputError, match="different pad ids"):
        TokenizedCells.concat([a, b])
    assert TokenizedCells.concat([a, b], pad_token_id=9).pad_token_id == 9
    unknown = TokenizedCells.from_lists([[3]])
    joined = TokenizedCells.concat([a, unknown])
    assert joined.pad_token_id == 9 and [c.tolist() for c in joined] == [[1], [3]]


def test_bad_selections_are_index_errors_of_ours():
    cells = TokenizedCells.from_lists([[1], [2], [3], [4]])
    with pytest.raises(InvalidInputError, match="step cannot be zero"):
        cells[::0]
    with pytest.raises(atacformer.AtacformerIndexError, match="1-D"):
        cells.take([[0, 1], [2, 3]])
    assert [c.tolist() for c in cells[::-2]] == [[4], [2]]
