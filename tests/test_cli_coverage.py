"""The command line on data that misses the universe: the coverage in the summary line,
the CoverageWarning as one line, ``--chrom-names`` and ``embed``'s refusal of empty cells."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from atacformer.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def off_universe_h5ad(path):
    """Three cells whose peaks lie on a chromosome the demo universe lacks (chrZ)."""
    var = pd.DataFrame(index=["chrZ:100-600", "chrZ:1000-1500", "chrZ:5000-5600"])
    x = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=np.float32))
    ad.AnnData(X=x, obs=pd.DataFrame(index=["a", "b", "c"]), var=var).write_h5ad(path)
    return path


def test_embed_stops_when_no_cell_has_a_token(capsys, tmp_path):
    data = off_universe_h5ad(tmp_path / "off.h5ad")
    out, plot = tmp_path / "emb.h5ad", tmp_path / "emb.png"
    code, _, err = run(capsys, "embed", data, "--model", "demo", "-o", out, "--plot", plot)
    assert code == 1
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("atacformer embed: error: no cell has a")
    assert "none of the 3 cells overlaps the universe" in errors[0]
    assert "--allow-empty" in errors[0]
    assert not out.exists() and not plot.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["off.h5ad"]  # no temporary left


def test_allow_empty_embeds_them_anyway(capsys, tmp_path):
    data = off_universe_h5ad(tmp_path / "off.h5ad")
    out = tmp_path / "emb.h5ad"
    code, printed, _ = run(capsys, "embed", data, "--model", "demo", "-o", out, "--allow-empty")
    assert code == 0, printed
    embedded = ad.read_h5ad(out)
    assert embedded.obsm["X_atacformer"].shape == (3, 64)
    # Every cell is the lone <unk> token, so every cell embeds to the same point.
    rows = embedded.obsm["X_atacformer"]
    np.testing.assert_allclose(rows, np.repeat(rows[:1], 3, axis=0), atol=1e-5)
    assert list(embedded.obs["atacformer_n_tokens"]) == [1, 1, 1]
