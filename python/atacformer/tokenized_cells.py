"""`TokenizedCells`: token ids of many cells in one flat buffer.

Cell ``i`` owns ``ids[offsets[i]:offsets[i + 1]]``. ``ids`` is int32 (vocabularies fit) and
``offsets`` is int64 with ``n_cells + 1`` entries; both are NumPy arrays, moved out of Rust
or kept as given (a memory map, a SciPy matrix's arrays) without a copy. ``names`` holds
one barcode, file name or cell id per cell. The buffers live in one ``_core.Ragged``, and
``take``, ``concat``, ``truncate`` and ``to_padded`` run in Rust on it.

The same two arrays are a CSR matrix of cells x vocabulary (``indptr = offsets``,
``indices = ids``): see :meth:`TokenizedCells.to_csr` and :meth:`TokenizedCells.from_csr`.

Counts and QC
-------------
``counts`` (uint32, aligned with ``ids``, or None) is the CSR matrix's ``data``: for a
fragment file tokenized with unique ids, entry ``j`` is the number of the cell's fragments
that overlap region ``ids[j]`` (0 for the ``[unk]`` placeholder of a listed barcode with
no tokens). ``qc`` holds one value per cell: ``n_fragments`` (int64, the cell's fragment
lines or input intervals), ``n_fragments_in_universe`` (int64, those overlapping at least
one universe region), ``frac_in_universe`` (float64; 0 for a cell with no fragments) and
``n_tokens`` (int64, the universe ids the tokenization gave the cell; for cells built from
arrays, their lengths). ``n_tokens`` is always there, the other three whenever the
tokenization knew them. ``coverage`` (:class:`atacformer.Coverage` or None) describes the
whole input of the tokenization. Slicing, :meth:`~TokenizedCells.take`,
:meth:`~TokenizedCells.filter`, :meth:`~TokenizedCells.concat` and pickling carry both;
:meth:`~TokenizedCells.truncate` cuts the counts with their ids and keeps ``qc`` as the
tokenization measured it. ``concat`` keeps counts only when every part has them, and the
QC keys every part has.

Files
-----
``save``/``load`` use the single-file ``.atok`` format, little-endian, 8-byte aligned::

    b"ATOK" | u32 version (1) | u64 n_cells | u64 n_ids | i64 pad_token_id (-1: none)
    | u64 names_bytes | i64 offsets[n_cells + 1] | i32 ids[n_ids] | pad to 8
    | names as UTF-8, one per line

The format holds ids, offsets and names only (it is unchanged, so older files load):
``save`` drops ``counts`` and ``qc``, and a loaded file has ``counts=None`` and ``qc`` with
``n_tokens`` only; a CSR matrix (:meth:`TokenizedCells.to_csr`, an atlas ``.h5ad``) keeps
the counts. ``load`` reads the file into memory; ``load(path, mmap=True)`` memory-maps the
offsets and ids instead, so opening a file of any size is instant (see
:meth:`TokenizedCells.load` for its hazard). ``save``, ``to_gtok`` and ``write_gtok`` write through
:func:`atacformer._atomic.atomic_path`: a reader sees the old file or the new one, never a
torn one. ``to_gtok`` refuses cell names that are not plain file names.
``read_gtok``/``write_gtok`` handle the peer's one-cell ``.gtok`` files: ``b"GTOK"``, a flag
byte (``0x01``: u16 ids, ``0x02``: u32 ids), then the little-endian ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from ._atomic import atomic_path
from ._core import DEFAULT_SEED
from ._encoding import BatchEncoding
from .coverage import Coverage
from .exceptions import (
    AtacformerIndexError,
    AtacformerTypeError,
    InvalidInputError,
    MissingFileError,
    ParseError,
)

QC_KEYS = ("n_fragments", "n_fragments_in_universe", "frac_in_universe", "n_tokens")
"""The per-cell QC names, as the atlas's ``obs`` columns use them."""

_MAGIC = b"ATOK"
_VERSION = 1
_HEADER = np.dtype(
    [
        ("magic", "S4"),
        ("version", "<u4"),
        ("n_cells", "<u8"),
        ("n_ids", "<u8"),
        ("pad", "<i8"),
        ("names_bytes", "<u8"),
    ]
)


class TokenizedCells:
    """Ragged token ids of many cells (see the module docstring for the layout)."""

    #: The universe identifier of cells read by :meth:`from_anndata` (None when unknown).
    universe_id: str | None = None

    def __init__(
        self,
        ids: Any,
        offsets: Any,
        names: Sequence[str] | None = None,
        pad_token_id: int | None = None,
        *,
        counts: Any = None,
        qc: Mapping[str, Any] | None = None,
        coverage: Coverage | None = None,
    ) -> None:
        try:
            ids = np.asanyarray(ids)  # keeps a memory map a memory map
            offsets = np.asanyarray(offsets)
        except (ValueError, TypeError) as e:  # nested lists of uneven length
            raise InvalidInputError(f"ids and offsets must be flat arrays ({e})") from e
        if ids.ndim != 1 or offsets.ndim != 1 or len(offsets) == 0:
            raise InvalidInputError("ids and offsets must be 1-D, offsets non-empty")
        ids = _as_int_array(ids, np.int32, "ids")
        offsets = _as_int_array(offsets, np.int64, "offsets")
        if counts is not None:
            counts = _as_int_array(_flat_ids(counts, "counts"), np.uint32, "counts")
        # Checks the offsets, and the counts against the ids.
        self._init(_core.Ragged(ids, offsets, counts), names, pad_token_id, qc, coverage)

    def _init(
        self,
        ragged: _core.Ragged,
        names: Sequence[str] | None,
        pad_token_id: int | None,
        qc: Mapping[str, Any] | None = None,
        coverage: Coverage | None = None,
    ) -> None:
        n = len(ragged)
        names = [str(i) for i in range(n)] if names is None else _items(names, "names")
        if len(names) != n:
            raise InvalidInputError(f"{len(names)} names for {n} cells")
        self._ragged = ragged
        self.names: list[str] = names
        self.pad_token_id = _pad_id(pad_token_id)
        if qc is None:
            qc = ragged.qc
        self._qc: dict[str, np.ndarray] = _checked_qc(qc, n)
        if coverage is None and ragged.coverage is not None:
            coverage = Coverage._from_core(ragged.coverage)
        if coverage is not None and not isinstance(coverage, Coverage):
            raise AtacformerTypeError(
                f"coverage must be an atacformer.Coverage, got {type(coverage).__name__}"
            )
        self.coverage: Coverage | None = coverage
        """How well the tokenization's input covered the universe (None for cells not made
        by a tokenization): it describes the whole input, and stays as it is when cells
        are selected or truncated."""

    @classmethod
    def _wrap(
        cls,
        ragged: _core.Ragged,
        names: Sequence[str] | None = None,
        pad_token_id: int | None = None,
        qc: Mapping[str, Any] | None = None,
        coverage: Coverage | None = None,
    ) -> TokenizedCells:
        """Wraps a ``_core.Ragged`` (already checked) without touching its arrays; ``qc``
        and ``coverage`` default to those the core measured."""
        self = cls.__new__(cls)
        self._init(ragged, names, pad_token_id, qc, coverage)
        return self

    @classmethod
    def from_lists(
        cls,
        cells: Sequence[Any],
        names: Sequence[str] | None = None,
        pad_token_id: int | None = None,
    ) -> TokenizedCells:
        """Builds from a list of id sequences (copies them into one buffer)."""
        arrays = [
            _as_int_array(_flat_ids(c, f"cell {i}"), np.int32, "ids")
            for i, c in enumerate(_items(cells, "cells"))
        ]
        return cls._wrap(_core.Ragged.from_cells(arrays), names, pad_token_id)

    @classmethod
    def concat(
        cls, parts: Sequence[TokenizedCells], pad_token_id: int | None = None
    ) -> TokenizedCells:
        """The cells of ``parts``, one part after another, with their names.

        ``pad_token_id`` defaults to the parts' own; parts with different pad ids (different
        vocabularies) are refused unless it is given.
        """
        parts = _items(parts, "parts")
        bad = next((p for p in parts if not isinstance(p, TokenizedCells)), None)
        if bad is not None:
            raise _core.AtacformerTypeError(
                f"concat takes TokenizedCells, got {type(bad).__name__}"
            )
        if pad_token_id is None:
            pads = {p.pad_token_id for p in parts} - {None}
            if len(pads) > 1:  # cells of different vocabularies
                raise InvalidInputError(
                    f"the parts have different pad ids ({', '.join(map(str, sorted(pads)))}): "
                    "they were tokenized with different vocabularies"
                )
            pad_token_id = pads.pop() if pads else None
        ragged = _core.Ragged.concat([p._ragged for p in parts])
        qcs = [p.qc for p in parts]
        keys = [k for k in QC_KEYS if all(k in q for q in qcs)]
        qc = {k: np.concatenate([q[k] for q in qcs]) for k in keys} if parts else None
        covs = [p.coverage for p in parts]
        coverage = Coverage.merge(covs) if covs and None not in covs else None  # type: ignore[arg-type]
        names = [n for p in parts for n in p.names]
        return cls._wrap(ragged, names, pad_token_id, qc, coverage)

    # ------------------------------------------------------------------ access
    @property
    def ids(self) -> np.ndarray:
        """Every cell's ids, one cell after another, ``[n_ids]`` int32 (a read-only view:
        the buffer may be shared with a memory map, a CSR matrix or other cells)."""
        return _read_only(self._ragged.ids)

    @property
    def offsets(self) -> np.ndarray:
        """Start of each cell in ``ids``, then ``len(ids)``: ``[n_cells + 1]`` int64
        (a read-only view)."""
        return _read_only(self._ragged.offsets)

    @property
    def counts(self) -> np.ndarray | None:
        """One count per id, ``[n_ids]`` uint32 aligned with :attr:`ids` (a read-only view),
        or None. For fragment files with unique ids: how many of the cell's fragments
        overlap that region."""
        counts = self._ragged.counts
        return None if counts is None else _read_only(counts)

    @property
    def qc(self) -> dict[str, np.ndarray]:
        """Per-cell QC, one value per cell (a new dict of read-only arrays): ``n_tokens``
        always; ``n_fragments``, ``n_fragments_in_universe`` and ``frac_in_universe``
        whenever the tokenization knew them (see the module docstring)."""
        out = {k: _read_only(v) for k, v in self._qc.items()}
        if "n_tokens" not in out:
            out["n_tokens"] = _read_only(self.lengths)
        return {k: out[k] for k in QC_KEYS if k in out}

    def __len__(self) -> int:
        return len(self._ragged)

    @property
    def lengths(self) -> np.ndarray:
        """Number of ids per cell, ``[n_cells]`` int64."""
        return np.diff(self.offsets)

    def __getitem__(self, key: Any) -> Any:
        """``cells[i]`` is a view of cell i's ids; a slice, mask or index array selects a
        new TokenizedCells (see :meth:`take`)."""
        if isinstance(key, (int, np.integer)):
            n = len(self)
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise AtacformerIndexError(f"cell index {key} out of range for {n} cells")
            return self.ids[self.offsets[i] : self.offsets[i + 1]]
        if isinstance(key, slice):
            try:
                start, stop, step = key.indices(len(self))
            except TypeError as e:
                raise AtacformerTypeError(
                    f"slice indices must be integers or None, got {key!r}"
                ) from e
            except ValueError as e:  # a step of zero
                raise InvalidInputError(f"slice step cannot be zero: {key!r}") from e
            key = np.arange(start, stop, step)
        try:
            index = np.asarray(key)
        except (ValueError, TypeError) as e:
            raise AtacformerIndexError(f"cell indices must be a flat sequence ({e})") from e
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise AtacformerIndexError(
                    f"boolean mask of shape {index.shape} for {len(self)} cells"
                )
            index = np.flatnonzero(index)
        return self.take(index)

    def take(self, indices: Any) -> TokenizedCells:
        """The cells at ``indices`` (integers; negative count from the end), in that order,
        with their names."""
        try:
            index = np.asarray(indices)
        except (ValueError, TypeError) as e:  # nested lists of uneven length
            raise AtacformerIndexError(f"cell indices must be a flat sequence ({e})") from e
        if index.size and not np.issubdtype(index.dtype, np.integer):
            raise AtacformerIndexError(
                f"cells can be selected by integers, slices or a boolean mask, not {index.dtype}"
            )
        if index.ndim > 1:
            raise AtacformerIndexError(f"cell indices must be 1-D, got shape {index.shape}")
        index = index.astype(np.int64, copy=False).reshape(-1)
        n = len(self)
        if index.size and (index.max() >= n or index.min() < -n):
            raise AtacformerIndexError(f"cell index out of range for {n} cells")
        ragged = self._ragged.take(np.ascontiguousarray(index))
        names = [self.names[i] for i in index.tolist()]
        qc = {k: v[index] for k, v in self._qc.items()}
        return TokenizedCells._wrap(ragged, names, self.pad_token_id, qc, self.coverage)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.ids[self.offsets[i] : self.offsets[i + 1]]

    def __repr__(self) -> str:
        lengths = self.lengths
        mean = float(lengths.mean()) if len(lengths) else 0.0
        return f"TokenizedCells({len(self)} cells, {len(self.ids)} ids, mean length {mean:.1f})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TokenizedCells)
            and np.array_equal(self.offsets, other.offsets)
            and np.array_equal(self.ids, other.ids)
            and self.names == other.names
        )

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------- filtering, padding
    def filter(
        self, min_tokens: int | None = None, max_tokens: int | None = None
    ) -> TokenizedCells:
        """Cells with ``min_tokens <= length <= max_tokens`` (either bound optional)."""
        min_tokens = _length_arg(min_tokens, "min_tokens")
        max_tokens = _length_arg(max_tokens, "max_tokens")
        keep = np.ones(len(self), dtype=bool)
        if min_tokens is not None:
            keep &= self.lengths >= min_tokens
        if max_tokens is not None:
            keep &= self.lengths <= max_tokens
        return self[keep]

    def truncate(
        self, max_length: int, truncation_strategy: str = "random", seed: int = DEFAULT_SEED
    ) -> TokenizedCells:
        """Every cell cut to at most ``max_length`` ids (seeded subset or first ids); the
        counts are cut with their ids, and ``qc`` stays as the tokenization measured it
        (``n_tokens`` included)."""
        ragged = self._ragged.truncate(max_length, truncation_strategy, seed)
        qc = self.qc  # n_tokens of the cells before the cut
        return TokenizedCells._wrap(ragged, self.names, self.pad_token_id, qc, self.coverage)

    def to_padded(
        self,
        max_length: int | None = None,
        truncation_strategy: str = "random",
        seed: int = DEFAULT_SEED,
        return_tensors: str | None = None,
        pad_token_id: int | None = None,
        pad_to_max_length: bool = False,
    ) -> BatchEncoding:
        """``input_ids`` and ``attention_mask``, ``[n_cells, width]`` int64.

        ``width`` is the longest cell, capped at ``max_length`` (or exactly ``max_length``
        with ``pad_to_max_length``). Longer cells are truncated deterministically.
        """
        pad = self.pad_token_id if pad_token_id is None else _pad_id(pad_token_id)
        if pad is None:
            raise InvalidInputError("to_padded needs pad_token_id (none is stored)")
        max_length = _length_arg(max_length, "max_length")
        longest = int(self.lengths.max()) if len(self) else 0
        if max_length is None:
            width = longest
        else:
            width = max_length if pad_to_max_length else min(longest, max_length)
        input_ids, mask = self._ragged.pad(width, pad, truncation_strategy, seed)
        enc = BatchEncoding(input_ids=input_ids, attention_mask=mask)
        return enc.convert_to_tensors(return_tensors)

    # -------------------------------------------------------------- CSR matrices
    def to_csr(self, n_vars: int | None = None) -> Any:
        """The cells as a ``scipy.sparse.csr_matrix`` of shape ``(n_cells, n_vars)``.

        ``indices`` is :attr:`ids` itself (no copy), ``indptr`` holds :attr:`offsets` (SciPy
        stores it as int32 when the counts fit, a copy of ``n_cells + 1`` values) and
        ``data`` is :attr:`counts` itself (uint32, no copy) when the cells have counts, else
        float32 ones, one per id, so a cell holding an id twice sums to 2.
        Both arrays the matrix shares are read-only, so SciPy's in-place methods
        (``sort_indices``, ``sum_duplicates``) refuse to run instead of changing the cells:
        call ``.copy()`` first to edit the matrix. ``n_vars`` is the number of columns: pass
        ``tokenizer.vocab_size`` for a matrix over the whole vocabulary; by default it is the
        largest id plus one. With more than 2^31 - 1 ids SciPy needs int64 indices and
        copies them.
        """
        import scipy.sparse as sp

        ids = self.ids
        top = int(ids.max()) + 1 if len(ids) else 0
        if n_vars is None:
            n_vars = top
        if isinstance(n_vars, bool) or not isinstance(n_vars, (int, np.integer)):
            raise _core.AtacformerTypeError(
                f"n_vars must be an integer, got {type(n_vars).__name__}"
            )
        if not 0 <= n_vars <= np.iinfo(np.int64).max:
            raise InvalidInputError(f"n_vars must be in 0..2^63-1, got {n_vars}")
        if len(ids) and int(ids.min()) < 0:
            raise InvalidInputError(f"ids must not be negative, got {int(ids.min())}")
        if top > n_vars:
            raise InvalidInputError(f"id {top - 1} does not fit in n_vars={n_vars} columns")
        counts = self.counts
        data = np.ones(len(ids), dtype=np.float32) if counts is None else counts
        return sp.csr_matrix((data, ids, self.offsets), shape=(len(self), int(n_vars)), copy=False)

    @classmethod
    def from_csr(
        cls, matrix: Any, names: Sequence[str] | None = None, pad_token_id: int | None = None
    ) -> TokenizedCells:
        """One cell per row of a SciPy sparse matrix (cells x vocabulary): a row's ids are
        the column indices of its stored entries, in stored order. The stored values become
        :attr:`counts` when they are whole numbers in 0..2^32-1 (a peak-count matrix,
        :meth:`to_csr`'s own output), shared when already uint32; other values (a float
        matrix of scores) give ``counts=None``. Shares ``indices`` when it is int32
        (SciPy's usual dtype) and ``indptr`` when it is int64; anything else is converted.
        Another format is converted to CSR.
        The cells then see the matrix's buffers: do not modify the matrix afterwards (pass
        ``matrix.copy()`` to keep the two apart).
        """
        import scipy.sparse as sp

        if not sp.issparse(matrix):
            raise _core.AtacformerTypeError(
                f"from_csr takes a SciPy sparse matrix, got {type(matrix).__name__}"
            )
        csr = matrix if matrix.format == "csr" else matrix.tocsr()
        ids = _as_int_array(np.asarray(csr.indices), np.int32, "indices")
        offsets = _as_int_array(np.asarray(csr.indptr), np.int64, "indptr")
        return cls(ids, offsets, names, pad_token_id, counts=_counts_of(np.asarray(csr.data)))

    # ------------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the ``.atok`` format. The file is written under a unique temporary name
        beside ``path`` and renamed over it once complete, so a reader (or a concurrent
        writer) never sees a torn file, and a failed write leaves the old file."""
        path = _path_arg(path, "path")
        names = _names_bytes(self.names)
        header = np.zeros((), dtype=_HEADER)
        header["magic"], header["version"] = _MAGIC, _VERSION
        header["n_cells"], header["n_ids"] = len(self), len(self.ids)
        header["pad"] = -1 if self.pad_token_id is None else self.pad_token_id
        header["names_bytes"] = len(names)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(header.tobytes())
            f.write(np.ascontiguousarray(self.offsets, dtype="<i8").tobytes())
            f.write(np.ascontiguousarray(self.ids, dtype="<i4").tobytes())
            f.write(b"\0" * (-4 * len(self.ids) % 8))
            f.write(names)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> TokenizedCells:
        """Opens an ``.atok`` file, reading it into memory.

        ``mmap=True`` memory-maps the offsets and ids instead, which opens a file of any
        size at once and reads only the cells used. Its hazard: the cells then read the
        file itself, so if the file is rewritten in place while they are in use (``cp``
        over it, or another program truncating it; :meth:`save` replaces files by rename
        and is safe), their ids change under them, and reading past a truncated end kills
        the process with SIGBUS. Use it only for files nothing rewrites.
        """
        path = _path_arg(path, "path")
        if not isinstance(mmap, (bool, np.bool_)):
            raise AtacformerTypeError(f"mmap must be True or False, got {type(mmap).__name__}")
        _check_regular_file(path)
        try:
            with open(path, "rb") as f:
                return cls._read(path, f, bool(mmap))
        except OSError as e:
            if isinstance(e, MissingFileError):
                raise
            raise _core.AtacformerIOError(
                e.errno, f"could not read {path}: {e.strerror or e}", str(path)
            ) from e

    @classmethod
    def _read(cls, path: Path, f: Any, mmap: bool) -> TokenizedCells:
        """Parses an open ``.atok`` file; every size is checked against the file's."""
        size = os.fstat(f.fileno()).st_size
        raw = f.read(_HEADER.itemsize)
        if len(raw) < _HEADER.itemsize:
            raise ParseError(f"{path}: too short to be an .atok file", str(path), 0)
        header = np.frombuffer(raw, dtype=_HEADER, count=1)[0]
        if header["magic"] != _MAGIC or header["version"] != _VERSION:
            raise ParseError(f"{path}: not an .atok file (bad magic or version)", str(path), 0)
        n, n_ids, names_bytes = (int(header[k]) for k in ("n_cells", "n_ids", "names_bytes"))
        at = _HEADER.itemsize
        ids_at = at + 8 * (n + 1)
        names_at = ids_at + 4 * n_ids + (-4 * n_ids % 8)
        if names_at + names_bytes != size:
            raise ParseError(f"{path}: truncated or corrupt .atok file", str(path), 0)
        if mmap:
            offsets = np.memmap(path, dtype="<i8", mode="r", offset=at, shape=(n + 1,))
            ids = (
                np.memmap(path, dtype="<i4", mode="r", offset=ids_at, shape=(n_ids,))
                if n_ids
                else np.zeros(0, dtype=np.int32)
            )
        else:
            offsets = np.fromfile(f, dtype="<i8", count=n + 1)
            f.seek(ids_at)
            ids = np.fromfile(f, dtype="<i4", count=n_ids)
            if len(offsets) != n + 1 or len(ids) != n_ids:  # the file shrank meanwhile
                raise ParseError(f"{path}: truncated .atok file", str(path), 0)
        f.seek(names_at)
        data = f.read(names_bytes)
        if len(data) != names_bytes:
            raise ParseError(f"{path}: truncated .atok file", str(path), 0)
        try:
            text = data.decode()
        except UnicodeDecodeError as e:
            raise ParseError(f"{path}: cell names are not UTF-8 ({e.reason})", str(path), 0) from e
        names = text.split("\n") if n else []
        pad = int(header["pad"])
        try:
            return cls(ids, offsets, names, None if pad < 0 else pad)
        except InvalidInputError as e:  # offsets checked in Rust, as for any input
            raise ParseError(f"{path}: corrupt .atok file: {e}", str(path), 0) from e

    @classmethod
    def from_gtok(cls, paths: Sequence[str | os.PathLike[str]]) -> TokenizedCells:
        """One cell per ``.gtok`` file, named by the file's stem."""
        paths = [_path_arg(p, "paths") for p in _items(paths, "paths")]
        return cls.from_lists([read_gtok(p) for p in paths], names=[p.stem for p in paths])

    def to_gtok(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Writes ``{name}.gtok`` per cell into ``directory``; returns the paths.

        Cell names often come from input files (barcodes), so each must be a plain file
        name: not empty, not ``.`` or ``..``, without ``/``, ``\\``, NUL or other control
        characters, and valid Unicode. Two cells may not share a name. A name that breaks
        these rules is an :class:`~atacformer.InvalidInputError` before anything is
        written, so nothing lands outside ``directory``. Each file is written atomically.
        """
        out = _path_arg(directory, "directory")
        targets = [out / f"{_plain_file_name(name)}.gtok" for name in self.names]
        seen: dict[str, int] = {}
        for i, name in enumerate(self.names):
            if name in seen:
                raise InvalidInputError(
                    f"cells {seen[name]} and {i} are both named {name!r}: their .gtok files "
                    "would overwrite each other"
                )
            seen[name] = i
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _core.AtacformerIOError(
                e.errno, f"cannot create {out}: {e.strerror or e}", str(out)
            ) from e
        for p, ids in zip(targets, self, strict=True):
            write_gtok(p, ids)
        return targets

    def __reduce__(self) -> tuple[Any, ...]:
        counts = self.counts
        return (
            _rebuild,
            (
                np.asarray(self.ids),
                np.asarray(self.offsets),
                self.names,
                self.pad_token_id,
                None if counts is None else np.asarray(counts),
                {k: np.asarray(v) for k, v in self._qc.items()},
                self.coverage,
            ),
        )

    # ------------------------------------------------------------------ AnnData (atlases)
    @classmethod
    def from_anndata(cls, adata: Any, tokenizer: Any = None) -> TokenizedCells:
        """The cells of a tokenized atlas (see :mod:`atacformer.atlas`): one per row of
        ``X`` (CSR, cells x universe), named by ``obs_names``; the ids are ``X.indices``
        itself, not a copy, ``X.data`` gives :attr:`counts` and the ``obs`` QC columns
        give :attr:`qc`. ``pad_token_id`` comes
        from the universe size (``n_vars``). A backed AnnData (``read_h5ad(path,
        backed="r")``) reads ``X`` whole: pass a row block, ``adata[start:stop]``, to read
        only those rows. For a cells x peaks AnnData of another universe use
        :meth:`Tokenizer.tokenize_anndata` instead.

        The universe is ``uns["atacformer"]["universe_id"]``; an AnnData without one is
        refused unless ``tokenizer`` (the :class:`~atacformer.Tokenizer` of its columns) is
        given. With ``tokenizer``, ``n_vars`` must be its number of universe regions and a
        recorded ``universe_id`` must be its own. The cells keep the identifier as
        ``universe_id`` (:meth:`to_anndata` refuses a tokenizer of another universe).
        """
        from .atlas import atlas_matrix, n_universe
        from .tokenizers import Tokenizer

        record = getattr(adata, "uns", {}).get("atacformer", {})
        recorded = record.get("universe_id") if isinstance(record, Mapping) else None
        recorded = None if recorded is None else str(recorded)
        if tokenizer is None and recorded is None:
            raise InvalidInputError(
                "the AnnData has no uns['atacformer']['universe_id'], so nothing says which "
                "universe its columns are: pass tokenizer= (the Tokenizer of its columns), or "
                "use Tokenizer.tokenize_anndata for a cells x peaks AnnData"
            )
        if tokenizer is not None:
            if not isinstance(tokenizer, Tokenizer):
                raise AtacformerTypeError(
                    f"tokenizer must be a Tokenizer, got {type(tokenizer).__name__}"
                )
            if int(adata.n_vars) != n_universe(tokenizer):
                raise InvalidInputError(
                    f"the AnnData has {adata.n_vars} columns and the tokenizer's universe "
                    f"{n_universe(tokenizer)} regions: they are not the same universe"
                )
            if recorded is not None and recorded != tokenizer.universe_id:
                raise InvalidInputError(
                    f"the AnnData's universe is {recorded} and the tokenizer's is "
                    f"{tokenizer.universe_id}: they are not the same universe"
                )
        matrix = atlas_matrix(adata)
        pad = int(adata.n_vars) + _core.SPECIAL_TOKEN_NAMES.index("pad")
        cells = cls.from_csr(matrix, names=[str(n) for n in adata.obs_names], pad_token_id=pad)
        qc = {k: adata.obs[k].to_numpy() for k in QC_KEYS if k in adata.obs.columns}
        if qc:
            cells = cls._wrap(cells._ragged, cells.names, pad, qc)
        cells.universe_id = recorded if recorded is not None else tokenizer.universe_id
        return cells

    def to_anndata(self, tokenizer: Any) -> Any:
        """The cells as a tokenized atlas AnnData (the layout of :mod:`atacformer.atlas`):
        ``X`` CSR cells x universe whose ``indices`` are :attr:`ids` (shared, not copied)
        and whose ``data`` are the per-id counts (ones when there are none), ``var`` the
        universe, ``obs`` the cell names (with ``sample`` and ``barcode`` columns when every
        name is ``{sample}#{barcode}``) and ``uns["atacformer"]`` the tokenizer. Special
        token ids (the ``[unk]`` of an empty cell) are not universe regions and are left out
        of ``X``; the ids are copied only then. Cells from :meth:`from_anndata` know their
        universe, and a tokenizer of another one is refused.
        """
        from .atlas import cells_to_anndata

        known = getattr(self, "universe_id", None)
        theirs = getattr(tokenizer, "universe_id", None)
        if known is not None and theirs is not None and known != theirs:
            raise InvalidInputError(
                f"the cells are of universe {known} and the tokenizer's is {theirs}: "
                "to_anndata needs the tokenizer the cells came from"
            )
        return cells_to_anndata(self, tokenizer)


def _rebuild(
    ids: np.ndarray,
    offsets: np.ndarray,
    names: list[str],
    pad_token_id: int | None,
    counts: np.ndarray | None = None,
    qc: dict[str, np.ndarray] | None = None,
    coverage: Coverage | None = None,
) -> TokenizedCells:
    """Unpickles :class:`TokenizedCells` (see ``__reduce__``)."""
    return TokenizedCells(
        ids, offsets, names, pad_token_id, counts=counts, qc=qc, coverage=coverage
    )


def _checked_qc(qc: Mapping[str, Any] | None, n: int) -> dict[str, np.ndarray]:
    """Per-cell QC arrays, each of ``n`` values in its dtype; ``frac_in_universe`` is
    derived when both fragment counts are there (0 for a cell with no fragments)."""
    if qc is None:
        return {}
    if not isinstance(qc, Mapping):
        raise AtacformerTypeError(f"qc must be a mapping of arrays, got {type(qc).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, values in qc.items():
        if key not in QC_KEYS:
            raise InvalidInputError(f"unknown qc key {key!r}; the keys are {', '.join(QC_KEYS)}")
        arr = np.asarray(values).reshape(-1)
        if len(arr) != n:
            raise InvalidInputError(f"qc[{key!r}] has {len(arr)} values for {n} cells")
        if key == "frac_in_universe":
            out[key] = np.ascontiguousarray(arr, dtype=np.float64)
        else:
            out[key] = _as_int_array(arr, np.int64, f"qc[{key!r}]")
    if "n_fragments" in out and "n_fragments_in_universe" in out:
        total = out["n_fragments"]
        hit = out["n_fragments_in_universe"]
        frac = np.zeros(n, dtype=np.float64)
        np.divide(hit, total, out=frac, where=total > 0)
        out["frac_in_universe"] = frac
    return out


def _counts_of(data: np.ndarray) -> np.ndarray | None:
    """A CSR matrix's values as uint32 counts, or None when they are not whole numbers
    that fit."""
    if data.dtype == np.uint32:
        return data
    if data.dtype == bool:
        return data.astype(np.uint32)
    if not data.size:
        return np.zeros(0, dtype=np.uint32)
    if np.issubdtype(data.dtype, np.integer):
        if int(data.min()) < 0 or int(data.max()) > np.iinfo(np.uint32).max:
            return None
        return data.astype(np.uint32)
    if np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all() or float(data.min()) < 0:
            return None
        if float(data.max()) > np.iinfo(np.uint32).max or (data != np.floor(data)).any():
            return None
        return data.astype(np.uint32)
    return None


def _read_only(values: np.ndarray) -> np.ndarray:
    """A view of ``values`` that cannot be written through."""
    view = values.view()
    view.flags.writeable = False
    return view


def _as_int_array(values: np.ndarray, dtype: type, what: str) -> np.ndarray:
    """``values`` as a contiguous array of ``dtype``; an error instead of a silent wrap
    for values of another kind or out of range."""
    if values.dtype == dtype:
        return values if values.flags.c_contiguous else np.ascontiguousarray(values)
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise InvalidInputError(f"{what} must be integers, got {values.dtype}")
    info = np.iinfo(dtype)
    if values.size and (int(values.min()) < info.min or int(values.max()) > info.max):
        raise InvalidInputError(f"{what} must fit in {np.dtype(dtype).name}")
    return np.ascontiguousarray(values, dtype=dtype)


def read_gtok(path: str | os.PathLike[str]) -> np.ndarray:
    """Ids of a peer ``.gtok`` file as int32."""
    path = _path_arg(path, "path")
    _check_regular_file(path)
    data = path.read_bytes()
    if len(data) < 5 or data[:4] != b"GTOK":
        raise ParseError(f"{path}: not a .gtok file (missing GTOK magic)")
    flag, body = data[4], data[5:]
    dtype = {1: "<u2", 2: "<u4"}.get(flag)
    if dtype is None:
        raise ParseError(f"{path}: unknown .gtok flag byte {flag:#04x}")
    width = np.dtype(dtype).itemsize
    if len(body) % width:
        raise ParseError(f"{path}: truncated .gtok file")
    ids = np.frombuffer(body, dtype=dtype)
    if ids.size and int(ids.max()) > np.iinfo(np.int32).max:
        raise ParseError(f"{path}: id above 2^31-1")
    return ids.astype(np.int32)


def write_gtok(path: str | os.PathLike[str], ids: Any) -> None:
    """Writes ids as a ``.gtok`` file: u16 when every id fits, else u32. The file is
    replaced atomically (see :meth:`TokenizedCells.save`)."""
    ids = _flat_ids(ids, "ids")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise InvalidInputError(f".gtok ids must be integers, got {ids.dtype}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= 2**32):
        raise InvalidInputError(".gtok ids must be in 0..2^32-1")
    small = not ids.size or int(ids.max()) < 2**16
    body = ids.astype("<u2" if small else "<u4").tobytes()
    with atomic_path(_path_arg(path, "path")) as tmp:
        tmp.write_bytes(b"GTOK" + bytes([1 if small else 2]) + body)


def _items(values: Any, what: str) -> list[Any]:
    """The items of an iterable as a list, read one by one: never sized from the object's
    own ``__len__``, which may claim more items than memory can hold."""
    if type(values) in (list, tuple):  # exactly: their length is the true one
        return list(values)
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise AtacformerTypeError(f"{what} must be a sequence, got {type(values).__name__}")
    return [v for v in values]  # not list(values), which would trust __len__


def _path_arg(path: Any, what: str) -> Path:
    """A ``str`` or ``os.PathLike`` argument as a Path; anything else is a type error."""
    if not isinstance(path, (str, os.PathLike)):
        raise AtacformerTypeError(
            f"{what} must be a path (str or os.PathLike), got {type(path).__name__}"
        )
    try:
        return Path(path)
    except TypeError as e:  # an os.PathLike whose __fspath__ gives bytes
        raise AtacformerTypeError(f"{what} is not a usable path: {e}") from e


def _check_regular_file(path: Path) -> None:
    """A missing path is a :class:`MissingFileError`; a folder, device or pipe (which
    could hold no such file, or never end) is an :class:`InvalidInputError`."""
    if path.is_file():
        return
    if not path.exists():
        raise MissingFileError(2, "No such file or directory", str(path))
    kind = "a folder" if path.is_dir() else "not a regular file"
    raise InvalidInputError(f"{path} is {kind}; give the path of a file")


def _length_arg(value: Any, what: str) -> int | None:
    """``None`` or a non-negative integer (Python's or NumPy's), checked."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise AtacformerTypeError(f"{what} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise InvalidInputError(f"{what} must be 0 or more, got {value}")
    return int(value)


def _pad_id(value: Any) -> int | None:
    """``None`` or a pad token id that fits in int64."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise AtacformerTypeError(f"pad_token_id must be an integer, got {type(value).__name__}")
    info = np.iinfo(np.int64)
    if not info.min <= value <= info.max:
        raise InvalidInputError(f"pad_token_id must fit in int64, got {value}")
    return int(value)


def _flat_ids(values: Any, what: str) -> np.ndarray:
    """One cell's ids (a sequence or array) as a flat NumPy array."""
    try:
        return np.asarray(values).reshape(-1)
    except (ValueError, TypeError) as e:  # e.g. a nested list of uneven rows
        raise InvalidInputError(f"{what}: not a flat sequence of ids ({e})") from e


def _names_bytes(names: Sequence[Any]) -> bytes:
    """Cell names joined by newlines as UTF-8, each checked to survive the round trip."""
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise AtacformerTypeError(f"cell name {i} is not a string: {type(name).__name__}")
        if "\n" in name:
            raise InvalidInputError("cell names must not contain newlines")
    try:
        return "\n".join(names).encode()
    except UnicodeEncodeError as e:
        bad = next(i for i, n in enumerate(names) if _not_unicode(n))
        raise InvalidInputError(
            f"cell name {bad} ({names[bad]!r}) is not valid Unicode (a lone surrogate)"
        ) from e


def _not_unicode(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:
        return True
    return False


def _plain_file_name(name: Any) -> str:
    """``name`` when it is a plain file name (one path component, printable, valid
    Unicode); an :class:`InvalidInputError` otherwise."""
    if not isinstance(name, str):
        raise AtacformerTypeError(f"cell names must be strings, got {type(name).__name__}")
    why = None
    if name in ("", ".", ".."):
        why = "is not a file name"
    elif "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        why = "contains a path separator"
    elif _not_unicode(name):
        why = "is not valid Unicode (a lone surrogate)"
    elif any(not c.isprintable() for c in name):
        why = "contains a control or other unprintable character"
    if why is not None:
        raise InvalidInputError(
            f"cell name {name!r} {why}: to_gtok writes one file per cell name and accepts "
            "only plain file names"
        )
    return name
