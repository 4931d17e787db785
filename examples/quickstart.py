"""Tokenize the 20 real PBMC cells in examples/pbmc_hg38.h5ad and print a summary.

Run from the repository root: ``python examples/quickstart.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import anndata as ad

import atacformer

HERE = Path(__file__).resolve().parent


def main() -> None:
    adata = ad.read_h5ad(HERE / "pbmc_hg38.h5ad")
    with tempfile.TemporaryDirectory() as tmp:
        # The matrix's own 1,000 peaks serve as the universe here.
        universe = Path(tmp) / "universe.bed.gz"
        atacformer.RegionSet.from_pandas(adata.var).to_bed(universe)
        tok = atacformer.Tokenizer(universe)
        t = time.perf_counter()
        cells = tok.tokenize_anndata(adata)
        elapsed = time.perf_counter() - t
    print(f"{tok!r}")
    print(f"{cells!r} in {elapsed * 1e3:.2f} ms")
    for name, cell_type, ids in zip(cells.names[:5], adata.obs["cell_type"], cells, strict=False):
        print(f"  {name:>5} {cell_type:<15} {len(ids):>3} tokens, first: {tok.decode(ids[:2])}")
    batch = cells.to_padded(max_length=64)
    print(f"padded input_ids {batch['input_ids'].shape}, pad id {tok.pad_token_id}")


if __name__ == "__main__":
    main()
