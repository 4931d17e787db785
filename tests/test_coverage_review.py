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


def _small_universe(tmp_path: Path) -> Tokenizer:
    """1,000 peaks of 500 bp on chr1, one every 200 kb from 1 Mb to about 201 Mb."""
    bed = tmp_path / "small.bed"
    bed.write_text(
        "".join(f"chr1\t{s}\t{s + 500}\n" for s in range(1_000_000, 201_000_000, 200_000))
    )
    return Tokenizer(str(bed))


def _write_fragments(path: Path, starts: list[int]) -> Path:
    path.write_text("".join(f"chr1\t{s}\t{s + 200}\tBC{i % 10}\t1\n" for i, s in enumerate(starts)))
    return path


def test_small_universe_does_not_claim_another_build(tmp_path: Path):
    tok = _small_universe(tmp_path)
    # Same-build data between the peaks: nothing overlaps, and nothing says why.
    starts = [1_050_000 + 200_000 * (i % 900) + i for i in range(3000)]
    path = _write_fragments(tmp_path / "between.tsv", starts)
    with pytest.warns(
        atacformer.CoverageWarning, match="few intervals overlap the universe"
    ) as rec:
        tok.tokenize_fragments(path)
    message = str(rec[0].message)
    assert "0.0% of 3,000 intervals" in message
    assert "genome build" not in message


def test_small_universe_with_past_end_evidence_names_the_build(tmp_path: Path):
    tok = _small_universe(tmp_path)
    starts = [1_050_000 + 200_000 * (i % 900) + i for i in range(2500)]
    starts += [205_000_000 + 1000 * i for i in range(500)]  # 4 Mb past the last peak
    path = _write_fragments(tmp_path / "past.tsv", starts)
    with pytest.warns(atacformer.CoverageWarning, match="another genome build"):
        tok.tokenize_fragments(path)


def test_pbmc_example_universe_names_no_build(tmp_path: Path):
    # hg38 fragments (the test fixture) against the 1,000 hg38 peaks of the PBMC example.
    import anndata as ad

    from atacformer import RegionSet

    root = Path(__file__).resolve().parent.parent
    adata = ad.read_h5ad(root / "examples" / "pbmc_hg38.h5ad")
    RegionSet.from_pandas(adata.var).to_bed(str(tmp_path / "pbmc.bed"))
    tok = Tokenizer(str(tmp_path / "pbmc.bed"))
    fragments = root / "tests" / "data" / "fragments" / "fragments1.bed.gz"
    with pytest.warns(atacformer.CoverageWarning, match="few intervals overlap") as rec:
        tok.tokenize_fragments(str(fragments))
    assert "genome build" not in str(rec[0].message)


def test_small_universe_past_end_alone_is_not_low(tmp_path: Path):
    # A small universe may end far from its chromosomes' ends: same-build data enriched in
    # its peaks (40 % vs 0.3 % random) with 2 % beyond its last peak is not another build.
    tok = _small_universe(tmp_path)
    on = [1_000_100 + 200_000 * (i % 900) for i in range(1200)]
    between = [1_050_000 + 200_000 * (i % 900) + i for i in range(1740)]
    past = [205_000_000 + 1000 * i for i in range(60)]
    path = _write_fragments(tmp_path / "enriched.tsv", on + between + past)
    with warnings.catch_warnings():
        warnings.simplefilter("error", atacformer.CoverageWarning)
        cells = tok.tokenize_fragments(path)
    cov = cells.coverage
    assert cov is not None and cov.n_past_end == 60 and cov.n_intervals == 3000
    assert not cov.low
