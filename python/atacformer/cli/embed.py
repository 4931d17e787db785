"""``atacformer embed``: INPUT -> cell embeddings (``.h5ad``, ``.npy``, ``.parquet``), by
``pp.tokenize``, ``tl.embed``, ``tl.cluster`` and ``pl.embedding``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import pl, pp, tl
from .._atomic import atomic_path
from .._deps import require
from .._sources import detect_source
from .._stdin import spool_for_command
from .._stream import is_atlas
from ..hub import load_model
from ._common import (
    CommandLineError,
    activity,
    add_hub_options,
    add_input_options,
    at_least,
    bars_enabled,
    check_input_kind,
    check_input_options,
    check_output,
    coverage_line,
    hub_options,
    load_tokenizer,
    refuse_inputs,
    say,
    set_threads,
    tokenize_options,
    use_agg,
    write_bytes,
    write_h5ad,
)

EXAMPLES = """\
examples:
  atacformer embed fragments.tsv.gz --model demo -o cells.h5ad --plot cells.png
  atacformer embed cells.atok --model databio/atacformer-base-hg38 -o emb.npy
  atacformer embed pbmc.h5ad --model ./my_model -o out.h5ad --plot out.png --color-by cell_type
  torchrun --nproc-per-node 4 -m atacformer embed atlas.h5ad --model M --device cuda -o emb.h5ad"""

OUTPUT_SUFFIXES = (".h5ad", ".npy", ".parquet")
EMBEDDING_KEY = "X_atacformer"
CLUSTER_KEY = "atacformer_cluster"
DEFAULT_CLUSTERS = 8


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "embed",
        help="cell embeddings from an Atacformer model (.h5ad, .npy, .parquet)",
        description="Tokenize INPUT (or read an .atok) and embed every cell with an Atacformer\n"
        "model: the mean of the encoder's token outputs, [n_cells, hidden] float32.\n"
        "OUT is chosen by its suffix:\n"
        "  .h5ad     obsm['X_atacformer'], obs from an .h5ad input (else cell names),\n"
        "            plus obs['atacformer_n_tokens'], the per-cell QC (n_fragments,\n"
        "            frac_in_universe, ...; see atacformer.pl.qc) and obs['atacformer_cluster']\n"
        "  .npy      the matrix alone, rows in the input's cell order\n"
        "  .parquet  a 'cell' column, then atacformer_0 ... atacformer_{hidden-1}\n"
        "A tokenized atlas (.h5ad from `atacformer tokenize --manifest`) is read in blocks\n"
        "of cells and never loaded whole; with an .h5ad OUT each finished block is kept in\n"
        "OUT.partial/, so rerunning a killed command resumes. Under torchrun (or accelerate\n"
        "launch) the blocks are shared among the processes and rank 0 writes OUT:\n"
        "  atacformer embed atlas.h5ad --model M -o embeddings.h5ad",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(p)
    p.add_argument(
        "--model",
        required=True,
        metavar="NAME_OR_PATH",
        help="a Hub repo id, a local model folder, or 'demo' (the bundled model)",
    )
    p.add_argument(
        "--tokenizer",
        metavar="NAME_OR_PATH",
        help="a tokenizer other than the model's own (it must have the same vocabulary)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help=".h5ad, .npy or .parquet")
    g = p.add_argument_group("the model")
    g.add_argument("--batch-size", type=int, default=64, help="cells per batch (default 64)")
    g.add_argument("--device", help="torch device: cpu, cuda, cuda:1, mps (default: the CPU)")
    g.add_argument("--dtype", choices=tl.DTYPES, default="float32", help="compute dtype")
    g.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="keep a seeded random subset of N tokens of longer cells (default: the model's "
        "context when it uses positions, else no limit)",
    )
    g.add_argument(
        "--block-size",
        type=int,
        metavar="N",
        help="atlas input: cells per block, the unit of resuming and of sharing among "
        "processes (default 4096)",
    )
    g.add_argument(
        "--allow-empty",
        action="store_true",
        help="embed even when no cell overlaps the universe (by default that is an error)",
    )
    g = p.add_argument_group("clusters and plot")
    g.add_argument(
        "--plot", metavar="FILE.png", help="draw a 2-D map (UMAP if installed, else PCA)"
    )
    g.add_argument("--color-by", metavar="COLUMN", help="colour the plot by this obs column")
    g.add_argument(
        "--n-clusters",
        type=int,
        metavar="K",
        help=f"KMeans clusters to store and to colour by (default {DEFAULT_CLUSTERS} when "
        "plotting)",
    )
    add_hub_options(p)
    p.set_defaults(func=run)


def check_options(args: argparse.Namespace) -> None:
    """Every numeric option, before anything heavy is imported."""
    check_input_options(args)
    args.inputs, args.format = spool_for_command(args.inputs, args.format)  # "-": stdin
    at_least(args, "batch_size", 1)
    at_least(args, "max_tokens", 1)
    at_least(args, "n_clusters", 2)
    at_least(args, "block_size", 1)


def run(args: argparse.Namespace) -> int:
    check_options(args)
    source = detect_source(args.inputs, args.format)
    check_input_kind(args, source.kind)
    out = check_output(Path(args.output), OUTPUT_SUFFIXES)
    refuse_inputs(out, args, args.model, args.tokenizer)
    if args.plot:
        plot = check_output(Path(args.plot), (".png",))
        refuse_inputs(plot, args, args.model, args.tokenizer)
        if plot.resolve() == out.resolve():
            raise CommandLineError(f"--plot and -o name the same file, {out}")
        use_agg()
    if args.color_by and source.kind != "h5ad":
        raise CommandLineError("--color-by names an obs column, so it needs an .h5ad input")
    atlas = source.kind == "h5ad" and is_atlas(source.paths[0])
    if atlas and args.layer is not None:
        raise CommandLineError("--layer: a tokenized atlas has its token ids in X only")
    if atlas and getattr(args, "chrom_names", "auto") != "auto":
        raise CommandLineError(
            f"--chrom-names {args.chrom_names}: a tokenized atlas holds token ids already, "
            "so there are no chromosome names to match"
        )
    if args.block_size is not None and not atlas:
        raise CommandLineError("--block-size applies to a tokenized atlas input")
    torch = require("torch", "embedding cells", "atacformer[model]")
    set_threads(args.threads, torch)
    from ..inference import parse_device

    device = parse_device(args.device, "--device")
    with activity("Loading the model", args.quiet):
        model = load_model(args.model, **hub_options(args))
    config = model.config
    if args.max_tokens and config.use_pos_embeddings:
        if args.max_tokens > config.max_position_embeddings:
            raise CommandLineError(
                f"--max-tokens {args.max_tokens} is more than the model's context of "
                f"{config.max_position_embeddings} positions"
            )
    tokenizer = None
    # .atok holds ids already: a --tokenizer given with one is checked against the model.
    if source.kind != "atok" or args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer or args.model, args)
        tl.check_compatible(model, tokenizer)
    if atlas:
        return run_atlas(args, source.paths[0], out, model, tokenizer, device)
    with activity(f"Reading {source.describe()}", args.quiet):
        cells = pp.tokenize(args.inputs, tokenizer, **tokenize_options(args))
    if tokenizer is not None and not args.allow_empty:
        refuse_empty(cells, tokenizer)
    obs = read_obs(source.paths[0]) if source.kind == "h5ad" else None
    if args.color_by and args.color_by not in obs.columns:
        raise CommandLineError(
            f"--color-by {args.color_by!r}: no such obs column "
            f"(have: {', '.join(map(str, obs.columns)) or 'none'})"
        )
    if args.n_clusters is not None and args.n_clusters > len(cells):
        raise CommandLineError(
            f"--n-clusters {args.n_clusters} is more than the {len(cells)} cells"
        )
    started = time.perf_counter()
    adata = tl.embed(
        cells,
        model,
        tokenizer=tokenizer,
        key_added=EMBEDDING_KEY,
        batch_size=args.batch_size,
        device=device,
        dtype=args.dtype,
        max_tokens_per_cell=args.max_tokens,
        progress=bars_enabled(args.quiet),
    )
    seconds = time.perf_counter() - started
    if obs is not None:  # an .h5ad input: keep its obs, in the same row order
        table = obs.copy()
        table.index = table.index.astype(str)
        for name in ("atacformer_n_tokens", *cells.qc):
            table[name] = adata.obs[name].to_numpy()
        adata.obs = table
    adata.uns["atacformer"]["tokenizer"] = args.tokenizer or args.model
    return finish(args, out, adata, seconds, summary=coverage_line(cells))


def run_atlas(
    args: argparse.Namespace, path: Path, out: Path, model: Any, tokenizer: Any, device: Any
) -> int:
    """A tokenized atlas, streamed by ``tl.embed``: resumable into an ``.h5ad`` OUT, spread
    over the processes under torchrun; only rank 0 writes and reports."""
    if args.color_by or args.n_clusters is not None:
        obs = read_obs(path)
        if args.color_by and args.color_by not in obs.columns:
            raise CommandLineError(
                f"--color-by {args.color_by!r}: no such obs column "
                f"(have: {', '.join(map(str, obs.columns)) or 'none'})"
            )
        if args.n_clusters is not None and args.n_clusters > len(obs):
            raise CommandLineError(
                f"--n-clusters {args.n_clusters} is more than the {len(obs)} cells"
            )
    if not args.allow_empty:
        refuse_empty_atlas(path)
    if args.quiet:
        logging.getLogger("atacformer").setLevel(logging.ERROR)
    started = time.perf_counter()
    adata = tl.embed(
        path,
        model,
        tokenizer=tokenizer,
        key_added=EMBEDDING_KEY,
        batch_size=args.batch_size,
        device=device,
        dtype=args.dtype,
        max_tokens_per_cell=args.max_tokens,
        progress=bars_enabled(args.quiet),
        out=out if out.suffix.lower() == ".h5ad" else None,
        block_size=args.block_size,
    )
    if adata is None:  # another rank than 0: rank 0 writes the output
        return 0
    written = out.suffix.lower() == ".h5ad"
    return finish(args, out, adata, time.perf_counter() - started, written)


def finish(
    args: argparse.Namespace,
    out: Path,
    adata: Any,
    seconds: float,
    written: bool = False,
    summary: str = "",
) -> int:
    """Clusters, writes OUT (again, with the clusters, when ``written`` already), reports
    and draws the plot."""
    clustered = bool(args.n_clusters) or bool(args.plot and not args.color_by)
    if clustered:
        k = args.n_clusters or min(DEFAULT_CLUSTERS, adata.n_obs)
        if k < 2:
            raise CommandLineError(f"clustering needs at least 2 cells, and there is {adata.n_obs}")
        tl.cluster(adata, k, key_added=CLUSTER_KEY, use_rep=EMBEDDING_KEY)
    if clustered or not written:
        write(out, adata, clustered)
    emb = adata.obsm[EMBEDDING_KEY]
    say(
        args,
        f"{emb.shape[0]:,} cells x {emb.shape[1]} dims in {seconds:.2f} s -> {out}{summary}",
    )
    if args.plot:
        column = args.color_by or CLUSTER_KEY
        what = args.color_by or "KMeans cluster"
        _, method = pl.map_2d(adata, use_rep=EMBEDDING_KEY)
        figure = pl.embedding(adata, color=column, use_rep=EMBEDDING_KEY, save=args.plot)
        use_agg().close(figure)
        say(args, f"{method} map coloured by {what} -> {args.plot}")
    return 0


def refuse_empty(cells: Any, tokenizer: Any) -> None:
    """Stops when no cell has a token of the universe: every cell would embed to the same
    point, and the output and plot would mean nothing."""
    if len(cells) and tl.unk_only(cells, tokenizer) + int(np.sum(cells.lengths == 0)) < len(cells):
        return
    raise CommandLineError(
        f"no cell has a token: none of the {len(cells):,} cells overlaps the universe, so "
        "every cell would embed to the same point; check that the data and the model share a "
        "genome build and chromosome names, or pass --allow-empty"
    )


def refuse_empty_atlas(path: Path) -> None:
    """Stops when no cell of the atlas has a token, as :func:`refuse_empty` does for the
    other inputs."""
    from .._stream import Atlas

    with Atlas(path) as atlas:
        n_cells, n_empty = atlas.n_cells, int(np.count_nonzero(atlas.lengths == 0))
    if n_cells and n_empty < n_cells:
        return
    raise CommandLineError(
        f"{path}: no cell has a token: none of the atlas's {n_cells:,} cells overlaps the "
        "universe, so every cell would embed to the same point; check that the data and the "
        "model share a genome build and chromosome names, or pass --allow-empty"
    )


def read_obs(path: Path) -> Any:
    """The ``obs`` table of an ``.h5ad`` file (rows in the order ``pp.tokenize`` keeps)."""
    import anndata

    adata = anndata.read_h5ad(path, backed="r")
    try:
        return adata.obs.copy()
    finally:
        adata.file.close()


def write(path: Path, adata: Any, clustered: bool) -> None:
    """Writes the embeddings as ``.npy`` (the matrix), ``.parquet`` (a table) or ``.h5ad``,
    each atomically: a failed write (a full disk) leaves the old file as it was."""
    embeddings = np.asarray(adata.obsm[EMBEDDING_KEY])
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, embeddings)
        return
    if suffix == ".parquet":
        import io

        import pandas as pd

        frame = pd.DataFrame(
            embeddings, columns=[f"atacformer_{i}" for i in range(embeddings.shape[1])]
        )
        frame.insert(0, "cell", list(adata.obs_names))
        if clustered:
            frame.insert(1, "cluster", adata.obs[CLUSTER_KEY].astype(int).to_numpy())
        table = io.BytesIO()  # pyarrow writes to memory; the disk sees plain writes only
        frame.to_parquet(table, index=False)
        write_bytes(path, table.getbuffer())
        return
    write_h5ad(path, adata)
