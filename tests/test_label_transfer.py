"""Label transfer (``atacformer.tl.transfer_labels``, ``atacformer annotate``): hand-checked
neighbours on the unit circle, the errors, and synthetic cells embedded by the demo model."""

from __future__ import annotations

import contextlib
import json
import math
import re
import shlex
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import atacformer as af
from atacformer import synthetic, tl
from atacformer.cli import main
from atacformer.hub import DEMO_MODEL_DIR


def circle(degrees) -> np.ndarray:
    """Unit vectors at these angles: their cosine distance is ``1 - cos(difference)``."""
    rad = np.radians(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def cosine_distance(a_deg: float, b_deg: float) -> float:
    return 1.0 - math.cos(math.radians(a_deg - b_deg))


def embedded(vectors, labels=None, model="demo", **record) -> ad.AnnData:
    """An AnnData with ``obsm["X_atacformer"]`` and the record ``tl.embed`` writes."""
    vectors = np.asarray(vectors)
    obs = pd.DataFrame(index=[f"c{i}" for i in range(len(vectors))])
    if labels is not None:
        obs["cell_type"] = labels
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_atacformer"] = vectors
    adata.uns["atacformer"] = {
        "model": model,
        "key_added": "X_atacformer",
        "hidden_size": vectors.shape[1],
        **record,
    }
    return adata


# ---------------------------------------------------------------- hand-checked neighbours


def test_agreeing_close_neighbours_give_full_confidence():
    # a at 0, 2, 4, 6 degrees; b at 90, 92, 94, 96. The query at 3 degrees has the a cells at
    # 2 and 4 degrees as its 2 neighbours (1 degree away, closer than any reference cell is
    # to its own neighbours), so it is a with confidence 1. The one at 93 degrees is b.
    reference = embedded(circle([0, 2, 4, 6, 90, 92, 94, 96]), ["a"] * 4 + ["b"] * 4)
    query = embedded(circle([3, 93]))
    tl.transfer_labels(reference, query, "cell_type", n_neighbors=2)
    assert list(query.obs["atacformer_label"]) == ["a", "b"]
    assert query.obs["atacformer_label_confidence"].tolist() == [1.0, 1.0]
    assert list(query.obs["atacformer_label"].cat.categories) == ["a", "b", "Unknown"]


def test_a_far_cell_is_unknown_even_when_its_neighbours_agree():
    # The query at 45 degrees: its 2 nearest are the a cells at 6 and 4 degrees (39 and 41
    # degrees away), both a; but it is further from them than any reference cell from its own
    # neighbours (at most 4 degrees), so closeness is 0 and so is the confidence.
    reference = embedded(circle([0, 2, 4, 6, 90, 92, 94, 96]), ["a"] * 4 + ["b"] * 4)
    query = embedded(circle([45]))
    tl.transfer_labels(reference, query, "cell_type", n_neighbors=2, min_confidence=0.1)
    assert list(query.obs["atacformer_label"]) == ["Unknown"]
    assert query.obs["atacformer_label_confidence"].tolist() == [0.0]


def test_split_votes_are_weighted_by_inverse_distance():
    # a at 0, 1, 2 degrees, b at 3, 4, 5. The query at 2.4 degrees has neighbours 2 (a, 0.4
    # degrees away) and 3 (b, 0.6 away). Weights are 1 / distance and, for small angles, the
    # distance 1 - cos(x) is close to x^2 / 2: a's share is 0.6^2 / (0.4^2 + 0.6^2) = 9/13.
    reference = embedded(circle([0, 1, 2, 3, 4, 5]), ["a"] * 3 + ["b"] * 3)
    query = embedded(circle([2.4]))
    d_a, d_b = cosine_distance(2.4, 2), cosine_distance(2.4, 3)
    share = (1 / d_a) / (1 / d_a + 1 / d_b)
    assert share == pytest.approx(9 / 13, rel=1e-4)
    tl.transfer_labels(reference, query, "cell_type", n_neighbors=2)
    assert list(query.obs["atacformer_label"]) == ["a"]
    assert query.obs["atacformer_label_confidence"].iloc[0] == pytest.approx(share, rel=1e-5)
    tl.transfer_labels(reference, query, "cell_type", n_neighbors=2, min_confidence=0.7)
    assert list(query.obs["atacformer_label"]) == ["Unknown"]
    assert query.obs["atacformer_label_confidence"].iloc[0] == pytest.approx(share, rel=1e-5)


def test_closeness_is_the_tail_share_of_the_labels_own_distances():
    # 100 pairs of a cells: pair i at base_i and base_i + 0.01 * i degrees, pairs 2.5 degrees
    # apart, so every cell's nearest other cell is its mate, 0.01 * i degrees away. A query at
    # -h degrees has the cell at 0 degrees as its nearest, h away. The share p of the 200
    # cells whose own distance is at least the query's is 2 * #{i : 0.01 * i >= h} / 200, and
    # the confidence is min(1, p / 0.05):
    #   h = 0.955: i = 96..100 -> p = 0.05 -> 1;  h = 0.975: i = 98..100 -> 0.03 -> 0.6;
    #   h = 0.985: i = 99, 100 -> 0.02 -> 0.4;    h = 1.005: none -> 0.
    bases = 2.5 * np.arange(100)
    gaps = 0.01 * np.arange(1, 101)
    reference = embedded(circle(np.concatenate([bases, bases + gaps])), ["a"] * 200)
    query = embedded(circle([-0.955, -0.975, -0.985, -1.005]))
    tl.transfer_labels(reference, query, "cell_type", n_neighbors=1, min_confidence=0.5)
    confidence = query.obs["atacformer_label_confidence"].to_numpy()
    np.testing.assert_allclose(confidence, [1.0, 0.6, 0.4, 0.0], atol=1e-6)
    assert list(query.obs["atacformer_label"]) == ["a", "a", "Unknown", "Unknown"]


def test_a_small_label_is_calibrated_against_the_whole_reference():
    # b: 30 cells every 10 degrees from 40 to 330 (own distance 10 degrees). a: cells one
    # degree apart from 0 (own distance 1 degree). A query at -5 degrees has the a cell at 0
    # as its nearest (5 degrees; b at 330 is 35 away).
    # - With 3 a cells (fewer than MIN_CALIBRATION_CELLS) it is compared with all 33 cells:
    #   the 30 b cells are at least 5 degrees from their neighbours, p = 30/33, closeness 1.
    # - With 20 a cells, only with them: none is 5 degrees from its neighbour, closeness 0.
    # A query at -12 degrees (a at 0 is 12 away, b at 330 18) is further than every cell is
    # from its own neighbour: 0 either way.
    assert 3 < tl.MIN_CALIBRATION_CELLS <= 20
    b = 40.0 + 10.0 * np.arange(30)
    query_angles = [-5, -12]
    for n_a, expected in ((3, ["a", "Unknown"]), (20, ["Unknown", "Unknown"])):
        angles = np.concatenate([np.arange(n_a, dtype=float), b])
        reference = embedded(circle(angles), ["a"] * n_a + ["b"] * 30)
        query = embedded(circle(query_angles))
        tl.transfer_labels(reference, query, "cell_type", n_neighbors=1, min_confidence=0.5)
        assert list(query.obs["atacformer_label"]) == expected, n_a
        want = [1.0 if label == "a" else 0.0 for label in expected]
        np.testing.assert_allclose(query.obs["atacformer_label_confidence"], want)


def test_unlabelled_reference_cells_do_not_vote():
    # The reference cell at 1 degree has no label; the query at 1 degree must take its label
    # from the labelled cells (a at 0 and 2 degrees), not from the unlabelled one.
    reference = embedded(circle([0, 1, 2, 60, 61, 62]), ["a", None, "a", "b", "b", "b"])
    query = embedded(circle([1]))
    tl.transfer_labels(reference, query, "cell_type", n_neighbors=2)
    assert list(query.obs["atacformer_label"]) == ["a"]
    assert query.uns["atacformer"]["atacformer_label"]["n_reference_cells"] == 5


def test_duplicate_reference_cells_keep_their_neighbours_apart_from_themselves():
    # Three copies of one point: each copy's nearest other cells are the two other copies,
    # at distance 0, whichever order the search returns them in.
    distances = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    indices = np.array([[1, 0, 2], [0, 2, 1], [2, 0, 1]])
    kept = tl._drop_self(indices, distances)
    np.testing.assert_array_equal(kept, [[0.0, 0.0], [0.0, 0.0], [0.0, 0.5]])
    # A row whose own index was pushed out by duplicates loses its last entry instead.
    kept = tl._drop_self(np.array([[1, 2, 3], [1, 0, 2], [0, 1, 3], [3, 0, 1]]), np.ones((4, 3)))
    assert kept.shape == (4, 2)


def test_labels_keep_the_references_categories_and_settings_are_recorded():
    labels = pd.Categorical(["b"] * 3 + ["a"] * 3, categories=["b", "a", "c"])
    reference = embedded(circle([0, 1, 2, 60, 61, 62]), labels)
    query = embedded(circle([1, 61]))
    tl.transfer_labels(reference, query, "cell_type", key_added="pred", n_neighbors=2)
    assert list(query.obs["pred"]) == ["b", "a"]
    assert list(query.obs["pred"].cat.categories) == ["b", "a", "c", "Unknown"]
    assert query.obs["pred_confidence"].dtype == np.float32
    record = query.uns["atacformer"]["pred"]
    assert record["label_key"] == "cell_type" and record["n_neighbors"] == 2
    assert record["method"] == "brute"


# ----------------------------------------------------------------------------- errors


def two_sides(**query_record):
    reference = embedded(circle([0, 1, 2, 60, 61, 62]), ["a"] * 3 + ["b"] * 3)
    query = embedded(circle([1]), **query_record)
    return reference, query


def test_different_models_are_refused_naming_both():
    reference, query = two_sides(model="org/other-model")
    with pytest.raises(af.InvalidInputError, match="demo.*org/other-model"):
        tl.transfer_labels(reference, query, "cell_type", n_neighbors=2)
    assert "atacformer_label" not in query.obs
    reference, query = two_sides(universe_id="abc")
    reference.uns["atacformer"]["universe_id"] = "def"
    with pytest.raises(af.InvalidInputError, match="universe_id differs"):
        tl.transfer_labels(reference, query, "cell_type", n_neighbors=2)


def test_the_same_model_under_two_spellings_is_accepted():
    reference, query = two_sides(model=str(DEMO_MODEL_DIR))  # "demo" is this folder
    tl.transfer_labels(reference, query, "cell_type", n_neighbors=2)
    assert list(query.obs["atacformer_label"]) == ["a"]


def test_embeddings_without_a_record_are_used_with_a_warning():
    reference, query = two_sides()
    del query.uns["atacformer"]
    with pytest.warns(UserWarning, match="query has no record"):
        tl.transfer_labels(reference, query, "cell_type", n_neighbors=2)
    assert list(query.obs["atacformer_label"]) == ["a"]


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (None, {"label_key": "nope"}, "no obs column 'nope' \\(have: cell_type\\)"),
        ("no_query_rep", {}, "query has no obsm\\['X_atacformer'\\].*tl.embed"),
        ("no_reference_rep", {}, "reference has no obsm"),
        ("wide_query", {}, "2 dimensions and the query's 3"),
        ("nan_query", {}, "non-finite"),
        ("unknown_label", {}, "labelled 'Unknown'"),
        (None, {"n_neighbors": 0}, "n_neighbors must be an integer from 1 to 5"),
        (None, {"n_neighbors": 6}, "from 1 to 5 \\(the 6 labelled reference cells"),
        (None, {"n_neighbors": True}, "n_neighbors"),
        (None, {"n_neighbors": 2.0}, "n_neighbors"),
        (None, {"min_confidence": 1.5}, "min_confidence must be a number from 0 to 1"),
        (None, {"min_confidence": float("nan")}, "min_confidence"),
        (None, {"method": "annoy"}, "method must be one of auto, brute, pynndescent"),
        (None, {"key_added": ""}, "key_added"),
    ],
)
def test_bad_input_is_a_clear_error(change, kwargs, message):
    reference, query = two_sides()
    if change == "no_query_rep":
        del query.obsm["X_atacformer"]
    elif change == "no_reference_rep":
        del reference.obsm["X_atacformer"]
    elif change == "wide_query":
        query.obsm["X_atacformer"] = np.ones((1, 3))
        query.uns["atacformer"]["hidden_size"] = 3
    elif change == "nan_query":
        query.obsm["X_atacformer"] = np.array([[np.nan, 1.0]])
    elif change == "unknown_label":
        reference.obs["cell_type"] = ["a", "a", "Unknown", "b", "b", "b"]
    options = {"label_key": "cell_type", "n_neighbors": 2, **kwargs}
    with pytest.raises(af.InvalidInputError, match=message):
        tl.transfer_labels(reference, query, **options)


def test_non_anndata_is_a_type_error():
    reference, _ = two_sides()
    with pytest.raises(af.AtacformerTypeError, match="query must be an AnnData"):
        tl.transfer_labels(reference, np.zeros((2, 2)), "cell_type")


# ------------------------------------------------- synthetic cells and the demo model

HELD_OUT = ("type_B", "type_D")
"""Types the reference lacks: one of each of two lineages, so each has a sister type there."""
ACCURACY_MIN = 0.9
"""Required by the issue: accuracy on the types both sides share."""
UNKNOWN_MIN = 0.7
"""benches/bench_label_transfer.py (1,200 reference cells drawn, 600 query cells, three seed
pairs; README "Label transfer") measured 0.918 to 0.957; this test's smaller sample (about
210 reference and 160 query cells) spreads wider, so the floor sits below that."""


CLI_CELLS = 50
"""Query cells that the command-line test embeds (a few: embedding is the slow part)."""


def synthetic_cells(n_cells: int, seed: int) -> ad.AnnData:
    """Cells x peaks counts of fresh synthetic cells over the demo model's universe."""
    record = json.loads((DEMO_MODEL_DIR / "synthetic.json").read_text())
    design = synthetic.make_design(synthetic.DesignSpec(**record["design"]))
    spec = synthetic.CellSpec(**{**record["eval_cells"], "n_cells": n_cells, "seed": seed})
    return synthetic.sample_cells(design, spec).to_anndata()


@pytest.fixture(scope="module")
def atlas(tmp_path_factory, one_torch_thread_module):
    """An embedded reference of 4 of the 6 types and an unembedded query of all 6, written
    as .h5ad files, plus the query embedded in memory."""
    folder = tmp_path_factory.mktemp("atlas")
    reference = synthetic_cells(320, seed=301)
    reference = reference[~reference.obs["cell_type"].isin(HELD_OUT).to_numpy()].copy()
    query = synthetic_cells(160, seed=302)
    query[:CLI_CELLS].copy().write_h5ad(
        folder / "query.h5ad"
    )  # the command line embeds these again
    tl.embed(reference, "demo", progress=False)
    reference.write_h5ad(folder / "atlas.h5ad")
    tl.embed(query, "demo", progress=False)
    return folder, reference, query


@pytest.fixture(scope="module")
def one_torch_thread_module():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def scores(labels, truth, shared) -> tuple[float, float]:
    """Accuracy on the shared types (Unknown counts as wrong) and the share of unseen-type
    cells called Unknown."""
    labels, truth = np.asarray(labels, dtype=str), np.asarray(truth, dtype=str)
    is_shared = np.isin(truth, list(shared))
    accuracy = float(np.mean(labels[is_shared] == truth[is_shared]))
    unknown = float(np.mean(labels[~is_shared] == tl.UNKNOWN_LABEL))
    return accuracy, unknown


def test_synthetic_unseen_types_are_unknown_and_shared_ones_right(atlas):
    _, reference, query = atlas
    shared = set(reference.obs["cell_type"].astype(str))
    assert shared.isdisjoint(HELD_OUT) and len(shared) == 4
    assert set(query.obs["cell_type"].astype(str)) >= set(HELD_OUT)
    tl.transfer_labels(reference, query, "cell_type")
    accuracy, unknown = scores(query.obs["atacformer_label"], query.obs["cell_type"], shared)
    assert accuracy >= ACCURACY_MIN, accuracy
    assert unknown >= UNKNOWN_MIN, unknown
    # The vote alone cannot tell: the unseen types' neighbours agree as much as anyone's.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tl.transfer_labels(reference, query, "cell_type", key_added="vote", min_confidence=0.0)
    _, unknown_by_vote = scores(query.obs["vote"], query.obs["cell_type"], shared)
    assert unknown_by_vote == 0.0


def test_cli_annotate_embeds_the_query_and_writes_it(atlas, capsys):
    folder, _, query = atlas
    embedded_query = query[:CLI_CELLS].copy()
    out = folder / "labelled.h5ad"
    status = main(
        [
            "annotate",
            str(folder / "query.h5ad"),
            "--reference",
            str(folder / "atlas.h5ad"),
            "--label-key",
            "cell_type",
            "--model",
            "demo",
            "-o",
            str(out),
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert f"{CLI_CELLS} cells labelled from" in printed and "(embedded: query)" in printed
    labelled = ad.read_h5ad(out)
    assert labelled.n_vars == 10_000  # the query's own matrix is kept
    np.testing.assert_allclose(
        labelled.obsm["X_atacformer"], embedded_query.obsm["X_atacformer"], atol=1e-5
    )
    tl.transfer_labels(ad.read_h5ad(folder / "atlas.h5ad"), embedded_query, "cell_type")
    assert list(labelled.obs["atacformer_label"]) == list(embedded_query.obs["atacformer_label"])
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temp left


def test_cli_annotate_errors_are_one_line(atlas, capsys, tmp_path):
    folder, _, _ = atlas
    base = ["annotate", str(folder / "query.h5ad"), "--reference", str(folder / "atlas.h5ad")]
    out = ["-o", str(tmp_path / "x.h5ad")]
    cases = [
        (["--label-key", "nope", "--model", "demo", *out], "--label-key 'nope'"),
        (["--label-key", "cell_type", *out], "the query has no obsm\\['X_atacformer'\\]"),
        (["--label-key", "cell_type", "--min-confidence", "2", *out], "--min-confidence"),
        (["--label-key", "cell_type", "--n-neighbors", "0", *out], "--n-neighbors"),
        (
            ["--label-key", "cell_type", "--model", "org/other", *out],
            "the reference was embedded by 'demo', not by --model org/other",
        ),
        (
            ["--label-key", "cell_type", "-o", str(folder / "atlas.h5ad")],
            "atlas.h5ad",
        ),
    ]
    for extra, message in cases:
        assert main(base + extra) == 1
        err = capsys.readouterr().err
        assert err.startswith("atacformer annotate: error:") and err.count("\n") == 1, err
        assert re.search(message, err), err
    assert not (tmp_path / "x.h5ad").exists()


def test_every_annotate_help_example_runs(atlas, capsys):
    folder, _, _ = atlas
    with pytest.raises(SystemExit):
        main(["annotate", "--help"])
    text = capsys.readouterr().out
    lines = [line.strip() for line in text.split("examples:\n", 1)[1].splitlines()]
    examples = [shlex.split(line) for line in lines if line.startswith("atacformer annotate ")]
    assert len(examples) == 2
    record = json.loads((DEMO_MODEL_DIR / "synthetic.json").read_text())
    design = synthetic.make_design(synthetic.DesignSpec(**record["design"]))
    spec = synthetic.CellSpec(**{**record["eval_cells"], "n_cells": 30, "seed": 303})
    synthetic.sample_cells(design, spec).write_fragments(folder / "fragments.tsv.gz")
    with contextlib.chdir(folder):
        for argv in examples:
            assert main(argv[1:]) == 0, argv
            out = Path(argv[argv.index("-o") + 1])
            labelled = ad.read_h5ad(out)
            assert "atacformer_label" in labelled.obs and labelled.n_obs > 0, argv
    capsys.readouterr()
