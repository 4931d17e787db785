"""Tokenized atlases written by the tests themselves, in the agreed on-disk layout.

The layout (the one ``atacformer tokenize --manifest`` writes): ``X`` CSR cells x universe with
int32 ``indices`` (the token ids, ascending per row), int64 ``indptr`` and uint32 ``data``;
``var`` the universe's token strings; ``obs`` named ``{sample}#{barcode}`` with ``sample``,
``barcode`` and ``n_tokens``; ``uns["atacformer"]["universe_id"]``. ``X`` is written with h5py,
since SciPy would give ``indices`` and ``indptr`` one dtype.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def random_rows(n_vars: int, n_cells: int, seed: int = 0, median: int = 40, empty=()):
    """Sorted unique token ids per cell, log-normal lengths around ``median``."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(median), 0.7, n_cells).astype(int), 1, n_vars)
    for i in empty:
        lengths[i] = 0
    return [np.sort(rng.choice(n_vars, size=n, replace=False)).astype(np.int32) for n in lengths]


def write_atlas(path: Path, tokenizer, rows, universe_id: str | None = None) -> Path:
    """``rows`` (a list of id arrays) as an atlas ``.h5ad`` (or ``.zarr``) at ``path``."""
    import anndata as ad
    import h5py
    import pandas as pd

    n_vars = tokenizer.vocab_size - 7
    n_cells = len(rows)
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.concatenate(rows).astype(np.int32) if n_cells else np.zeros(0, np.int32)
    data = (np.arange(len(indices)) % 3 + 1).astype(np.uint32)
    samples = np.array(["s1", "s2"])[np.arange(n_cells) % 2]
    barcodes = [f"BC{i // 2:05d}" for i in range(n_cells)]  # the same barcode in both samples
    obs = pd.DataFrame(
        {"sample": pd.Categorical(samples), "barcode": barcodes, "n_tokens": lengths},
        index=[f"{s}#{b}" for s, b in zip(samples, barcodes, strict=True)],
    )
    var = pd.DataFrame(index=tokenizer.convert_ids_to_tokens(list(range(n_vars))))
    adata = ad.AnnData(obs=obs, var=var)
    adata.uns["atacformer"] = {
        "universe_id": universe_id or tokenizer.universe_id,
        "vocab_size": tokenizer.vocab_size,
    }
    if str(path).endswith(".zarr"):
        import warnings

        import scipy.sparse as sp

        adata.X = sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_vars))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zarr v2 is still anndata's default
            adata.write_zarr(path)
        return path
    adata.write_h5ad(path)
    with h5py.File(path, "a") as f:
        group = f.create_group("X")
        group.attrs["encoding-type"] = "csr_matrix"
        group.attrs["encoding-version"] = "0.1.0"
        group.attrs["shape"] = np.array([n_cells, n_vars], dtype=np.int64)
        group["indices"] = indices
        group["indptr"] = indptr
        group["data"] = data
    return path
