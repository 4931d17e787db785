"""Tokenized atlases: many samples' fragment files in one cells x universe AnnData on disk.

A *manifest* lists the samples: a ``.tsv`` (or ``.csv``) file with a header and the columns
``sample`` and ``fragments``, and optionally ``barcodes`` (a per-sample barcode list); paths
are relative to the manifest. Other columns are kept: they become ``obs`` columns (one value
per sample). :func:`read_manifest` reads and checks one (a path or a pandas DataFrame)
before any work starts; :func:`manifest_from_paths` makes one from fragment files.

:func:`write_atlas` tokenizes every sample and writes one AnnData, ``.h5ad`` or ``.zarr``, in
anndata's own encoding (so anndata, scanpy, SnapATAC2 and muon open it):

- ``X``: CSR, cells x universe regions (``n_vars = tokenizer.vocab_size - 7``; column ``i``
  is region id ``i``). ``indices`` (int32) are the cell's token ids, ascending; ``indptr`` is
  int64; ``data`` (uint32) is the number of the cell's fragments that overlap the region, so
  ``X`` is also the cells x peaks count matrix.
- ``obs``: one row per cell, named ``{sample}#{barcode}`` (ArchR's convention, so the same
  barcode in two samples is two cells), in manifest order and, within a sample, in
  :meth:`~atacformer.Tokenizer.tokenize_fragments` order. Columns: ``sample`` (categorical),
  ``barcode``, ``n_fragments``, ``n_fragments_in_universe``, ``frac_in_universe``,
  ``n_tokens`` (the row's stored entries), then the manifest's extra columns.
- ``var``: the universe in id order, indexed by token string (``chr1:100-600``), with
  ``chr``, ``start``, ``end`` (0-based, half-open, bp).
- ``uns["atacformer"]``: ``universe_id``, ``vocab_size``, ``special_tokens``, ``version``,
  ``tokenizer`` (:attr:`~atacformer.Tokenizer.name_or_path`) and ``manifest``
  (``sample`` and ``fragments``, plus ``barcodes`` when given).

Special-token ids are not universe regions: a listed barcode with no fragment in the
universe, which :meth:`~atacformer.Tokenizer.tokenize_fragments` gives ``[unk]``, is an empty
row (``n_tokens`` 0).

How it is written
-----------------
Each sample is tokenized on its own and saved as a *part* (``NNNNNN.npy``: its CSR arrays and
QC) under ``OUT.partial/``, beside the output, with ``progress.json`` recording a fingerprint
of the manifest (names, paths, file sizes and times), the tokenizer's ``universe_id`` and the
options. Once every part is there, they are appended in manifest order, row block by row
block (anndata's on-disk sparse ``append``), into a temporary sibling of ``OUT`` that is
renamed to ``OUT`` when complete; then ``OUT.partial/`` is removed. So:

- memory is bounded by one sample (plus ``obs``, about 100 bytes per cell), not by the atlas;
- an interrupted run leaves nothing under ``OUT``; the same call again resumes, skipping the
  samples whose parts are done (it says which), and a changed manifest, tokenizer or option
  starts over (it says so);
- under ``torchrun`` (``WORLD_SIZE`` > 1 and torch importable) the samples are spread over
  the ranks, balanced by file size; each rank writes its parts (``OUT.partial/`` must be on a
  file system every rank sees) and rank 0 joins them without tokenizing again.

Read an atlas back with ``anndata.read_h5ad(path, backed="r")`` (row blocks
``adata[a:b]`` without loading ``X``) and :meth:`atacformer.TokenizedCells.from_anndata`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import glob
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from ._atomic import atomic_path, refuse_overwriting_inputs
from ._deps import require
from .exceptions import (
    AtacformerIOError,
    AtacformerTypeError,
    InvalidInputError,
    MissingDependencyError,
    MissingFileError,
)
from .tokenized_cells import QC_KEYS
from .tokenizers import SPECIAL_TOKEN_NAMES, Tokenizer

__all__ = [
    "ATLAS_SUFFIXES",
    "QC_COLUMNS",
    "Manifest",
    "Sample",
    "atlas_matrix",
    "atlas_size",
    "atlas_uns",
    "cells_to_anndata",
    "csr_arrays",
    "looks_like_manifest",
    "manifest_from_paths",
    "n_universe",
    "read_manifest",
    "tokenize_manifest",
    "universe_var",
    "write_anndata",
    "write_atlas",
]

PathLike = str | os.PathLike[str]

ATLAS_SUFFIXES = (".h5ad", ".zarr")
"""The output formats of :func:`write_atlas`."""

QC_COLUMNS = QC_KEYS
"""Per-cell QC columns of an atlas's ``obs``, in order (the names of ``TokenizedCells.qc``)."""

REQUIRED_COLUMNS = ("sample", "fragments")
OPTIONAL_COLUMNS = ("barcodes",)
_RESERVED = ("barcode", *QC_COLUMNS)  # obs columns an extra manifest column may not take
_PART_FORMAT = 2  # bumped when the part layout changes, so old parts are not reused
_CHUNK = 1 << 20  # on-disk chunk of X's arrays, in entries (4-8 MB)
_MAX_LISTED_PROBLEMS = 20


# ------------------------------------------------------------------------------ manifests


@dataclass(frozen=True)
class Sample:
    """One manifest row: a sample name, its fragment file and optional barcode list (a
    file, or the barcodes themselves).

    ``line`` is the row's line in the manifest file (the header is line 1), or its position
    in a DataFrame or argument list (from 1); ``extra`` holds the manifest's other columns.
    """

    name: str
    fragments: Path
    barcodes: Path | tuple[str, ...] | None = None
    line: int = 0
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """Checked samples, in order; ``origin`` says where they came from (for messages)."""

    samples: tuple[Sample, ...]
    origin: str
    unit: str = "line"  # "line" for a file, "row" for a DataFrame, "file" for paths

    def where(self, sample: Sample) -> str:
        """``samples.tsv, line 3``: the place to fix a sample."""
        return f"{self.origin}, {self.unit} {sample.line}"

    @property
    def extra_columns(self) -> tuple[str, ...]:
        return tuple(self.samples[0].extra) if self.samples else ()

    def __len__(self) -> int:
        return len(self.samples)


class _Problems:
    """Collects manifest problems so that one error names every bad line."""

    def __init__(self) -> None:
        self.items: list[tuple[type[Exception], str]] = []

    def add(self, kind: type[Exception], message: str) -> None:
        self.items.append((kind, message))

    def raise_any(self) -> None:
        if not self.items:
            return
        kind = self.items[0][0]
        lines = [m for _, m in self.items[:_MAX_LISTED_PROBLEMS]]
        if len(self.items) > _MAX_LISTED_PROBLEMS:
            lines.append(f"... and {len(self.items) - _MAX_LISTED_PROBLEMS} more problems")
        message = lines[0] if len(lines) == 1 else "bad manifest: " + "; ".join(lines)
        if kind is MissingFileError:
            raise MissingFileError(errno.ENOENT, message)
        raise kind(message)


def looks_like_manifest(path: PathLike) -> bool:
    """True for an uncompressed ``.tsv``/``.csv`` file whose first line that is
    neither blank nor a ``#`` comment is not a fragment record (fields 2 and 3 integers):
    a header such as ``sample<TAB>fragments``."""
    p = Path(path)
    if not p.is_file() or not p.name.lower().endswith((".tsv", ".csv")):
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if head[:2] == b"\x1f\x8b":  # gzip: a fragment file named .tsv
        return False
    lines = [raw.strip() for raw in head.split(b"\n")[:-1] or [head]]
    line = next((x for x in lines if x and not x.startswith(b"#")), b"")
    if not line:
        return False
    fields = line.replace(b",", b"\t").split(b"\t")
    numeric = len(fields) >= 3 and fields[1].strip().isdigit() and fields[2].strip().isdigit()
    return not numeric


def read_manifest(manifest: Any, *, base: PathLike | None = None) -> Manifest:
    """Reads and checks a manifest: a path (``.csv`` is comma-separated, anything else
    tab-separated; blank lines and lines starting with ``#`` are skipped) or a pandas
    DataFrame with the same columns (whose relative paths are taken from ``base``, by default
    the current folder).

    Every problem is found before any work starts, and one error names each bad line: a
    missing column (:class:`~atacformer.InvalidInputError`), an empty or duplicate sample
    name, a ``#`` in a sample name (``#`` separates sample and barcode in cell names), a
    missing fragment or barcode file (:class:`~atacformer.MissingFileError`).
    """
    if hasattr(manifest, "columns") and hasattr(manifest, "iloc"):
        header = [str(c) for c in manifest.columns]
        rows = [
            (i + 1, ["" if _is_missing(v) else str(v) for v in row])
            for i, row in enumerate(manifest.itertuples(index=False, name=None))
        ]
        folder = Path(base) if base is not None else Path.cwd()
        return _check_rows("the manifest DataFrame", "row", header, rows, folder, 0)
    if not isinstance(manifest, (str, os.PathLike)):
        raise AtacformerTypeError(
            f"a manifest is a path or a pandas DataFrame, got {type(manifest).__name__}"
        )
    path = Path(manifest).expanduser()
    if not path.is_file():
        if path.is_dir():
            raise InvalidInputError(f"{path}: a manifest is a .tsv or .csv file, not a folder")
        raise MissingFileError(errno.ENOENT, "no such manifest file", str(path))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{path}: not a text manifest ({e.reason})") from e
    except OSError as e:
        raise AtacformerIOError(e.errno, f"cannot read {path}: {e.strerror}", str(path)) from e
    delimiter = "," if path.name.lower().endswith(".csv") else "\t"
    numbered = [
        (n, line)
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not numbered:
        raise InvalidInputError(
            f"{path}: the manifest is empty; it needs a header line with the columns "
            "sample and fragments (and optionally barcodes), then one line per sample"
        )
    parsed = [(n, next(csv.reader([line], delimiter=delimiter), [])) for n, line in numbered]
    header_line, header = parsed[0]
    return _check_rows(str(path), "line", header, parsed[1:], path.parent, header_line)


def manifest_from_paths(
    paths: Sequence[PathLike],
    sample_names: Sequence[str] | None = None,
    *,
    barcodes: Sequence[str] | PathLike | None = None,
) -> Manifest:
    """A manifest of fragment files; samples are named ``sample_names`` or, by default, by
    the file names without their extensions (:func:`atacformer._sources.sample_names`).
    ``barcodes`` (a file or a list) applies to a single fragment file."""
    from ._sources import sample_names as default_names

    files = [Path(p).expanduser() for p in paths]
    if not files:
        raise InvalidInputError("no fragment files given")
    if sample_names is None:
        missing = [p for p in files if not p.exists()]
        if missing:
            raise MissingFileError(errno.ENOENT, "no such file or directory", str(missing[0]))
        names = default_names(files)
    else:
        if isinstance(sample_names, str):
            raise AtacformerTypeError("sample_names is a list of names, not one string")
        names = [str(n) for n in sample_names]
        if len(names) != len(files):
            raise InvalidInputError(
                f"{len(names)} sample names for {len(files)} fragment files; give one each"
            )
    rows = [(i + 1, [n, str(p)]) for i, (n, p) in enumerate(zip(names, files, strict=True))]
    manifest = _check_rows(
        "the fragment files", "file", ["sample", "fragments"], rows, Path.cwd(), 0
    )
    if barcodes is None:
        return manifest
    if len(files) != 1:
        raise InvalidInputError("barcodes applies to one fragment file, not to several")
    if isinstance(barcodes, (str, os.PathLike)):
        listed: Path | tuple[str, ...] = Path(barcodes).expanduser()
        if not Path(listed).is_file():
            raise MissingFileError(errno.ENOENT, "no such barcode list", str(listed))
    else:
        listed = tuple(barcodes)
    only = dataclasses.replace(manifest.samples[0], barcodes=listed)
    return dataclasses.replace(manifest, samples=(only,))


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _check_rows(
    origin: str,
    unit: str,
    header: list[str],
    rows: list[tuple[int, list[str]]],
    folder: Path,
    header_line: int,
) -> Manifest:
    where = f"{origin}, {unit} {header_line}" if header_line else origin
    columns = [c.strip().lower() for c in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InvalidInputError(
            f"{where}: the manifest has no {' or '.join(missing)} column (its columns: "
            f"{', '.join(repr(c) for c in header) or 'none'}); it needs sample and fragments, "
            "and may have barcodes"
        )
    seen_columns: set[str] = set()
    for c in columns:
        if c in seen_columns:
            raise InvalidInputError(f"{where}: the column {c!r} appears twice")
        seen_columns.add(c)
    clash = [c for c in columns if c in _RESERVED]
    if clash:
        raise InvalidInputError(
            f"{where}: the column {clash[0]!r} would overwrite an atlas obs column; rename it"
        )
    extras = [c for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    problems = _Problems()
    first_line: dict[str, int] = {}
    samples = []
    for line, values in rows:
        here = f"{origin}, {unit} {line}"
        if len(values) != len(columns):
            problems.add(
                InvalidInputError,
                f"{here}: {len(values)} fields where the header has {len(columns)}",
            )
            continue
        row = dict(zip(columns, (v.strip() for v in values), strict=True))
        name = row["sample"]
        if not name:
            problems.add(InvalidInputError, f"{here}: the sample name is empty")
        elif "#" in name:
            problems.add(
                InvalidInputError,
                f"{here}: the sample name {name!r} holds '#', which separates sample and "
                "barcode in cell names ({sample}#{barcode}); rename the sample",
            )
        elif name in first_line:
            problems.add(
                InvalidInputError,
                f"{here}: the sample name {name!r} is already used on {unit} "
                f"{first_line[name]}; sample names must be unique",
            )
        else:
            first_line[name] = line
        fragments = _file(row["fragments"], folder, here, "fragment file", problems)
        barcodes = None
        if row.get("barcodes"):
            barcodes = _file(row["barcodes"], folder, here, "barcode list", problems)
        extra = {c: row[c] for c in extras}
        if fragments is not None:
            samples.append(Sample(name, fragments, barcodes, line, extra))
    if not rows:
        problems.add(InvalidInputError, f"{origin}: the manifest lists no samples")
    problems.raise_any()
    return Manifest(tuple(samples), origin, unit)


def _file(value: str, folder: Path, here: str, what: str, problems: _Problems) -> Path | None:
    if not value:
        problems.add(InvalidInputError, f"{here}: the {what} is empty")
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = folder / path
    if not path.is_file():
        kind = InvalidInputError if path.is_dir() else MissingFileError
        problem = "is a folder, not a file" if path.is_dir() else "does not exist"
        problems.add(kind, f"{here}: the {what} {path} {problem}")
        return None
    return path


# ------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class _Part:
    """One sample tokenized: CSR rows over the universe, with per-cell QC."""

    indptr: np.ndarray  # [n_cells + 1] int64
    indices: np.ndarray  # [nnz] int32, ascending per row
    data: np.ndarray  # [nnz] uint32
    barcodes: np.ndarray  # [n_cells] str
    qc: dict[str, np.ndarray]

    def save(self, path: Path) -> None:
        """One ``.npy`` record after another (no zip, no checksum pass: the file is renamed
        into place only once complete)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            for array in (self.indptr, self.indices, self.data, self.barcodes):
                np.save(f, array, allow_pickle=False)
            for key in QC_KEYS:
                np.save(f, self.qc[key], allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> _Part:
        with open(path, "rb") as f:
            indptr, indices, data, barcodes = (np.load(f, allow_pickle=False) for _ in range(4))
            qc = {key: np.load(f, allow_pickle=False) for key in QC_KEYS}
        return cls(indptr, indices, data, barcodes, qc)

    @property
    def n_cells(self) -> int:
        return len(self.indptr) - 1


def csr_arrays(
    cells: Any, n_vars: int, order: _IdOrder | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr int64, indices int32, data uint32)`` of ``cells`` over ``n_vars`` universe
    columns: special-token ids dropped, each row ascending, ``data`` from ``cells.counts``
    (ones when the tokenization did not count; a repeated id adds up). The id buffer is
    shared when nothing has to be dropped or reordered. ``order`` (of the cells' tokenizer)
    makes reordering rows that come in genomic order cheap."""
    ids = np.asarray(cells.ids)
    indptr = np.asarray(cells.offsets, dtype=np.int64)
    counts = cells.counts
    data = np.ones(len(ids), dtype=np.uint32) if counts is None else np.asarray(counts, np.uint32)
    n = len(indptr) - 1
    if len(ids) and int(ids.max()) >= n_vars:
        keep = ids < n_vars
        rows = np.repeat(np.arange(n), np.diff(indptr))
        kept = np.bincount(rows[keep], minlength=n)
        indptr = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        ids, data = ids[keep], data[keep]
    if not _rows_ascending(ids, indptr):
        if order is not None:
            ids, data = order.by_chromosome_blocks(ids, data, indptr)
        if not _rows_ascending(ids, indptr):
            ids, data, indptr = _sorted_rows(ids, data, indptr, n_vars)
    return indptr, ids, data


def _rows_ascending(ids: np.ndarray, indptr: np.ndarray) -> bool:
    """True when every row's ids strictly increase."""
    if len(ids) < 2:
        return True
    up = ids[1:] > ids[:-1]
    inner = indptr[1:-1]
    up[inner[(inner > 0) & (inner < len(ids))] - 1] = True  # across a row boundary
    return bool(up.all())


def _sorted_rows(
    ids: np.ndarray, data: np.ndarray, indptr: np.ndarray, n_vars: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row sorted by id, repeated ids summed (SciPy's ``sum_duplicates``)."""
    import scipy.sparse as sp

    shape = (len(indptr) - 1, n_vars)
    m = sp.csr_matrix((data.copy(), ids.copy(), indptr.copy()), shape=shape)
    m.sum_duplicates()
    return (
        m.indices.astype(np.int32, copy=False),
        m.data.astype(np.uint32, copy=False),
        m.indptr.astype(np.int64),
    )


class _IdOrder:
    """How to turn a row in genomic order (chromosome names sorted as bytes, the order of
    tokenized fragments) into id order: when each chromosome's regions are one block of
    consecutive ids in (start, end) order, as in a sorted universe file, a row is its
    chromosome segments, each already ascending, so reordering the segments is enough."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        chroms = np.asarray(tokenizer.universe.chroms)
        if len(chroms):
            # The first id of each id's chromosome block (blocks checked by the result).
            _, first, inverse = np.unique(chroms, return_index=True, return_inverse=True)
            self.block = first[inverse.reshape(-1)].astype(np.int32)
        else:
            self.block = np.zeros(0, dtype=np.int32)

    def by_chromosome_blocks(
        self, ids: np.ndarray, data: np.ndarray, indptr: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n_ids = len(ids)
        block = self.block[ids]
        cut = np.empty(n_ids, dtype=bool)
        cut[0] = True
        np.not_equal(block[1:], block[:-1], out=cut[1:])
        inner = indptr[1:-1]
        cut[inner[inner < n_ids]] = True  # a row starts a segment
        starts = np.flatnonzero(cut)
        row = np.searchsorted(indptr, starts, side="right") - 1
        key = row * (len(self.block) + 1) + block[starts]
        order = np.argsort(key, kind="stable")
        lengths = np.diff(np.append(starts, n_ids))[order]
        moved_to = np.cumsum(lengths) - lengths
        gather = np.repeat(starts[order] - moved_to, lengths)
        gather += np.arange(n_ids)
        return ids[gather], data[gather]


def _part_of(cells: Any, n_vars: int, order: _IdOrder | None) -> _Part:
    """A sample's cells as a part: CSR arrays and the QC columns (``cells.qc`` when the
    tokenization measured it; ``-1``/NaN for what it did not)."""
    indptr, indices, data = csr_arrays(cells, n_vars, order)
    n = len(cells)
    measured = cells.qc
    qc: dict[str, np.ndarray] = {}
    for key in ("n_fragments", "n_fragments_in_universe"):
        value = measured.get(key)
        qc[key] = np.full(n, -1, dtype=np.int64) if value is None else np.asarray(value, np.int64)
    frac = measured.get("frac_in_universe")
    qc["frac_in_universe"] = (
        np.full(n, np.nan) if frac is None else np.asarray(frac, dtype=np.float64)
    )
    qc["n_tokens"] = np.diff(indptr)  # the row's entries: specials are not regions
    return _Part(indptr, indices, data, np.asarray(cells.names, dtype=str), qc)


def universe_var(tokenizer: Tokenizer) -> Any:
    """``var`` of an atlas: the universe regions in id order, indexed by token string, with
    ``chr`` (categorical), ``start`` and ``end`` (0-based, half-open, bp)."""
    import pandas as pd

    universe = tokenizer.universe
    n = len(universe)
    tokens = tokenizer.convert_ids_to_tokens(np.arange(n, dtype=np.int64)) if n else []
    return pd.DataFrame(
        {
            "chr": pd.Categorical(np.asarray(universe.chroms, dtype=object)),
            "start": np.asarray(universe.starts, dtype=np.int64),
            "end": np.asarray(universe.ends, dtype=np.int64),
        },
        index=pd.Index(tokens, name="token"),
    )


def atlas_uns(tokenizer: Tokenizer, manifest: Manifest | None) -> dict[str, Any]:
    """``uns["atacformer"]`` of an atlas (interface B)."""
    name = tokenizer.name_or_path
    uns: dict[str, Any] = {
        "universe_id": tokenizer.universe_id,
        "vocab_size": int(tokenizer.vocab_size),
        "special_tokens": dict(tokenizer.special_tokens_map),
        "version": _core.__version__,
        "tokenizer": str(name),
    }
    if manifest is not None:
        recorded: dict[str, Any] = {
            "sample": [s.name for s in manifest.samples],
            "fragments": [str(s.fragments) for s in manifest.samples],
        }
        if any(isinstance(s.barcodes, Path) for s in manifest.samples):
            recorded["barcodes"] = [
                str(s.barcodes) if isinstance(s.barcodes, Path) else "" for s in manifest.samples
            ]
        for column in manifest.extra_columns:
            recorded[column] = [s.extra[column] for s in manifest.samples]
        uns["manifest"] = recorded
    return uns


def atlas_matrix(adata: Any) -> Any:
    """``X`` of an AnnData as an in-memory SciPy CSR matrix: read whole from a backed file,
    converted from CSC or dense; an in-memory CSR ``X`` is returned as it is."""
    import scipy.sparse as sp

    if not all(hasattr(adata, a) for a in ("obs_names", "n_vars", "X")):
        raise AtacformerTypeError(f"expected an AnnData, got {type(adata).__name__}")
    matrix = adata.X
    if matrix is None:
        raise InvalidInputError("the AnnData has no X: a tokenized atlas keeps its ids in X")
    if not sp.issparse(matrix) and hasattr(matrix, "to_memory"):  # backed sparse dataset
        matrix = matrix.to_memory()
    if not sp.issparse(matrix):
        matrix = sp.csr_matrix(np.asarray(matrix))
    return matrix if matrix.format == "csr" else matrix.tocsr()


def cells_to_anndata(cells: Any, tokenizer: Tokenizer) -> Any:
    """:meth:`atacformer.TokenizedCells.to_anndata`."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    if not isinstance(tokenizer, Tokenizer):
        raise AtacformerTypeError(f"tokenizer must be a Tokenizer, got {type(tokenizer).__name__}")
    n_vars = n_universe(tokenizer)
    indptr, indices, data = csr_arrays(cells, n_vars, _IdOrder(tokenizer))
    matrix = sp.csr_matrix((len(cells), n_vars), dtype=np.uint32)
    matrix.data, matrix.indices, matrix.indptr = data, indices, indptr
    names = list(cells.names)
    columns: dict[str, Any] = {}
    if names and all("#" in n for n in names):
        sample, barcode = zip(*(n.split("#", 1) for n in names), strict=True)
        columns["sample"] = pd.Categorical(sample, categories=list(dict.fromkeys(sample)))
        columns["barcode"] = np.asarray(barcode, dtype=object)
    measured = cells.qc
    for key in QC_COLUMNS[:-1]:
        if key in measured:
            columns[key] = np.asarray(measured[key])
    columns["n_tokens"] = np.diff(indptr)
    obs = pd.DataFrame(columns, index=pd.Index(names))
    uns = {"atacformer": atlas_uns(tokenizer, None)}
    return ad.AnnData(X=matrix, obs=obs, var=universe_var(tokenizer), uns=uns)


def n_universe(tokenizer: Tokenizer) -> int:
    """Universe regions: the vocabulary less its special tokens."""
    return int(tokenizer.vocab_size) - len(SPECIAL_TOKEN_NAMES)


def write_atlas(
    manifest: Manifest,
    tokenizer: Tokenizer,
    out: PathLike,
    *,
    min_fragments: int = 0,
    max_fragments: int | None = None,
    on_error: str = "raise",
    threads: int | None = None,
    verbose: bool = False,
    barcode_suffix: str = "auto",
    chrom_names: str = "auto",
) -> Path:
    """Tokenizes every sample of ``manifest`` and writes the atlas ``out`` (``.h5ad`` or
    ``.zarr``); returns ``out`` (see the module docstring for the layout and the resume,
    atomicity and torchrun rules).

    ``min_fragments``, ``max_fragments``, ``on_error``, ``barcode_suffix`` and
    ``chrom_names`` apply to every sample (see
    :meth:`~atacformer.Tokenizer.tokenize_fragments`); a sample's ``barcodes`` come from the
    manifest. ``tokenizer_name`` is recorded in ``uns["atacformer"]["tokenizer"]`` (by
    default the universe file). ``verbose`` prints what is resumed or started over, and a
    progress bar, on standard error. A sample in which no cell has a fragment in the
    universe is an :class:`~atacformer.InvalidInputError` naming its manifest line; the
    samples done before it are kept for the rerun.
    """
    out = Path(out).expanduser()
    fmt = _atlas_format(out)
    if fmt == "h5ad":
        require("h5py", "writing .h5ad atlases", "atacformer[anndata]")
    else:
        require("zarr", "writing .zarr atlases", "zarr")
    require("anndata", "writing atlases", "atacformer[anndata]")
    if not isinstance(manifest, Manifest):
        raise AtacformerTypeError(
            f"write_atlas takes a Manifest (read_manifest), got {type(manifest).__name__}"
        )
    if not isinstance(tokenizer, Tokenizer):
        raise AtacformerTypeError(f"tokenizer must be a Tokenizer, got {type(tokenizer).__name__}")
    if on_error not in ("raise", "skip"):
        raise InvalidInputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    inputs = [s.fragments for s in manifest.samples] + [
        s.barcodes for s in manifest.samples if isinstance(s.barcodes, Path)
    ]
    refuse_overwriting_inputs(out, inputs)
    if not out.parent.is_dir():
        raise AtacformerIOError(errno.ENOENT, "the output folder does not exist", str(out.parent))
    options = {
        "min_fragments": min_fragments,
        "max_fragments": max_fragments,
        "on_error": on_error,
        "barcode_suffix": barcode_suffix,
        "chrom_names": chrom_names,
    }
    fingerprint = _fingerprint(manifest, tokenizer, fmt, options)
    partial = out.with_name(out.name + ".partial")
    parts = partial / "parts"
    with _process_group() as group:
        if group.rank == 0:
            _prepare(partial, fingerprint, manifest, out, verbose)
        group.barrier()
        mine = _assign(manifest, group.world)[group.rank]
        if group.world > 1:
            names = ", ".join(manifest.samples[i].name for i in mine[:10])
            more = f" and {len(mine) - 10} more" if len(mine) > 10 else ""
            _say(
                verbose,
                f"rank {group.rank} of {group.world}: {len(mine)} samples ({names}{more})",
            )
        run = _SampleRun(manifest, tokenizer, options, parts, _IdOrder(tokenizer))
        bar = _bar(len(mine), verbose and group.rank == 0)
        with _threads_per_rank(group, threads), bar as progress:
            if group.world == 1:
                # One process: the atlas is written as the parts are made, in order.
                with atomic_path(out, directory=fmt == "zarr") as tmp:
                    with _AtlasWriter(tmp, fmt, n_universe(tokenizer)) as writer:
                        run.all(mine, progress, writer)
                        writer.finish(manifest, tokenizer)
            else:
                run.all(mine, progress, None)
        group.barrier()
        if group.world > 1 and group.rank == 0:
            # Rank 0 joins every rank's parts, without tokenizing again.
            with atomic_path(out, directory=fmt == "zarr") as tmp:
                with _AtlasWriter(tmp, fmt, n_universe(tokenizer)) as writer:
                    for i in range(len(manifest)):
                        writer.append(_Part.load(parts / f"{i:06d}.npy"))
                    writer.finish(manifest, tokenizer)
        if group.rank == 0:
            shutil.rmtree(partial, ignore_errors=True)
        group.barrier()
    return out


class _SampleRun:
    """Tokenizes samples into parts. One sample is saved (and appended to the atlas) on a
    thread while the next is tokenized, which releases the GIL: at most two samples are in
    memory, and writing stays off the critical path."""

    def __init__(
        self,
        manifest: Manifest,
        tokenizer: Tokenizer,
        options: dict[str, Any],
        parts: Path,
        order: _IdOrder,
    ) -> None:
        self.manifest, self.tokenizer, self.options = manifest, tokenizer, options
        self.parts, self.order = parts, order
        self.n_vars = n_universe(tokenizer)

    def all(self, indices: list[int], progress: Any, writer: _AtlasWriter | None) -> None:
        with ThreadPoolExecutor(1) as saver:
            pending: Future[None] | None = None
            for i in indices:
                target = self.parts / f"{i:06d}.npy"
                if target.exists():  # done by an interrupted run
                    if writer is not None:
                        if pending is not None:
                            pending.result()
                        pending = saver.submit(self._append_saved, target, writer)
                else:
                    sample = self.manifest.samples[i]
                    cells = _tokenize_sample(self.manifest, sample, self.tokenizer, self.options)
                    if pending is not None:
                        pending.result()
                    pending = saver.submit(self._save, cells, target, i, writer)
                    del cells
                progress.update(1)
            if pending is not None:
                pending.result()

    def _save(self, cells: Any, target: Path, index: int, writer: _AtlasWriter | None) -> None:
        part = _part_of(cells, self.n_vars, self.order)
        part.save(target)
        _after_sample_hook(index)
        if writer is not None:
            writer.append(part)

    @staticmethod
    def _append_saved(target: Path, writer: _AtlasWriter) -> None:
        writer.append(_Part.load(target))


def _tokenize_sample(
    manifest: Manifest, sample: Sample, tokenizer: Tokenizer, options: dict[str, Any]
) -> Any:
    barcodes = sample.barcodes
    cells = tokenizer.tokenize_fragments(
        sample.fragments,
        barcodes=list(barcodes) if isinstance(barcodes, tuple) else barcodes,
        **options,
    )
    if len(cells) == 0:
        raise InvalidInputError(f"{manifest.where(sample)}: {_why_no_cell(sample, cells, options)}")
    return cells


def _why_no_cell(sample: Sample, cells: Any, options: dict[str, Any]) -> str:
    """Why a sample gave no cell: the cell filters removed them all, or no fragment of the
    file overlaps the universe (told apart by the file's coverage)."""
    coverage = getattr(cells, "coverage", None)
    overlapping = None if coverage is None else int(coverage.n_overlapping)
    where = f"sample {sample.name!r} ({sample.fragments})"
    filters = []
    if options.get("min_fragments"):
        filters.append(f"min_fragments={options['min_fragments']}")
    if options.get("max_fragments") is not None:
        filters.append(f"max_fragments={options['max_fragments']}")
    if sample.barcodes is not None:
        filters.append("its barcode list")
    if filters and overlapping != 0:
        seen = (
            ""
            if coverage is None
            else f" ({overlapping:,} of its {int(coverage.n_intervals):,} fragments overlap the "
            "universe)"
        )
        return (
            f"no cell of {where} passes {' / '.join(filters)}{seen}; loosen the cell filters "
            "(min_fragments, max_fragments, barcodes)"
        )
    return f"no cell of {where} has a fragment in the universe"


def tokenize_manifest(
    manifest: Manifest,
    tokenizer: Tokenizer,
    *,
    min_fragments: int = 0,
    max_fragments: int | None = None,
    on_error: str = "raise",
    barcode_suffix: str = "auto",
    chrom_names: str = "auto",
) -> Any:
    """Every sample of ``manifest`` tokenized in memory, one after another, as one
    :class:`~atacformer.TokenizedCells` whose cells are named ``{sample}#{barcode}`` (use
    :func:`write_atlas` for atlases larger than memory)."""
    from .tokenized_cells import TokenizedCells

    if not isinstance(manifest, Manifest):
        raise AtacformerTypeError(
            f"tokenize_manifest takes a Manifest (read_manifest), got {type(manifest).__name__}"
        )
    options = {
        "min_fragments": min_fragments,
        "max_fragments": max_fragments,
        "on_error": on_error,
        "barcode_suffix": barcode_suffix,
        "chrom_names": chrom_names,
    }
    parts = [_tokenize_sample(manifest, s, tokenizer, options) for s in manifest.samples]
    joined = parts[0] if len(parts) == 1 else TokenizedCells.concat(parts)
    # Renamed in place: a new TokenizedCells would leave the per-id counts and QC behind.
    joined.names = [
        f"{s.name}#{b}"
        for s, cells in zip(manifest.samples, parts, strict=True)
        for b in cells.names
    ]
    return joined


def write_anndata(adata: Any, out: PathLike, fmt: str | None = None) -> Path:
    """Writes ``adata`` to ``out`` (``.h5ad`` or ``.zarr``) through a temporary sibling
    renamed once complete."""
    out = Path(out)
    fmt = fmt or _atlas_format(out)
    with atomic_path(out, directory=fmt == "zarr") as tmp:
        if fmt == "h5ad":
            adata.write_h5ad(tmp)
        else:
            adata.write_zarr(tmp)
    return out


def atlas_size(path: PathLike) -> tuple[int, int, int]:
    """``(n_cells, n_ids, n_samples)`` of an atlas, read from its metadata only."""
    path = Path(path)
    if _atlas_format(path) == "h5ad":
        import h5py

        with h5py.File(path, "r") as f:
            n_cells, n_ids = int(f["X"].attrs["shape"][0]), int(f["X/indices"].shape[0])
            n_samples = len(f["obs/sample/categories"]) if "obs/sample/categories" in f else 0
        return n_cells, n_ids, n_samples
    import zarr

    root = zarr.open_group(str(path), mode="r")
    n_cells, n_ids = int(root["X"].attrs["shape"][0]), int(root["X"]["indices"].shape[0])
    obs = root["obs"]
    n_samples = int(obs["sample"]["categories"].shape[0]) if "sample" in obs else 0
    return n_cells, n_ids, n_samples


def _atlas_format(out: Path) -> str:
    name = out.name.lower()
    for suffix in ATLAS_SUFFIXES:
        if name.endswith(suffix):
            return suffix[1:]
    raise InvalidInputError(f"cannot write {out}: an atlas is an .h5ad file or a .zarr folder")


def _fingerprint(
    manifest: Manifest, tokenizer: Tokenizer, fmt: str, options: dict[str, Any]
) -> dict[str, Any]:
    """What the parts depend on: if any of it changes, the parts are stale."""

    def stat(path: Path | tuple[str, ...] | None) -> list[Any] | None:
        if path is None:
            return None
        if isinstance(path, tuple):
            return ["listed", hashlib.sha256("\n".join(path).encode()).hexdigest()]
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]

    return {
        "part_format": _PART_FORMAT,
        "universe_id": tokenizer.universe_id,
        "vocab_size": int(tokenizer.vocab_size),
        "options": options,
        "samples": [
            {"name": s.name, "fragments": stat(s.fragments), "barcodes": stat(s.barcodes)}
            for s in manifest.samples
        ],
    }


def _digest(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def _prepare(
    partial: Path, fingerprint: dict[str, Any], manifest: Manifest, out: Path, verbose: bool
) -> None:
    """Makes ``partial/`` for this run: kept (resume) when its progress record matches the
    fingerprint, else emptied (a run of another manifest, tokenizer or options)."""
    progress = partial / "progress.json"
    digest = _digest(fingerprint)
    if partial.exists():
        # A killed run may have left its half-written atlas (atomic_path's temporary
        # sibling, which only a clean exit removes); it is of no use to anyone.
        for stale in out.parent.glob(f".{glob.escape(out.name)}.*.tmp*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        try:
            recorded = json.loads(progress.read_text()).get("digest")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded == digest:
            done = [
                s.name
                for i, s in enumerate(manifest.samples)
                if (partial / "parts" / f"{i:06d}.npy").exists()
            ]
            if done:
                shown = ", ".join(done[:10]) + (
                    f" and {len(done) - 10} more" if len(done) > 10 else ""
                )
                _say(
                    verbose,
                    f"resuming {out}: {len(done)} of {len(manifest)} samples are already "
                    f"tokenized, skipping them ({shown})",
                )
            return
        _say(
            verbose,
            f"starting {out} over: the interrupted run in {partial} used another manifest, "
            "tokenizer or options",
        )
        shutil.rmtree(partial)
    try:
        (partial / "parts").mkdir(parents=True)
        with atomic_path(progress) as tmp:
            tmp.write_text(json.dumps({"digest": digest, "fingerprint": fingerprint}, indent=1))
    except OSError as e:
        if isinstance(e, AtacformerIOError):
            raise
        raise AtacformerIOError(
            e.errno, f"cannot write {partial}: {e.strerror}", str(partial)
        ) from e


def _assign(manifest: Manifest, world: int) -> list[list[int]]:
    """Sample indices per rank: largest files first, each to the least loaded rank (ties to
    the lowest rank), so every rank computes the same split."""
    sizes = [s.fragments.stat().st_size for s in manifest.samples]
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    loads = [0] * world
    ranks: list[list[int]] = [[] for _ in range(world)]
    for i in order:
        r = min(range(world), key=lambda k: (loads[k], k))
        loads[r] += sizes[i]
        ranks[r].append(i)
    return [sorted(r) for r in ranks]


def _after_sample_hook(index: int) -> None:
    """Test hook: ``ATACFORMER_ATLAS_KILL_AFTER=k`` kills the process (SIGKILL, no cleanup)
    once sample ``k`` (0-based) is saved, as an interrupted run would be."""
    stop = os.environ.get("ATACFORMER_ATLAS_KILL_AFTER")
    if stop is not None and stop.strip() == str(index):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _say(verbose: bool, message: str) -> None:
    if verbose:
        print(f"atacformer: {message}", file=sys.stderr, flush=True)


class _NoBar:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _bar(total: int, enabled: bool) -> Iterator[Any]:
    if not enabled or not sys.stderr.isatty():
        yield _NoBar()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield _NoBar()
        return
    with tqdm(total=total, unit="sample", desc="Tokenizing samples", file=sys.stderr) as bar:
        yield bar


# ----------------------------------------------------------------------------- merging


class _AtlasWriter:
    """Writes an atlas into ``tmp``: ``X`` grows by one part at a time (anndata's on-disk
    sparse ``append``), ``obs``, ``var`` and ``uns`` are written by :meth:`finish`."""

    def __init__(self, tmp: Path, fmt: str, n_vars: int) -> None:
        try:
            from anndata.io import sparse_dataset
        except ImportError:  # pragma: no cover - anndata < 0.11
            from anndata.experimental import sparse_dataset

        self.fmt, self.n_vars = fmt, n_vars
        self.root = _open_root(tmp, fmt)
        _create_csr(self.root, n_vars, fmt)
        self.matrix = sparse_dataset(self.root["X"])
        self.barcodes: list[np.ndarray] = []
        self.qc: dict[str, list[np.ndarray]] = {k: [] for k in QC_COLUMNS}
        self.counts: list[int] = []

    def __enter__(self) -> _AtlasWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fmt == "h5ad":
            self.root.close()

    def append(self, part: _Part) -> None:
        self.matrix.append(_scipy_csr(part, self.n_vars))
        self.barcodes.append(part.barcodes)
        self.counts.append(part.n_cells)
        for k in QC_COLUMNS:
            self.qc[k].append(part.qc[k])

    def finish(self, manifest: Manifest, tokenizer: Tokenizer) -> None:
        import pandas as pd

        try:
            from anndata.io import write_elem
        except ImportError:  # pragma: no cover - anndata < 0.11
            from anndata.experimental import write_elem

        counts = self.counts
        if len(counts) != len(manifest):  # a bug, never the input
            raise AssertionError(f"{len(counts)} parts for {len(manifest)} samples")
        names = [s.name for s in manifest.samples]
        sample = pd.Categorical.from_codes(
            np.repeat(np.arange(len(names)), counts), categories=names
        )
        barcode = np.concatenate(self.barcodes).astype(object)
        index = pd.Index(
            [f"{s}#{b}" for s, b in zip(np.repeat(names, counts), barcode, strict=True)]
        )
        columns: dict[str, Any] = {"sample": sample, "barcode": barcode}
        columns.update({k: np.concatenate(v) for k, v in self.qc.items()})
        for column in manifest.extra_columns:
            values = [s.extra[column] for s in manifest.samples]
            columns[column] = pd.Categorical(np.repeat(np.asarray(values, dtype=object), counts))
        root = self.root
        write_elem(root, "obs", pd.DataFrame(columns, index=index))
        write_elem(root, "var", universe_var(tokenizer))
        write_elem(root, "uns", {"atacformer": atlas_uns(tokenizer, manifest)})
        for key in ("obsm", "varm", "obsp", "varp", "layers"):
            write_elem(root, key, {})
        root.attrs["encoding-type"] = "anndata"
        root.attrs["encoding-version"] = "0.1.0"


def _open_root(tmp: Path, fmt: str) -> Any:
    if fmt == "h5ad":
        import h5py

        return h5py.File(tmp, "w")
    import anndata as ad
    import zarr

    return zarr.open_group(str(tmp), mode="w", zarr_format=ad.settings.zarr_write_format)


def _create_csr(root: Any, n_vars: int, fmt: str) -> None:
    """An empty ``0 x n_vars`` CSR group in anndata's encoding (``csr_matrix`` 0.1.0), with
    resizable, chunked arrays of the atlas's dtypes, for appending to."""
    group = root.create_group("X")
    group.attrs["encoding-type"] = "csr_matrix"
    group.attrs["encoding-version"] = "0.1.0"
    group.attrs["shape"] = [0, int(n_vars)]
    for name, dtype, init in (
        ("data", np.uint32, 0),
        ("indices", np.int32, 0),
        ("indptr", np.int64, 1),
    ):
        if fmt == "h5ad":
            group.create_dataset(
                name,
                data=np.zeros(init, dtype=dtype),
                maxshape=(None,),
                chunks=(_CHUNK,),
            )
        else:
            array = group.create_array(name, shape=(init,), dtype=dtype, chunks=(_CHUNK,))
            if init:
                array[:] = np.zeros(init, dtype=dtype)


def _scipy_csr(part: _Part, n_vars: int) -> Any:
    import scipy.sparse as sp

    matrix = sp.csr_matrix((part.n_cells, n_vars), dtype=np.uint32)
    # Set the arrays directly: the constructor would check and may cast them.
    matrix.data, matrix.indices, matrix.indptr = part.data, part.indices, part.indptr
    return matrix


# ------------------------------------------------------------------------- distribution


@dataclass
class _Group:
    rank: int = 0
    world: int = 1
    dist: Any = None

    def barrier(self) -> None:
        if self.dist is not None:
            self.dist.barrier()


@contextlib.contextmanager
def _process_group() -> Iterator[_Group]:
    """The ranks of this run: one (rank 0 of 1) unless ``WORLD_SIZE`` > 1 (``torchrun``,
    ``accelerate launch``) or a torch process group is already initialised; then the
    group's, initialising a gloo one from the environment when needed (and destroying it
    after)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        world = 1
    dist = None
    if "torch" in sys.modules or world > 1:
        try:
            import torch.distributed as dist
        except ImportError as e:
            if world > 1:
                raise MissingDependencyError(
                    f"WORLD_SIZE={world}: tokenizing over several processes coordinates them "
                    "with torch.distributed: pip install torch (or unset WORLD_SIZE)"
                ) from e
            dist = None
    if dist is None or not dist.is_available() or (world <= 1 and not dist.is_initialized()):
        yield _Group()
        return
    created = False
    if not dist.is_initialized():
        from datetime import timedelta

        # Rank 0 joins every part while the others wait: allow a long barrier.
        dist.init_process_group("gloo", timeout=timedelta(hours=12))
        created = True
    try:
        yield _Group(dist.get_rank(), dist.get_world_size(), dist)
    finally:
        if created:
            dist.destroy_process_group()


@contextlib.contextmanager
def _threads_per_rank(group: _Group, threads: int | None) -> Iterator[None]:
    """``threads`` tokenizer threads; by default, with several ranks on one machine, each
    its share of the cores (unless ``ATACFORMER_NUM_THREADS`` is set), so that K ranks do
    not run K x cores threads."""
    if threads is None:
        try:
            local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if group.world > 1 else 1
        except ValueError:
            local = 1
        if local <= 1 or os.environ.get("ATACFORMER_NUM_THREADS"):
            yield
            return
        threads = max(1, (os.cpu_count() or 1) // local)
    before = _core.get_num_threads()
    _core.set_num_threads(int(threads))
    try:
        yield
    finally:
        _core.set_num_threads(before)
