"""``atacformer annotate``: label QUERY cells from a labelled REFERENCE ``.h5ad``, by
``tl.embed`` (for whichever side has no embedding yet) and ``tl.transfer_labels``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .. import pp, tl
from .._deps import require
from .._sources import detect_source
from ..exceptions import MissingFileError
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
    hub_options,
    load_tokenizer,
    refuse_inputs,
    say,
    set_threads,
    tokenize_options,
    write_h5ad,
)

EXAMPLES = """\
examples:
  atacformer annotate query.h5ad --reference atlas.h5ad --label-key cell_type --model demo -o labelled.h5ad
  atacformer annotate fragments.tsv.gz --reference atlas.h5ad --label-key cell_type --model demo -o cells.h5ad"""  # noqa: E501

EMBEDDING_KEY = "X_atacformer"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "annotate",
        help="label cells from a labelled reference .h5ad (k-nearest neighbours)",
        description="Label the cells of QUERY with the labels of their nearest cells in a\n"
        "labelled REFERENCE .h5ad, in Atacformer embedding space (cosine distance).\n"
        "A side without obsm['X_atacformer'] is embedded first with --model. The output\n"
        ".h5ad is the query with obs[KEY] (the label, or 'Unknown' below\n"
        "--min-confidence) and obs[KEY_confidence] (0 to 1: how close the cell is to the\n"
        "reference, times how strongly its neighbours agree; see\n"
        "atacformer.tl.transfer_labels).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(p)
    p.add_argument(
        "--reference", required=True, metavar="REF.h5ad", help="labelled reference cells"
    )
    p.add_argument(
        "--label-key", required=True, metavar="COLUMN", help="the reference's obs column of labels"
    )
    p.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        help="a Hub repo id, a local model folder, or 'demo'; needed when a side is not "
        "embedded yet",
    )
    p.add_argument(
        "--tokenizer",
        metavar="NAME_OR_PATH",
        help="a tokenizer other than the model's own (it must have the same vocabulary)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5ad", help="the labelled query")
    g = p.add_argument_group("label transfer")
    g.add_argument(
        "--key-added",
        default="atacformer_label",
        metavar="KEY",
        help="obs column of the labels (default atacformer_label)",
    )
    g.add_argument(
        "--n-neighbors", type=int, default=15, metavar="K", help="neighbours (default 15)"
    )
    g.add_argument(
        "--min-confidence",
        type=float,
        default=0.5,
        metavar="C",
        help="label cells below this confidence 'Unknown' (0 to 1, default 0.5)",
    )
    g = p.add_argument_group("the model")
    g.add_argument("--batch-size", type=int, default=64, help="cells per batch (default 64)")
    g.add_argument("--device", help="torch device: cpu, cuda, cuda:1, mps (default: the CPU)")
    add_hub_options(p)
    p.set_defaults(func=run)


def check_options(args: argparse.Namespace) -> None:
    """Every numeric option, before anything heavy is imported."""
    check_input_options(args)
    at_least(args, "batch_size", 1)
    at_least(args, "n_neighbors", 1)
    if not 0.0 <= args.min_confidence <= 1.0:  # NaN fails too
        raise CommandLineError(f"--min-confidence must be from 0 to 1, got {args.min_confidence}")


def run(args: argparse.Namespace) -> int:
    check_options(args)
    source = detect_source(args.inputs, args.format)
    check_input_kind(args, source.kind)
    if args.layer is not None:
        raise CommandLineError("--layer: annotate embeds the query's X; make it the layer first")
    reference_path = Path(args.reference).expanduser()
    if not reference_path.is_file():
        raise MissingFileError(2, "No such file or directory", str(reference_path))
    if not reference_path.name.lower().endswith(".h5ad"):
        raise CommandLineError(f"--reference {reference_path}: expected an .h5ad file")
    out = check_output(Path(args.output), (".h5ad",))
    refuse_inputs(out, args, args.model, args.tokenizer, args.reference)
    anndata = require("anndata", "reading .h5ad files", "atacformer[anndata]")
    require("sklearn", "label transfer", "scikit-learn")

    with activity(f"Reading {reference_path}", args.quiet):
        reference = anndata.read_h5ad(reference_path)
    if args.label_key not in reference.obs.columns:
        have = ", ".join(map(str, reference.obs.columns)) or "none"
        raise CommandLineError(
            f"--label-key {args.label_key!r}: the reference has no such obs column (have: {have})"
        )
    query = anndata.read_h5ad(source.paths[0]) if source.kind == "h5ad" else None
    if source.kind == "h5ad" and len(source.paths) > 1:
        raise CommandLineError("annotate takes one .h5ad query")
    pending = [name for name, a in (("reference", reference), ("query", query)) if _needs(a)]
    if source.kind != "h5ad":
        pending.append("query")
    if pending and args.model is None:
        raise CommandLineError(
            f"the {' and the '.join(pending)} has no obsm[{EMBEDDING_KEY!r}]: pass --model "
            "to embed it"
        )
    if args.model is not None:
        _check_embedded_by(args.model, {"reference": reference, "query": query})
    if pending:
        query = _embed_pending(args, source, reference, query, pending)
    tl.transfer_labels(
        reference,
        query,
        args.label_key,
        key_added=args.key_added,
        n_neighbors=args.n_neighbors,
        min_confidence=args.min_confidence,
        use_rep=EMBEDDING_KEY,
    )
    write_h5ad(out, query)
    labels = query.obs[args.key_added].astype(str).to_numpy()
    confidence = query.obs[f"{args.key_added}_confidence"].to_numpy()
    unknown = int(np.sum(labels == tl.UNKNOWN_LABEL))
    embedded = f" (embedded: {', '.join(pending)})" if pending else ""
    say(
        args,
        f"{len(labels):,} cells labelled from {reference.n_obs:,} reference cells{embedded}: "
        f"{len(labels) - unknown:,} labelled, {unknown:,} {tl.UNKNOWN_LABEL}, median "
        f"confidence {float(np.median(confidence)):.2f} -> {out}",
    )
    names, counts = np.unique(labels, return_counts=True)
    top = sorted(zip(counts.tolist(), names.tolist(), strict=True), reverse=True)
    say(args, "  " + ", ".join(f"{name} {count:,}" for count, name in top))
    return 0


def _needs(adata: Any) -> bool:
    return adata is not None and EMBEDDING_KEY not in adata.obsm


def _check_embedded_by(model: str, sides: dict[str, Any]) -> None:
    """Refuses ``--model`` when a side that is embedded already records another model: its
    embeddings would be used as they are, so the option would be silently ignored."""
    for side, adata in sides.items():
        if adata is None or _needs(adata):
            continue
        made = dict(adata.uns.get("atacformer", {})).get("model")
        if made is not None and tl._model_identity(made) != tl._model_identity(model):
            raise CommandLineError(
                f"the {side} was embedded by {made!r}, not by --model {model}: leave out "
                "--model to use its embeddings, or drop its obsm['X_atacformer'] to re-embed"
            )


def _embed_pending(
    args: argparse.Namespace, source: Any, reference: Any, query: Any, pending: list[str]
) -> Any:
    """Embeds the sides named in ``pending`` with ``--model`` and returns the query (a new
    AnnData when the query is not an ``.h5ad``)."""
    torch = require("torch", "embedding cells", "atacformer[model]")
    set_threads(args.threads, torch)
    from ..inference import parse_device

    device = parse_device(args.device, "--device")
    with activity("Loading the model", args.quiet):
        model = load_model(args.model, **hub_options(args))
    tokenizer = None
    if source.kind != "atok" or "reference" in pending:
        tokenizer = load_tokenizer(args.tokenizer or args.model, args)
        tl.check_compatible(model, tokenizer)
    options = {
        "tokenizer": tokenizer,
        "key_added": EMBEDDING_KEY,
        "batch_size": args.batch_size,
        "device": device,
        "progress": bars_enabled(args.quiet),
    }
    chrom_names = {"chrom_names": args.chrom_names}
    if "reference" in pending:
        tl.embed(reference, model, **options, **chrom_names)
    if "query" in pending:
        if query is not None:
            tl.embed(query, model, **options, **chrom_names)
        else:
            with activity(f"Reading {source.describe()}", args.quiet):
                cells = pp.tokenize(args.inputs, tokenizer, **tokenize_options(args))
            query = tl.embed(cells, model, **options)
    for side, adata in (("reference", reference), ("query", query)):
        if side in pending:
            adata.uns["atacformer"]["tokenizer"] = args.tokenizer or args.model
    return query
