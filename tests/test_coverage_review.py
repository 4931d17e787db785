"""Review of the low-coverage rules (issue 11 §6): past-end evidence and small universes."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import atacformer
from atacformer import Tokenizer, synthetic
from atacformer.hub import DEMO_MODEL_DIR


def _demo_fragments(path: Path, shift: int, share: float = 1.0) -> Path:
    """Synthetic fragments of the demo universe, a random ``share`` of them moved ``shift``
    bp right (a build that agrees with the universe's in places only)."""
    record = json.loads((DEMO_MODEL_DIR / "synthetic.json").read_text())
    design = synthetic.make_design(synthetic.DesignSpec(**record["design"]))
    cells = synthetic.sample_cells(design, synthetic.CellSpec(n_cells=20, seed=3))
    f = cells.fragments
    moved = np.random.default_rng(0).random(len(f)) < share
    cols = (f["chrom"], f["start"], f["end"], f["cell"], f["count"], moved)
    with gzip.open(path, "wt") as out:
        for c, s, e, b, n, m in zip(*cols, strict=True):
            d = shift if m else 0
            name = design.chrom_names[int(c)]
            out.write(f"{name}\t{int(s) + d}\t{int(e) + d}\t{cells.barcodes[b]}\t{n}\n")
    return path


def test_shifted_build_warns_another_genome_build(tmp_path: Path):
    path = _demo_fragments(tmp_path / "shifted.tsv.gz", shift=5_000_000)
    with pytest.warns(atacformer.CoverageWarning, match="another genome build"):
        cells = Tokenizer.from_pretrained("demo").tokenize_fragments(path)
    cov = cells.coverage
    assert cov is not None and cov.n_past_end >= 0.01 * cov.n_intervals
    assert cov.low


def test_same_build_does_not_warn(tmp_path: Path):
    path = _demo_fragments(tmp_path / "same.tsv.gz", shift=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", atacformer.CoverageWarning)
        cells = Tokenizer.from_pretrained("demo").tokenize_fragments(path)
    assert cells.coverage is not None and not cells.coverage.low
    assert np.count_nonzero(cells.qc["n_tokens"]) == len(cells)


def test_many_past_end_is_another_build_even_when_enriched(tmp_path: Path):
    # 60 % moved 5 Mb: the rest still hits peaks far above random, but ~1.5 % of the
    # intervals start past the universe's chromosome ends, which same-build data never does.
    path = _demo_fragments(tmp_path / "partly.tsv.gz", shift=5_000_000, share=0.6)
    with pytest.warns(atacformer.CoverageWarning, match="another genome build") as rec:
        cells = Tokenizer.from_pretrained("demo").tokenize_fragments(path)
    cov = cells.coverage
    assert cov is not None
    assert cov.fraction >= 1.5 * cov.expected_random  # the enrichment test alone passes
    assert cov.n_past_end >= 0.01 * cov.n_intervals
    assert "past the universe's chromosome ends" in str(rec[0].message)
