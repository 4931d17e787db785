"""The command line on data that misses the universe: the coverage in the summary line,
the CoverageWarning as one line, ``--chrom-names`` and ``embed``'s refusal of empty cells."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from atacformer import InvalidInputError, TokenizedCells, pp, synthetic
from atacformer.cli import main
from atacformer.hub import DEMO_MODEL_DIR


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


# ------------------------------------------------------- coverage and --chrom-names


@pytest.fixture
def ensembl(tmp_path):
    """A UCSC-named universe (chr1, chr2) and fragments named the Ensembl way (1, 2, MT).

    By hand: AAA overlaps region 0 (chr1:100-200) and region 1; TTT spans regions 0 and 1;
    CCC has one fragment on 1 that overlaps nothing, one on 2 that overlaps region 2
    (chr2:50-150) and one on MT, which the universe lacks. 4 of the 6 lines overlap."""
    universe = tmp_path / "universe.bed"
    universe.write_text("chr1\t100\t200\nchr1\t300\t400\nchr2\t50\t150\n")
    rows = [
        ("1", 150, 160, "AAA-1"),
        ("1", 190, 310, "TTT-1"),
        ("1", 350, 360, "AAA-1"),
        ("1", 500, 600, "CCC-1"),
        ("2", 10, 60, "CCC-1"),
        ("MT", 10, 60, "CCC-1"),
    ]
    fragments = tmp_path / "fragments.tsv"
    fragments.write_text("".join(f"{c}\t{s}\t{e}\t{b}\t1\n" for c, s, e, b in rows))
    return universe, fragments


def test_tokenize_summary_line_gives_the_coverage_and_the_aliases(capsys, ensembl, tmp_path):
    universe, fragments = ensembl
    out = tmp_path / "cells.atok"
    code, printed, err = run(capsys, "tokenize", fragments, "--tokenizer", universe, "-o", out)
    assert code == 0, err
    lines = printed.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("3 cells, 5 tokens")
    assert "coverage: 66.7% of 6 intervals overlap the universe" in lines[0]  # 4 of 6
    assert "renamed 2 chromosome(s) (1->chr1, 2->chr2)" in lines[0]
    assert "1 chromosome(s) not in the universe (MT: 16.7% of intervals)" in lines[0]
    cells = TokenizedCells.load(out)
    by_name = {n: c.tolist() for n, c in zip(cells.names, cells, strict=True)}
    assert by_name == {"AAA-1": [0, 1], "TTT-1": [0, 1], "CCC-1": [2]}


def test_exact_names_miss_everything_and_the_advice_is_one_line(capsys, ensembl, tmp_path):
    universe, fragments = ensembl
    out = tmp_path / "cells.atok"
    code, _, err = run(
        capsys, "tokenize", fragments, "--tokenizer", universe, "-o", out, "--chrom-names", "exact"
    )
    assert code == 1 and not out.exists()
    lines = err.splitlines()
    warning = [line for line in lines if ": warning: " in line]
    assert len(warning) == 1, err
    assert warning[0].startswith("atacformer tokenize: warning: ")
    assert "only 0.0% of 6 intervals overlap the universe" in warning[0]
    assert "chromosomes the universe lacks (1, 2, MT" in warning[0]
    assert "pass --chrom-names auto" in warning[0]  # the fix as the command line spells it
    assert lines[-1].startswith("atacformer tokenize: error: ")


def test_low_coverage_warns_with_the_genome_build_advice(capsys, tmp_path):
    # Fragments spread evenly along a chromosome that holds 10 small regions, mostly past
    # their end: about 1 % overlap, far below what random intervals of this length would.
    universe = tmp_path / "universe.bed"
    universe.write_text("".join(f"chr1\t{i * 1000}\t{i * 1000 + 50}\n" for i in range(10)))
    starts = np.arange(0, 10_000_000, 5_000)
    fragments = tmp_path / "fragments.tsv"
    fragments.write_text("".join(f"chr1\t{s}\t{s + 60}\tAAA-1\t1\n" for s in starts))
    code, printed, err = run(
        capsys, "tokenize", fragments, "--tokenizer", universe, "-o", tmp_path / "c.atok"
    )
    assert code == 0, err
    warning = [line for line in err.splitlines() if ": warning: " in line]
    assert len(warning) == 1, err
    assert "looks like another genome build" in warning[0] and "lift the data over" in warning[0]
    assert "past the universe's chromosome ends" in printed


def test_embed_summary_line_and_chrom_names_reach_the_tokenizer(capsys, tmp_path):
    record = json.loads((DEMO_MODEL_DIR / "synthetic.json").read_text())
    design = synthetic.make_design(synthetic.DesignSpec(**record["design"]))
    spec = synthetic.CellSpec(**{**record["eval_cells"], "n_cells": 12, "seed": 505})
    text = synthetic.sample_cells(design, spec).fragments_text().decode()
    ucsc = tmp_path / "ucsc.tsv"
    ucsc.write_text(text)
    ensembl = tmp_path / "ensembl.tsv"  # the same fragments, chromosomes named 1, 2, X
    ensembl.write_text(
        "".join(line.removeprefix("chr") + "\n" for line in text.splitlines() if line)
    )
    n_lines = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    outs = {}
    for name, path, extra in (
        ("ucsc", ucsc, []),
        ("ensembl", ensembl, []),
        ("exact", ensembl, ["--chrom-names", "exact"]),
    ):
        outs[name] = tmp_path / f"{name}.h5ad"
        code, printed, err = run(capsys, "embed", path, "--model", "demo", "-o", outs[name], *extra)
        if name == "exact":
            assert code == 1 and not outs[name].exists()
            assert "chromosomes the universe lacks" in err
            continue
        assert code == 0, err
        assert f"% of {n_lines:,} intervals overlap the universe" in printed, printed
        assert ("renamed" in printed) == (name == "ensembl")
    a, b = ad.read_h5ad(outs["ucsc"]), ad.read_h5ad(outs["ensembl"])
    assert list(a.obs_names) == list(b.obs_names)
    np.testing.assert_allclose(a.obsm["X_atacformer"], b.obsm["X_atacformer"], atol=1e-6)
    np.testing.assert_array_equal(
        a.obs["n_fragments_in_universe"], b.obs["n_fragments_in_universe"]
    )


def test_chrom_names_is_checked_in_python(tmp_path):
    with pytest.raises(InvalidInputError, match="chrom_names must be 'auto' or 'exact'"):
        pp.tokenize(tmp_path / "x.tsv.gz", "demo", chrom_names="ucsc")
