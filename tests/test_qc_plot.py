"""``atacformer.pl.qc``: fragments per cell against the fraction in the universe, with the
cut-offs drawn; and the QC columns that ``tl.embed`` copies into ``obs``."""

from __future__ import annotations

import json

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest

import atacformer as af
from atacformer import pl, synthetic, tl
from atacformer.hub import DEMO_MODEL_DIR

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def qc_cells() -> ad.AnnData:
    # Six cells: fragments 0, 50, 100, 1000, 5000, 20000; fractions 0, 0.9, 0.2, 0.6, 0.8, 0.4.
    obs = pd.DataFrame(
        {
            "n_fragments": np.array([0, 50, 100, 1000, 5000, 20000], dtype=np.int64),
            "frac_in_universe": [0.0, 0.9, 0.2, 0.6, 0.8, 0.4],
        },
        index=[f"c{i}" for i in range(6)],
    )
    return ad.AnnData(obs=obs)


def points(ax) -> list[tuple[float, float]]:
    return sorted(
        (float(x), float(y)) for c in ax.collections for x, y in np.asarray(c.get_offsets())
    )


def test_cells_are_drawn_where_their_numbers_say_with_the_cut_offs():
    fig = pl.qc(qc_cells(), min_fragments=100, min_frac=0.5)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    # The cell with no fragments cannot sit on a log axis: five points, and the title says so.
    assert points(ax) == [(50, 0.9), (100, 0.2), (1000, 0.6), (5000, 0.8), (20000, 0.4)]
    # Passing both: 1000/0.6 and 5000/0.8 (100 fragments fails on 0.2, 50 on fragments).
    assert ax.get_title() == "2 of 6 cells pass (1 with no fragments not drawn)"
    passed, failed = ax.collections
    assert sorted(map(tuple, np.asarray(passed.get_offsets()))) == [(1000, 0.6), (5000, 0.8)]
    assert len(failed.get_offsets()) == 3
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["pass (2)", "fail (3)"]
    vertical = [ln for ln in ax.lines if ln.get_xdata()[0] == ln.get_xdata()[1]]
    horizontal = [ln for ln in ax.lines if ln.get_ydata()[0] == ln.get_ydata()[1]]
    assert [ln.get_xdata()[0] for ln in vertical] == [100]
    assert [ln.get_ydata()[0] for ln in horizontal] == [0.5]
    plt.close(fig)


def test_without_cut_offs_every_cell_passes_and_no_line_is_drawn():
    fig = pl.qc(qc_cells())
    ax = fig.axes[0]
    assert not ax.lines and ax.get_legend() is None
    assert ax.get_title() == "6 cells (1 with no fragments not drawn)"
    assert len(points(ax)) == 5
    plt.close(fig)


def test_one_cut_off_alone():
    fig = pl.qc(qc_cells(), min_frac=0.7)  # 50/0.9 and 5000/0.8
    assert fig.axes[0].get_title().startswith("2 of 6 cells pass")
    assert len(fig.axes[0].lines) == 1
    plt.close(fig)


def test_it_draws_into_given_axes_and_saves_atomically(tmp_path):
    fig, (left, right) = plt.subplots(1, 2)
    out = tmp_path / "qc.png"
    returned = pl.qc(qc_cells(), min_fragments=10, ax=right, save=out, title="mine")
    assert returned is fig
    assert not left.collections and right.get_title() == "mine"
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["qc.png"]
    plt.close(fig)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_fragments": -1}, "min_fragments must be a non-negative integer"),
        ({"min_fragments": 2.5}, "min_fragments"),
        ({"min_frac": 1.5}, "min_frac must be a number from 0 to 1"),
        ({"min_frac": True}, "min_frac"),
        ({"save": "qc"}, "add a suffix"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(af.InvalidInputError, match=message):
        pl.qc(qc_cells(), **kwargs)
    plt.close("all")


def test_missing_columns_are_named():
    adata = qc_cells()
    del adata.obs["frac_in_universe"]
    with pytest.raises(af.InvalidInputError, match="obs has no 'frac_in_universe'.*tl.embed"):
        pl.qc(adata)
    with pytest.raises(af.AtacformerTypeError, match="expected an AnnData"):
        pl.qc(adata.obs)


# ------------------------------------------- tl.embed copies the tokenization's QC into obs


def in_universe_oracle(sample) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, by brute force over each chromosome's peaks: fragment lines, and those that
    overlap at least one peak (0-based half-open: start < peak end and peak start < end)."""
    design, frags = sample.design, sample.fragments
    hits = np.zeros(len(frags), dtype=bool)
    for c in range(len(design.chrom_names)):
        on = frags["chrom"] == c
        starts = design.starts[design.chrom_index == c]
        ends = design.ends[design.chrom_index == c]
        s, e = frags["start"][on][:, None], frags["end"][on][:, None]
        hits[on] = ((s < ends[None, :]) & (starts[None, :] < e)).any(axis=1)
    total = np.bincount(frags["cell"], minlength=sample.n_cells)
    inside = np.bincount(frags["cell"], weights=hits, minlength=sample.n_cells).astype(np.int64)
    return total, inside


def test_embed_puts_the_fragment_qc_in_obs_and_qc_draws_it(tmp_path):
    record = json.loads((DEMO_MODEL_DIR / "synthetic.json").read_text())
    design = synthetic.make_design(synthetic.DesignSpec(**record["design"]))
    spec = synthetic.CellSpec(**{**record["eval_cells"], "n_cells": 30, "seed": 404})
    sample = synthetic.sample_cells(design, spec)
    path = sample.write_fragments(tmp_path / "cells.tsv.gz")
    adata = tl.embed(path, "demo", progress=False)
    total, inside = in_universe_oracle(sample)
    row = {b: i for i, b in enumerate(sample.barcodes)}
    order = np.array([row[name] for name in adata.obs_names])
    obs = adata.obs
    np.testing.assert_array_equal(obs["n_fragments"], total[order])
    np.testing.assert_array_equal(obs["n_fragments_in_universe"], inside[order])
    np.testing.assert_allclose(obs["frac_in_universe"], inside[order] / total[order])
    lengths = np.asarray(obs["atacformer_n_tokens"])
    np.testing.assert_array_equal(obs["n_tokens"], lengths)  # every cell overlaps something
    threshold = int(np.median(total))
    fig = pl.qc(adata, min_fragments=threshold, min_frac=0.5)
    expected = int(np.sum((total >= threshold) & (inside / total >= 0.5)))
    assert fig.axes[0].get_title() == f"{expected} of 30 cells pass"
    plt.close(fig)


def test_several_fragment_files_keep_their_qc(tmp_path):
    record = json.loads((DEMO_MODEL_DIR / "synthetic.json").read_text())
    design = synthetic.make_design(synthetic.DesignSpec(**record["design"]))
    paths, truth = [], []
    for name, seed in (("s1", 606), ("s2", 607)):
        spec = synthetic.CellSpec(**{**record["eval_cells"], "n_cells": 8, "seed": seed})
        sample = synthetic.sample_cells(design, spec)
        paths.append(sample.write_fragments(tmp_path / f"{name}.tsv.gz"))
        total, inside = in_universe_oracle(sample)
        truth += [
            (f"{name}#{b}", int(t), int(i))
            for b, t, i in zip(sample.barcodes, total, inside, strict=True)
        ]
    adata = tl.embed(paths, "demo", progress=False)
    got = list(
        zip(
            adata.obs_names,
            adata.obs["n_fragments"].tolist(),
            adata.obs["n_fragments_in_universe"].tolist(),
            strict=True,
        )
    )
    assert sorted(got) == sorted(truth)
