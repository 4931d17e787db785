"""Label transfer on synthetic cells embedded by the demo model: how often it is right.

Run: ``python benches/bench_label_transfer.py [--reference N] [--query N] [--seeds K]
[--pynndescent]``. For each of K seed pairs it draws a fresh reference (the demo's 6 types
less type_B and type_D, one of each of two lineages, so each missing type has a sister in
the reference) and a fresh query of all 6 types, embeds both with the demo model, runs
``atacformer.tl.transfer_labels`` with its defaults and prints a markdown table:

- accuracy on the 4 shared types (a shared-type cell called Unknown counts as wrong);
- the share of shared-type cells called Unknown;
- the share of unseen-type cells (type_B, type_D) called Unknown;
- the same with agreement alone (``min_confidence=0`` keeps every vote: what a plain kNN
  classifier would say).

``--pynndescent`` also runs ``method="pynndescent"`` on the first seed and reports how many
labels differ from the exact search (its first call compiles with numba: minutes).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _data import machine

from atacformer import synthetic, tl
from atacformer.hub import DEMO_MODEL_DIR

HELD_OUT = ("type_B", "type_D")


def cells(n_cells: int, seed: int):
    record = json.loads((DEMO_MODEL_DIR / "synthetic.json").read_text())
    design = synthetic.make_design(synthetic.DesignSpec(**record["design"]))
    spec = synthetic.CellSpec(**{**record["eval_cells"], "n_cells": n_cells, "seed": seed})
    return synthetic.sample_cells(design, spec).to_anndata()


def scores(query, key: str, shared: set[str]) -> tuple[float, float, float]:
    labels = query.obs[key].astype(str).to_numpy()
    truth = query.obs["cell_type"].astype(str).to_numpy()
    is_shared = np.isin(truth, list(shared))
    return (
        float(np.mean(labels[is_shared] == truth[is_shared])),
        float(np.mean(labels[is_shared] == tl.UNKNOWN_LABEL)),
        float(np.mean(labels[~is_shared] == tl.UNKNOWN_LABEL)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=int, default=1200, help="reference cells drawn")
    parser.add_argument("--query", type=int, default=600, help="query cells")
    parser.add_argument("--seeds", type=int, default=3, help="seed pairs")
    parser.add_argument("--pynndescent", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(
        f"demo model; reference {args.reference} cells drawn, less {', '.join(HELD_OUT)}; "
        f"query {args.query} cells of all 6 types; n_neighbors 15, min_confidence 0.5\n"
    )
    print(
        "| seeds (ref, query) | ref cells | accuracy, shared | shared called Unknown "
        "| unseen called Unknown | unseen Unknown, vote only | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = []
    for i in range(args.seeds):
        ref_seed, query_seed = 1000 + 2 * i, 1001 + 2 * i
        started = time.perf_counter()
        reference = cells(args.reference, ref_seed)
        reference = reference[~reference.obs["cell_type"].isin(HELD_OUT).to_numpy()].copy()
        query = cells(args.query, query_seed)
        tl.embed(reference, "demo", progress=False)
        tl.embed(query, "demo", progress=False)
        shared = set(reference.obs["cell_type"].astype(str))
        tl.transfer_labels(reference, query, "cell_type")
        accuracy, shared_unknown, unseen_unknown = scores(query, "atacformer_label", shared)
        tl.transfer_labels(reference, query, "cell_type", key_added="vote", min_confidence=0.0)
        _, _, vote_unknown = scores(query, "vote", shared)
        seconds = time.perf_counter() - started
        rows.append((accuracy, shared_unknown, unseen_unknown))
        print(
            f"| {ref_seed}, {query_seed} | {reference.n_obs} | {accuracy:.3f} "
            f"| {shared_unknown:.3f} | {unseen_unknown:.3f} | {vote_unknown:.3f} "
            f"| {seconds:.0f} |",
            flush=True,
        )
        if args.pynndescent and i == 0:
            started = time.perf_counter()
            tl.transfer_labels(reference, query, "cell_type", key_added="nnd", method="pynndescent")
            differ = int(
                np.sum(query.obs["nnd"].astype(str) != query.obs["atacformer_label"].astype(str))
            )
            pynn = f"pynndescent: {differ} of {query.n_obs} labels differ from the exact search"
            pynn += f" ({time.perf_counter() - started:.0f} s with numba compilation)"
    table = np.asarray(rows)
    print(
        f"\nmin over seeds: accuracy {table[:, 0].min():.3f}, shared Unknown "
        f"{table[:, 1].max():.3f} (max), unseen Unknown {table[:, 2].min():.3f}"
    )
    if args.pynndescent:
        print(pynn)


if __name__ == "__main__":
    main()
