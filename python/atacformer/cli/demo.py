"""``atacformer demo``: the whole pipeline offline on fresh synthetic cells, with a score.

Its steps are the library's: ``pp.tokenize``, ``tl.embed``, ``tl.cluster``, ``pl.embedding``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import pl, pp, tl
from .._atomic import refuse_overwriting_inputs
from .._deps import importable, require_all
from ..exceptions import AtacformerIOError
from ..hub import DEMO_NAME, load_model, resolve_pretrained
from ..tokenizers import Tokenizer
from ._common import (
    MAX_THREADS,
    CommandLineError,
    at_least,
    at_most,
    bars_enabled,
    set_threads,
    summary,
    use_agg,
    write_h5ad,
)

DEMO_FRAGMENTS = "demo_fragments.tsv.gz"
DEMO_EMBEDDINGS = "demo_embeddings.h5ad"
DEMO_PLOT = "demo_cells.png"
DEFAULT_OUT = "atacformer-demo"
"""The folder the demo writes into when --out is not given."""

EXAMPLES = """\
examples:
  atacformer demo --out demo_run --cells 200"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole pipeline offline on synthetic cells, with a score",
        description="Run everything offline with the bundled demo model: generate held-out\n"
        "synthetic cells (types with their own accessible peaks over hg38), write their 10x\n"
        "fragment file, tokenize it, embed the cells, cluster them with KMeans (k = number of\n"
        "types), print the adjusted Rand index against the true types and the time of each\n"
        "step, and draw a PNG. Files go into --out (default: a new folder ./atacformer-demo):\n"
        f"{DEMO_FRAGMENTS}, {DEMO_EMBEDDINGS} and {DEMO_PLOT}.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output folder, made if needed (default: ./{DEFAULT_OUT})",
    )
    p.add_argument("--model", default=DEMO_NAME, help="a model trained on atacformer.synthetic")
    p.add_argument("--cells", type=int, default=600, help="number of cells (default 600)")
    p.add_argument("--seed", type=int, default=2024, help="seed of the held-out cells")
    p.add_argument("--threads", type=int, metavar="N", help="threads for tokenizing and the model")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the results")
    p.set_defaults(func=run)


class _Steps:
    """Times the demo's steps and prints one line per step as it ends."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """Yields a list to which the step appends its one-line result."""
        note: list[str] = []
        started = time.perf_counter()
        yield note
        self.seconds[name] = time.perf_counter() - started
        if not self.quiet:
            n = len(self.seconds)
            print(f"  {n}. {name:<9} {self.seconds[name]:6.2f} s  {' '.join(note)}", flush=True)


def demo_record(folder: Path) -> dict[str, Any]:
    """The generator settings stored with a model trained on synthetic data."""
    path = folder / "synthetic.json"
    if not path.is_file():
        raise CommandLineError(
            f"{folder} has no synthetic.json: the demo needs a model trained on "
            "atacformer.synthetic data (such as the bundled 'demo')"
        )
    record = json.loads(path.read_text())
    if not {"design", "eval_cells", "train_cells"} <= record.keys():
        raise CommandLineError(f"{path}: expected design, train_cells and eval_cells")
    return record


def lsi_baseline(counts: Any, k: int, n_components: int = 30, seed: int = 0) -> np.ndarray:
    """KMeans labels from latent semantic indexing of a cells x peaks matrix: binarised
    TF-IDF, truncated SVD without its first (depth) component, unit-length rows."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    binary = (counts > 0).astype(np.float32)
    tf = normalize(binary, norm="l1", axis=1)
    idf = np.log1p(binary.shape[0] / (1.0 + np.asarray(binary.sum(axis=0)).ravel()))
    tfidf = tf.multiply(idf[None, :]).tocsr()
    tfidf.data = np.log1p(tfidf.data * 1e4)
    n_components = min(n_components, min(tfidf.shape) - 1)
    svd = TruncatedSVD(n_components=n_components, random_state=seed).fit_transform(tfidf)
    lsi = normalize(svd[:, 1:])
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(lsi)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    at_least(args, "cells", 10)
    at_least(args, "seed", 0)
    at_least(args, "threads", 1)
    at_most(args, "threads", MAX_THREADS)
    torch, _, _ = require_all(["torch", "transformers", "sklearn"], "the demo", "atacformer[cli]")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise CommandLineError(f"--out {out}: a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AtacformerIOError(
            e.errno, f"cannot make the output folder: {e.strerror}", str(out)
        ) from e
    set_threads(args.threads, torch)
    from sklearn.metrics import adjusted_rand_score

    from .. import synthetic

    folder = resolve_pretrained(args.model)
    model_files = [p for p in folder.iterdir() if p.is_file()]
    for name in (DEMO_FRAGMENTS, DEMO_EMBEDDINGS, DEMO_PLOT):
        refuse_overwriting_inputs(out / name, model_files)
    record = demo_record(folder)
    design_spec = synthetic.DesignSpec(**record["design"])
    cell_spec = synthetic.CellSpec(
        **{**record["eval_cells"], "n_cells": args.cells, "seed": args.seed}
    )
    train_seed = record["train_cells"].get("seed")
    steps = _Steps(args.quiet)
    if not args.quiet:
        print(
            f"atacformer demo: {args.cells:,} held-out synthetic cells (seed {args.seed}; "
            f"the model was trained on seed {train_seed}), model {args.model}",
            flush=True,
        )
    if args.seed == train_seed:
        print("  note: --seed is the training seed, so these cells are not held out")

    with steps.step("generate") as note:
        design = synthetic.make_design(design_spec)
        sample = synthetic.sample_cells(design, cell_spec)
        note.append(
            f"{sample.n_cells:,} cells of {len(design.type_names)} types, "
            f"{len(sample.fragments):,} fragments over {design.n_peaks:,} hg38 peaks"
        )
    tokenizer = Tokenizer.from_pretrained(folder)
    universe = tokenizer.universe
    if not (
        np.array_equal(universe.starts, design.starts)
        and np.array_equal(universe.ends, design.ends)
    ):
        raise CommandLineError(f"{folder}: synthetic.json does not rebuild this model's universe")

    with steps.step("write") as note:
        fragments = sample.write_fragments(out / DEMO_FRAGMENTS, level=1)
        note.append(f"{fragments} ({fragments.stat().st_size / 1e6:.1f} MB, BGZF)")

    with steps.step("tokenize") as note:
        cells = pp.tokenize(fragments, tokenizer)
        note.append(f"{len(cells):,} cells, {summary(cells, tokenizer)}")

    with steps.step("embed") as note:
        load_started = time.perf_counter()
        model = load_model(args.model)
        loaded_in = time.perf_counter() - load_started
        adata = tl.embed(cells, model, tokenizer=tokenizer, progress=bars_enabled(args.quiet))
        emb = adata.obsm["X_atacformer"]
        note.append(
            f"{emb.shape[0]:,} x {emb.shape[1]} "
            f"(loading the model: {loaded_in:.2f} s; {torch.get_num_threads()} threads)"
        )

    row = {b: i for i, b in enumerate(sample.barcodes)}
    order = np.array([row[name] for name in cells.names])
    truth = sample.cell_type[order]
    k = len(design.type_names)
    with steps.step("cluster") as note:
        tl.cluster(adata, k)
        clusters = adata.obs["atacformer_cluster"].to_numpy()
        ari = float(adjusted_rand_score(truth, clusters))
        note.append(f"KMeans, k = {k}")

    with steps.step("save") as note:
        # The truth; n_fragments is in obs already, as tl.embed's per-cell QC.
        known = sample.to_anndata().obs.iloc[order][["cell_type", "frip"]]
        known.index = adata.obs_names
        adata.obs = known.join(adata.obs)
        adata.uns["atacformer"].update(cells=json.dumps(cell_spec.__dict__), ari=ari)
        path = out / DEMO_EMBEDDINGS
        write_h5ad(path, adata)
        note.append(str(path))

    written = [DEMO_FRAGMENTS, DEMO_EMBEDDINGS]
    plot = not args.no_plot
    if plot and not importable("matplotlib"):
        plot = False
        print("  (no plot: matplotlib is not installed; pip install matplotlib)")
    if plot:
        with steps.step("plot") as note:
            plt = use_agg()
            _, method = pl.map_2d(adata)
            figure = pl.embedding(
                adata, color=["cell_type", "atacformer_cluster"], save=out / DEMO_PLOT
            )
            plt.close(figure)
            note.append(f"{out / DEMO_PLOT} ({method})")
        written.append(DEMO_PLOT)

    total = time.perf_counter() - started
    baseline = float(adjusted_rand_score(truth, lsi_baseline(sample.count_matrix()[order], k)))
    print(f"adjusted Rand index (KMeans on the embeddings vs the true types): {ari:.3f}")
    if not args.quiet:
        print(f"for reference, LSI of the peak matrix + KMeans: {baseline:.3f}")
        print(
            f"total {total:.1f} s (importing torch included); wrote {', '.join(written)} "
            f"in {out.resolve()}"
        )
    return 0
