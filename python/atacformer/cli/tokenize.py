"""``atacformer tokenize``: INPUT -> a TokenizedCells file (``.atok``), by ``pp.tokenize``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .. import pp
from .._sources import detect_source
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
  atacformer tokenize pbmc.h5ad --tokenizer databio/atacformer-base-hg38 -o pbmc.atok"""

ACTIVITY = {
    "fragments": "Tokenizing fragments",
    "h5ad": "Reading and tokenizing AnnData",
    "bed": "Tokenizing BED files",
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tokenize",
        help="turn fragments, peaks or BED files into token ids (.atok)",
        description="Tokenize INPUT against a universe and write a TokenizedCells file (.atok):\n"
        "one flat int32 id buffer plus per-cell offsets and names (barcodes, obs names or\n"
        "file names). Fragment files give one cell per barcode (unique ids, genomic order;\n"
        "cells with no overlap dropped; with several files, cells are named\n"
        "SAMPLE#BARCODE); an .h5ad gives one cell per row (nonzero peaks); BED files give\n"
        "one cell each.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(p)
    p.add_argument(
        "--tokenizer",
        required=True,
        metavar="NAME_OR_PATH",
        help="a universe BED file, a tokenizer or model folder, a Hub repo id, or 'demo'",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output .atok file")
    add_hub_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_input_options(args)
    source = detect_source(args.inputs, args.format)
    if source.kind == "atok":
        raise CommandLineError(f"{source.paths[0]} is already tokenized")
    check_input_kind(args, source.kind)
    out = check_output(Path(args.output), (".atok",))
    refuse_inputs(out, args, args.tokenizer)
    tokenizer = load_tokenizer(args.tokenizer, args)
    started = time.perf_counter()
    with activity(ACTIVITY[source.kind], args.quiet):
        cells = pp.tokenize(args.inputs, tokenizer, threads=args.threads, **tokenize_options(args))
    cells.save(out)
    say(
        args,
        f"{len(cells):,} cells, {len(cells.ids):,} tokens ({summary(cells, tokenizer)}) "
        f"in {time.perf_counter() - started:.2f} s -> {out}{coverage_line(cells)}",
    )
    return 0
