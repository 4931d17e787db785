"""``atacformer tokenize``: INPUT or a manifest -> a TokenizedCells file (``.atok``) or a
tokenized atlas (``.h5ad``/``.zarr``), by ``pp.tokenize``."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from .. import pp
from .._deps import require
from .._sources import detect_source
from .._stdin import spool_for_command
from ..exceptions import AtacformerIOError
from ._common import (
    CommandLineError,
    activity,
    add_hub_options,
    add_input_options,
    check_input_kind,
    check_input_options,
    check_output,
    coverage_line,
    load_tokenizer,
    refuse_inputs,
    say,
    summary,
    tokenize_options,
)

EXAMPLES = """\
examples:
  atacformer tokenize fragments.tsv.gz --tokenizer demo -o cells.atok
  atacformer tokenize peaks/ --tokenizer universe.bed.gz -o samples.atok
  atacformer tokenize pbmc.h5ad --tokenizer databio/atacformer-base-hg38 -o pbmc.atok
  atacformer tokenize --manifest samples.tsv --tokenizer demo -o atlas.h5ad
  atacformer tokenize fragments.tsv.gz --sample-names pbmc --tokenizer demo -o pbmc.zarr
  torchrun --nproc-per-node 4 -m atacformer tokenize --manifest samples.tsv --tokenizer demo \\
      -o atlas.h5ad"""

ACTIVITY = {
    "fragments": "Tokenizing fragments",
    "h5ad": "Reading and tokenizing AnnData",
    "bed": "Tokenizing BED files",
}
OUTPUTS = (".atok", ".h5ad", ".zarr")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tokenize",
        help="turn fragments, peaks or BED files into token ids (.atok) or an atlas (.h5ad)",
        description="Tokenize INPUT against a universe and write a TokenizedCells file (.atok):\n"
        "one flat int32 id buffer plus per-cell offsets and names (barcodes, obs names or\n"
        "file names). Fragment files give one cell per barcode (unique ids, genomic order;\n"
        "cells with no overlap dropped; with several files, cells are named\n"
        "SAMPLE#BARCODE); an .h5ad gives one cell per row (nonzero peaks); BED files give\n"
        "one cell each.\n\n"
        "With -o atlas.h5ad (or .zarr), fragment files or a --manifest (a .tsv/.csv with the\n"
        "columns sample, fragments and optionally barcodes; paths relative to it) become one\n"
        "tokenized atlas: an AnnData of cells x universe regions whose X holds each cell's\n"
        "fragment count per region, with per-cell QC in obs. It is written one sample at a\n"
        "time in bounded memory; it appears only when complete, and the same command after\n"
        "an interruption resumes at the first unfinished sample. Under torchrun the samples\n"
        "are spread over the processes and rank 0 joins them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(p, inputs_required=False)
    g = p.add_argument_group("many samples")
    g.add_argument(
        "--manifest",
        metavar="TSV",
        help="samples to tokenize: a .tsv or .csv with a header and the columns sample, "
        "fragments and optionally barcodes (paths relative to the manifest)",
    )
    g.add_argument(
        "--sample-names",
        metavar="A,B,...",
        help="names of the samples given as fragment files, comma-separated, one per file "
        "(default: the file names without their extensions)",
    )
    p.add_argument(
        "--tokenizer",
        required=True,
        metavar="NAME_OR_PATH",
        help="a universe BED file, a tokenizer or model folder, a Hub repo id, or 'demo'",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output .atok file, or an atlas: .h5ad file or .zarr folder",
    )
    add_hub_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_input_options(args)
    args.inputs, args.format = spool_for_command(args.inputs, args.format)  # "-": stdin
    if args.manifest is not None and args.inputs:
        raise CommandLineError("give INPUT files or --manifest, not both")
    if args.manifest is None and not args.inputs:
        raise CommandLineError("give INPUT files or --manifest")
    names = _sample_names(args)
    out = _check_output(Path(args.output))
    atlas_out = not out.name.lower().endswith(".atok")
    if args.manifest is not None:
        if args.barcodes is not None:
            raise CommandLineError(
                "--barcodes applies to one fragment file; give each sample's list in the "
                "manifest's barcodes column"
            )
        if args.layer is not None:
            raise CommandLineError("--layer applies to .h5ad input, not to a manifest")
        if args.format not in (None, "auto"):
            raise CommandLineError(
                f"--format {args.format} applies to INPUT files; a manifest's samples are "
                "fragment files"
            )
        data: Any = args.manifest
        kind = "fragments"
        options = {
            k: v for k, v in tokenize_options(args).items() if k not in ("barcodes", "layer")
        }
        options["format"] = "manifest"
    else:
        source = detect_source(args.inputs, args.format)
        if source.kind == "atok":
            raise CommandLineError(f"{source.paths[0]} is already tokenized")
        check_input_kind(args, source.kind)
        if names is not None and source.kind != "fragments":
            raise CommandLineError(
                f"--sample-names applies to fragment files, not to {source.kind}"
            )
        data, kind, options = args.inputs, source.kind, tokenize_options(args)
    refuse_inputs(out, args, args.tokenizer, args.manifest)
    tokenizer = load_tokenizer(args.tokenizer, args)
    started = time.perf_counter()
    if atlas_out:
        written = pp.tokenize(
            data,
            tokenizer,
            threads=args.threads,
            sample_names=names,
            out=out,
            progress=not args.quiet,
            **options,
        )
        if _rank() == 0:
            from ..atlas import atlas_size

            n_cells, n_ids, n_samples = atlas_size(written)
            say(
                args,
                f"{n_cells:,} cells from {n_samples:,} samples, {n_ids:,} tokens in "
                f"{time.perf_counter() - started:.2f} s -> {written}",
            )
        return 0
    with activity(ACTIVITY[kind], args.quiet):
        cells = pp.tokenize(data, tokenizer, threads=args.threads, sample_names=names, **options)
    cells.save(out)
    say(
        args,
        f"{len(cells):,} cells, {len(cells.ids):,} tokens ({summary(cells, tokenizer)}) "
        f"in {time.perf_counter() - started:.2f} s -> {out}{coverage_line(cells)}",
    )
    return 0


def _sample_names(args: argparse.Namespace) -> list[str] | None:
    if args.sample_names is None:
        return None
    if args.manifest is not None:
        raise CommandLineError("--sample-names names INPUT files; a manifest names its samples")
    names = [n.strip() for n in args.sample_names.split(",")]
    if len(names) != len(args.inputs):
        raise CommandLineError(
            f"--sample-names gives {len(names)} names for {len(args.inputs)} INPUT files"
        )
    return names


def _check_output(path: Path) -> Path:
    """The output checked by its suffix; a ``.zarr`` atlas is a folder, replaced whole."""
    if not path.name.lower().endswith(".zarr"):
        return check_output(path, OUTPUTS)
    if path.exists() and not path.is_dir():
        raise CommandLineError(f"cannot write {path}: a .zarr atlas is a folder, and it is a file")
    require("zarr", "writing .zarr atlases", "zarr")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AtacformerIOError(f"cannot make the folder of {path}: {e.strerror}") from e
    return path


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0
