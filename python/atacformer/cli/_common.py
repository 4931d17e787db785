"""What the commands share: the usage error, option groups and checks, progress, messages."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from .._atomic import atomic_path, refuse_overwriting_inputs
from .._deps import require
from ..tokenized_cells import TokenizedCells
from ..tokenizers import Tokenizer


class CommandLineError(_core.AtacformerError):
    """A wrong use of the command line (an option out of range, a bad combination); the
    message names the option as it is typed and is printed as it is."""


# ------------------------------------------------------------------------------- options


def option(dest: str) -> str:
    """The option as it is typed: ``batch_size`` -> ``--batch-size``."""
    return "--" + dest.replace("_", "-")


def at_least(args: argparse.Namespace, dest: str, minimum: int) -> None:
    """Refuses an integer option below ``minimum`` (an option left out is fine)."""
    value = getattr(args, dest)
    if value is not None and value < minimum:
        raise CommandLineError(f"{option(dest)} must be at least {minimum}, got {value}")


MAX_THREADS = 4096
"""The most threads the core accepts (``atacformer.set_num_threads``)."""


def at_most(args: argparse.Namespace, dest: str, maximum: int) -> None:
    """Refuses an integer option above ``maximum`` (an option left out is fine)."""
    value = getattr(args, dest)
    if value is not None and value > maximum:
        raise CommandLineError(f"{option(dest)} must be at most {maximum}, got {value}")


def add_hub_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Hugging Face Hub")
    g.add_argument("--revision", help="branch, tag or commit of a Hub repo (default: main)")
    g.add_argument("--cache-dir", help="Hub cache folder (default: HF_HUB_CACHE)")
    g.add_argument(
        "--local-files-only",
        action="store_true",
        help="never go online; use the cache only (like HF_HUB_OFFLINE=1)",
    )


def hub_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``from_pretrained`` keywords the Hub options give."""
    return {
        "revision": args.revision,
        "cache_dir": args.cache_dir,
        "local_files_only": args.local_files_only,
    }


FRAGMENT_OPTIONS = ("barcodes", "barcode_suffix", "min_fragments", "max_fragments", "on_error")


def add_input_options(p: argparse.ArgumentParser, inputs_required: bool = True) -> None:
    p.add_argument(
        "inputs",
        nargs="+" if inputs_required else "*",
        metavar="INPUT",
        help="a 10x fragment file (.tsv.gz, .bgz) or several (one sample each), a BED file, a "
        "directory or list of BED files (one cell or sample each), or an .h5ad (cells x peaks); "
        "'-' reads a fragment or BED file from standard input",
    )
    g = p.add_argument_group("reading the input")
    g.add_argument(
        "--format",
        choices=["auto", "fragments", "bed", "h5ad", "atok"],
        default="auto",
        help="how to read INPUT (default: from its name)",
    )
    g.add_argument(
        "--barcodes",
        metavar="FILE",
        help="fragments: keep these barcodes, in this order: one per line, cellranger's "
        "barcodes.tsv(.gz) or cellranger-atac's singlecell.csv (its cell rows)",
    )
    g.add_argument(
        "--barcode-suffix",
        choices=["auto", "exact"],
        default="auto",
        help="fragments: 'auto' (default) matches AAAC-1 to AAAC when only one side has "
        "-1-style suffixes; 'exact' compares barcodes as written",
    )
    g.add_argument(
        "--min-fragments",
        type=int,
        default=0,
        metavar="N",
        help="fragments: drop barcodes with fewer than N fragment lines (default 0)",
    )
    g.add_argument(
        "--max-fragments",
        type=int,
        metavar="N",
        help="fragments: drop barcodes with more than N fragment lines (default: no limit)",
    )
    g.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="fragments: stop at a malformed line (default) or skip such lines",
    )
    g.add_argument(
        "--chrom-names",
        choices=["auto", "exact"],
        default="auto",
        help="auto (default): match a chromosome the universe lacks under its alias (chr1/1, "
        "chrM/MT); exact: by its own name only",
    )
    g.add_argument("--layer", help=".h5ad: read this layer instead of X")
    g.add_argument(
        "--threads", type=int, metavar="N", help="threads for tokenizing (and the model)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def check_input_options(args: argparse.Namespace) -> None:
    """The numeric input options, checked before anything is read or imported."""
    at_least(args, "min_fragments", 0)
    at_least(args, "max_fragments", 1)
    at_least(args, "threads", 1)
    at_most(args, "threads", MAX_THREADS)


def check_input_kind(args: argparse.Namespace, kind: str) -> None:
    """Refuses fragment options for other inputs, and ``--layer`` for non-``.h5ad`` ones."""
    defaults = {
        "barcodes": None,
        "barcode_suffix": "auto",
        "min_fragments": 0,
        "max_fragments": None,
        "on_error": "raise",
    }
    given = [option(d) for d in FRAGMENT_OPTIONS if getattr(args, d) != defaults[d]]
    if given and kind != "fragments":
        raise CommandLineError(f"{', '.join(given)} apply to fragment files, not to {kind} input")
    if args.layer is not None and kind != "h5ad":
        raise CommandLineError(f"--layer applies to .h5ad input, not to {kind} input")


def tokenize_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :func:`atacformer.pp.tokenize` the input options give."""
    return {
        "barcodes": args.barcodes,
        "barcode_suffix": args.barcode_suffix,
        "min_fragments": args.min_fragments,
        "max_fragments": args.max_fragments,
        "on_error": args.on_error,
        "layer": args.layer,
        "format": args.format,
        "chrom_names": args.chrom_names,
    }


# ---------------------------------------------------------------------------- helpers


def load_tokenizer(name: str, args: argparse.Namespace) -> Tokenizer:
    """The tokenizer a name stands for (a universe or config file, a folder, 'demo', a Hub
    repo id), with a hint when a model folder holds none."""
    try:
        return Tokenizer.from_pretrained(name, **hub_options(args))
    except _core.MissingFileError as e:
        if Path(name).expanduser().is_dir() or name == "demo":
            raise CommandLineError(
                f"{name}: no tokenizer here (tokenizer.toml or universe.bed.gz); pass --tokenizer"
            ) from e
        raise


def check_output(path: Path, allowed: Sequence[str]) -> Path:
    """Refuses an output name with the wrong suffix and makes its folder."""
    if not path.name.lower().endswith(tuple(allowed)):
        raise CommandLineError(f"cannot write {path}: the output must end in {', '.join(allowed)}")
    if path.is_dir():
        raise CommandLineError(f"cannot write {path}: it is a directory")
    if path.suffix == ".parquet":
        require("pyarrow", "writing .parquet files", "pyarrow")
    if path.suffix == ".h5ad":
        require("anndata", "writing .h5ad files", "atacformer[anndata]")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _core.AtacformerIOError(f"cannot make the folder of {path}: {e.strerror}") from e
    return path


def input_files(args: argparse.Namespace, *names: str | None) -> list[Path]:
    """Every file a command reads: its inputs, ``--barcodes`` and the given names (a
    tokenizer or model given as a path); an output may be none of them."""
    paths = [Path(p).expanduser() for p in getattr(args, "inputs", ())]
    for extra in (getattr(args, "barcodes", None), *names):
        if extra:
            path = Path(extra).expanduser()
            if path.is_dir():  # a model or tokenizer folder: the files in it
                paths += [p for p in path.iterdir() if p.is_file()]
            else:
                paths.append(path)
    for p in list(paths):
        if p.is_dir():
            paths += [q for q in p.iterdir() if q.is_file()]
    return paths


def refuse_inputs(out: Path, args: argparse.Namespace, *names: str | None) -> None:
    """Refuses an output that is one of the command's input files (through any spelling or
    link): writing it would destroy the data it is made from."""
    refuse_overwriting_inputs(out, input_files(args, *names))


def write_h5ad(path: Path, adata: Any) -> None:
    """Writes ``adata`` as ``.h5ad`` atomically: HDF5 builds the file in memory (h5py's
    in-memory file image), and only plain writes touch the disk. HDF5 itself never sees a
    full disk, which it does not survive cleanly (it has died with SIGSEGV there); a failed
    write is an :class:`~atacformer.AtacformerIOError` naming ``path``, and the old file is
    kept."""
    import io

    import h5py

    try:
        from anndata.io import write_elem
    except ImportError:  # pragma: no cover - anndata < 0.11
        from anndata.experimental import write_elem

    adata.strings_to_categoricals()  # as AnnData.write_h5ad does
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        write_elem(f, "/", adata)
    write_bytes(path, image.getbuffer())


def write_bytes(path: Path, data: Any) -> None:
    """``data`` (bytes or a buffer) written to ``path`` through ``atomic_path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def set_threads(threads: int | None, torch: Any = None) -> None:
    """Thread count of the tokenizer and, when given, of torch."""
    if threads is None:
        return
    _core.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)


def summary(cells: TokenizedCells, tokenizer: Tokenizer) -> str:
    """'median N per cell, M with unk only'."""
    from ..tl import unk_only

    lengths = cells.lengths
    median = int(np.median(lengths)) if len(lengths) else 0
    return f"median {median} per cell, {unk_only(cells, tokenizer)} with unk only"


def coverage_line(cells: TokenizedCells) -> str:
    """``"; coverage: ..."`` (:meth:`atacformer.Coverage.summary`) for the summary line, or
    nothing when the input kind measures none."""
    coverage = cells.coverage
    return "" if coverage is None else f"; coverage: {coverage.summary()}"


def use_agg() -> Any:
    """pyplot on the file-only backend (a command draws PNGs, never windows)."""
    require("matplotlib", "drawing a plot", "matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bars_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message)


@contextlib.contextmanager
def activity(description: str, quiet: bool) -> Iterator[None]:
    """An elapsed-time indicator for a step that reports no progress of its own (a call into
    the Rust core), refreshed from a thread while the step runs with the GIL released."""
    if not bars_enabled(quiet):
        yield
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield
        return
    bar = tqdm(desc=description, bar_format="{desc}: {elapsed}", file=sys.stderr, leave=False)
    done = threading.Event()

    def tick() -> None:
        while not done.wait(0.2):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()


_PYTHON_TO_OPTION = ("pass chrom_names='auto'", "pass --chrom-names auto")


@contextlib.contextmanager
def warnings_as_lines(command: str) -> Iterator[None]:
    """Prints each warning as one line, ``atacformer COMMAND: warning: ...``."""

    def show(message: Any, category: Any, *_: Any, **__: Any) -> None:
        text = one_line(message).replace(*_PYTHON_TO_OPTION)  # the fix as the CLI spells it
        print(f"atacformer {command}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():  # restores showwarning afterwards
        warnings.showwarning = show
        yield


def one_line(error: object) -> str:
    """An error as one line: OS errors as 'problem: file', others by their message."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    text = " ".join(str(error).split())
    if not text:
        text = type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."
