"""Review fixes of the tokenized atlas: empty atlases, QC-filtered samples, universes of
AnnData round trips, a real atlas end to end, and options an atlas or manifest ignores."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _atlas_helpers import write_atlas

import atacformer as af
from atacformer.cli import main
from atacformer.coverage import CoverageWarning


@pytest.fixture(scope="module")
def demo():
    from atacformer.hub import load_model

    return load_model("demo"), af.Tokenizer.from_pretrained("demo")


def empty_rows(n: int):
    return [np.zeros(0, dtype=np.int32) for _ in range(n)]


def test_the_cli_refuses_an_atlas_where_no_cell_has_a_token(tmp_path, demo, capsys):
    atlas = write_atlas(tmp_path / "atlas.h5ad", demo[1], empty_rows(6))
    out = tmp_path / "emb.h5ad"
    assert main(["embed", str(atlas), "--model", "demo", "-o", str(out), "-q"]) != 0
    err = capsys.readouterr().err
    assert "no cell has a token" in err and "--allow-empty" in err
    assert not out.exists()
    argv = ["embed", str(atlas), "--model", "demo", "-o", str(out), "-q", "--allow-empty"]
    assert main(argv) == 0
    assert out.exists()
    assert "6 of 6 cells of the atlas have no tokens" in capsys.readouterr().err


def test_the_library_warns_with_a_coverage_warning_for_empty_atlas_cells(tmp_path, demo):
    atlas = write_atlas(tmp_path / "atlas.h5ad", demo[1], empty_rows(4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = af.tl.embed(atlas, demo[0], tokenizer=demo[1], progress=False)
    assert adata.n_obs == 4
    kinds = [w.category for w in caught if "have no tokens" in str(w.message)]
    assert kinds == [CoverageWarning]
