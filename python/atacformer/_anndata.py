"""Reading peaks and accessibility out of AnnData objects (the ``anndata`` extra)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _core


def check_anndata(adata: Any) -> None:
    """Refuses anything that is not AnnData-like (``var``, ``obs_names``, ``X``, ``layers``
    and ``n_obs``), before any attribute of it is read."""
    missing = [
        a
        for a in ("var", "var_names", "obs_names", "X", "layers", "n_obs")
        if not hasattr(adata, a)
    ]
    if missing:
        raise _core.AtacformerTypeError(
            f"expected an AnnData object, got {type(adata).__name__} (it has no "
            f"{', '.join(missing)})"
        )


def peaks_of(adata: Any) -> _core.RegionSet:
    """The peaks of ``adata.var`` as a RegionSet, from columns or from ``var_names``."""
    var = adata.var
    chrom_col = next((c for c in ("chr", "chrom") if c in var.columns), None)
    if chrom_col is not None and "start" in var.columns and "end" in var.columns:
        return _from_columns(var[chrom_col], var["start"].to_numpy(), var["end"].to_numpy())
    names = adata.var_names.tolist()
    parsed = _core.RegionSet._from_peak_names(names) if names else None
    if not isinstance(parsed, _core.RegionSet):
        example = repr(str(names[parsed])) if parsed is not None else "(no peaks)"
        raise _core.InvalidInputError(
            "cannot find peak coordinates: adata.var needs 'chr' (or 'chrom'), 'start' and "
            f"'end' columns, or var_names like 'chr1:100-600' or 'chr1-100-600'; "
            f"got var_names such as {example}"
        )
    return parsed


def obs_names(adata: Any) -> list[str]:
    """The cell names of ``adata`` as strings."""
    names = adata.obs_names
    if names.dtype == object:
        values = names.tolist()
        if all(type(v) is str for v in values):
            return values
    return list(map(str, names))


def _from_columns(chroms: Any, starts: np.ndarray, ends: np.ndarray) -> _core.RegionSet:
    """A RegionSet from a chromosome column (categories reused, strings interned in Rust)."""
    import pandas as pd

    bounds = np.iinfo(np.uint32)
    for what, col in (("start", starts), ("end", ends)):
        if not np.issubdtype(col.dtype, np.integer):
            raise _core.InvalidInputError(f"var[{what!r}] must hold integers, got {col.dtype}")
        if col.size and (col.min() < 0 or col.max() > bounds.max):
            raise _core.InvalidInputError(f"var[{what!r}] must be in 0..=4294967295")
    starts, ends = starts.astype(np.uint32), ends.astype(np.uint32)
    if isinstance(chroms.dtype, pd.CategoricalDtype):
        codes = chroms.cat.codes.to_numpy()
        if (codes < 0).any():
            raise _core.InvalidInputError("var has peaks without a chromosome")
        names = [str(n) for n in chroms.cat.categories]
        return _core.RegionSet._from_state(names, codes.astype(np.uint32), starts, ends, None)
    values = chroms.tolist()
    if chroms.dtype != object:  # e.g. integer chromosome names
        values = [str(v) for v in values]
    return _core.RegionSet._from_chrom_list(values, starts, ends)


def _csr_arrays(matrix: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``indptr`` (int64), ``indices`` (int32 or int64, not copied) and ``data`` of any
    matrix, as CSR rows."""
    import scipy.sparse as sp

    if sp.issparse(matrix):
        csr = matrix.tocsr() if matrix.format != "csr" else matrix
        data = csr.data
    else:
        dense = np.asarray(matrix)
        if dense.ndim != 2:
            raise _core.InvalidInputError(f"expected a 2-D matrix, got shape {dense.shape}")
        rows, cols = np.nonzero(dense)
        counts = np.bincount(rows, minlength=dense.shape[0])
        indptr = np.zeros(dense.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, cols.astype(np.int64), None
    indices = csr.indices
    if indices.dtype not in (np.int32, np.int64):
        indices = indices.astype(np.int64)
    return (
        np.asarray(csr.indptr, dtype=np.int64),
        np.ascontiguousarray(indices),
        np.ascontiguousarray(data),
    )


def row_chunks(
    adata: Any, layer: str | None, chunk_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """CSR arrays of the matrix, whole when in memory, ``chunk_size`` rows when backed."""
    if layer is not None and layer not in adata.layers:
        raise _core.InvalidInputError(f"adata has no layer {layer!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise _core.AtacformerTypeError(f"chunk_size must be an integer, got {chunk_size!r}")
    if chunk_size < 1:
        raise _core.InvalidInputError(f"chunk_size must be at least 1, got {chunk_size}")
    if not getattr(adata, "isbacked", False):
        yield _csr_arrays(adata.X if layer is None else adata.layers[layer])
        return
    for lo in range(0, adata.n_obs, chunk_size):
        hi = min(lo + chunk_size, adata.n_obs)
        view = adata[lo:hi]
        yield _csr_arrays(view.X if layer is None else view.layers[layer])
