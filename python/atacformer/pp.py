"""Preprocessing (``pp``): turn ATAC-seq data of any shape into :class:`TokenizedCells`.

In the scverse convention (scanpy's and SnapATAC2's ``pp``/``tl``/``pl``)::

    import atacformer as af

    cells = af.pp.tokenize("fragments.tsv.gz", "demo")       # one cell per barcode
    adata = af.tl.embed(cells, "demo")                         # obsm["X_atacformer"]
    af.tl.cluster(adata, n_clusters=6)                         # obs["atacformer_cluster"]
    fig = af.pl.embedding(adata, color="atacformer_cluster")   # a matplotlib Figure
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Union, overload

import numpy as np

from . import _core, _stdin
from ._sources import Source, detect_source, is_path_list, sample_names
from .tokenized_cells import TokenizedCells
from .tokenizers import Tokenizer

__all__ = ["tokenize"]

CHROM_NAMES = ("auto", "exact")
"""The ways of matching input chromosome names to the universe's (``chrom_names=``)."""

PathLike = Union[str, "os.PathLike[str]"]


@overload
def tokenize(
    data: Any,
    tokenizer: Tokenizer | PathLike | None,
    *,
    barcodes: Sequence[str] | PathLike | None = ...,
    min_fragments: int = ...,
    max_fragments: int | None = ...,
    on_error: str = ...,
    threads: int | None = ...,
    layer: str | None = ...,
    format: str = ...,
    sample_names: Sequence[str] | None = ...,
    out: None = ...,
    progress: bool = ...,
) -> TokenizedCells: ...


@overload
def tokenize(
    data: Any,
    tokenizer: Tokenizer | PathLike | None,
    *,
    barcodes: Sequence[str] | PathLike | None = ...,
    min_fragments: int = ...,
    max_fragments: int | None = ...,
    on_error: str = ...,
    threads: int | None = ...,
    layer: str | None = ...,
    format: str = ...,
    sample_names: Sequence[str] | None = ...,
    out: PathLike = ...,
    progress: bool = ...,
) -> Path: ...


def tokenize(
    data: Any,
    tokenizer: Tokenizer | PathLike | None,
    *,
    barcodes: Sequence[str] | PathLike | None = None,
    barcode_suffix: str = "auto",
    min_fragments: int = 0,
    max_fragments: int | None = None,
    on_error: str = "raise",
    threads: int | None = None,
    layer: str | None = None,
    format: str = "auto",
    sample_names: Sequence[str] | None = None,
    out: PathLike | None = None,
    progress: bool = False,
    chrom_names: str = "auto",
) -> TokenizedCells | Path:
    """Tokenizes ``data`` against ``tokenizer``'s universe.

    ``data`` is one of:

    - a 10x fragment file (plain, gzip or BGZF): one cell per barcode, named by barcode;
      several fragment files: each is tokenized and the cells are concatenated, named
      ``{sample}#{barcode}`` where ``sample`` is the file name without its suffixes, or
      the matching entry of ``sample_names``;
    - a manifest of samples (see :mod:`atacformer.atlas`): a ``.tsv``/``.csv`` path with a
      header and the columns ``sample``, ``fragments`` and optionally ``barcodes`` (paths
      relative to the manifest), or a pandas DataFrame with those columns; cells are named
      ``{sample}#{barcode}``. ``format="manifest"`` forces this reading of a path;
    - a BED file, a list of BED files or a folder of them: one cell per file, named by file;
    - an ``AnnData`` (cells x peaks) or an ``.h5ad`` path: one cell per row, in ``obs`` order
      and named by ``obs_names`` (``layer`` reads a layer instead of ``X``);
    - an ``.atok`` file, or a ``TokenizedCells``: returned as they are.

    A path's kind comes from its name unless ``format`` (``"fragments"``, ``"bed"``,
    ``"h5ad"``, ``"atok"``) says otherwise. ``tokenizer`` is a :class:`Tokenizer` or a name
    for :meth:`Tokenizer.from_pretrained` (``"demo"``, a folder, a universe file, a Hub repo
    id). ``barcodes`` (a sequence, a plain list file, cellranger's ``barcodes.tsv(.gz)`` or
    cellranger-atac's ``singlecell.csv``), ``barcode_suffix``, ``min_fragments``,
    ``max_fragments`` and ``on_error`` apply to fragment files (see
    :meth:`Tokenizer.tokenize_fragments` and :mod:`atacformer.barcodes`); ``threads`` sets
    the number of tokenizer threads for this call. ``data="-"`` reads standard input (a
    fragment file or a BED file, told apart by its first line unless ``format`` says; see
    :mod:`atacformer._stdin`).

    With ``out`` (a path ending in ``.h5ad`` or ``.zarr``) fragment files and manifests are
    written as a tokenized *atlas* instead, one sample at a time in bounded memory,
    atomically and resumably (and spread over the ranks under ``torchrun``), by
    :func:`atacformer.atlas.write_atlas`; the return value is then the path ``out``, to
    open with ``anndata.read_h5ad(out, backed="r")``. Other inputs are tokenized in memory
    and written with :meth:`TokenizedCells.to_anndata`. ``progress`` shows a progress bar
    and says what a resumed run skips.

    ``chrom_names="auto"`` (the default) matches an input chromosome the universe lacks
    under its alias (``chr`` added or removed, ``MT`` <-> ``chrM``), ``"exact"`` only by its
    own name; the result's ``coverage`` says which aliases were used.
    """
    if out is not None:
        return _tokenize_to(
            data,
            tokenizer,
            Path(out),
            barcodes=barcodes,
            min_fragments=min_fragments,
            max_fragments=max_fragments,
            on_error=on_error,
            threads=threads,
            layer=layer,
            format=format,
            sample_names=sample_names,
            progress=progress,
            barcode_suffix=barcode_suffix,
            chrom_names=chrom_names,
        )
    manifest = _as_manifest(data, format, sample_names, barcodes)
    if manifest is not None:
        from . import atlas

        options = dict(
            min_fragments=min_fragments,
            max_fragments=max_fragments,
            on_error=on_error,
            barcode_suffix=barcode_suffix,
            chrom_names=chrom_names,
        )
        with _threads(threads):
            return atlas.tokenize_manifest(manifest, as_tokenizer(tokenizer), **options)
    return _tokenize(
        data,
        tokenizer,
        barcodes=barcodes,
        barcode_suffix=barcode_suffix,
        min_fragments=min_fragments,
        max_fragments=max_fragments,
        on_error=on_error,
        threads=threads,
        layer=layer,
        format=format,
        chrom_names=chrom_names,
    )[0]


def is_manifest(data: Any, format: str = "auto") -> bool:
    """A manifest of samples: a DataFrame, or a path that ``format`` or its first line
    (a header, not a fragment record) says is one."""
    if hasattr(data, "columns") and hasattr(data, "iloc") and not is_anndata(data):
        return True
    if not isinstance(data, (str, os.PathLike)):
        return False
    if format == "manifest":
        return True
    from .atlas import looks_like_manifest

    return format == "auto" and looks_like_manifest(data)


def _as_manifest(data: Any, format: str, sample_names: Sequence[str] | None, barcodes: Any) -> Any:
    """The checked manifest ``data`` is or, with ``sample_names``, the one the fragment
    files make; None for other inputs."""
    from . import atlas

    if is_manifest(data, format):
        if barcodes is not None:
            raise _core.InvalidInputError(
                "barcodes applies to one fragment file; in a manifest, give each sample's "
                "list in its barcodes column"
            )
        if sample_names is not None:
            raise _core.InvalidInputError("a manifest names its samples; drop sample_names")
        return atlas.read_manifest(data)
    if sample_names is None:
        return None
    paths = [data] if isinstance(data, (str, os.PathLike)) else data
    if not is_path_list(paths):
        raise _core.InvalidInputError("sample_names applies to fragment files")
    source = detect_source(list(paths), "fragments" if format == "auto" else format)
    if source.kind != "fragments":
        raise _core.InvalidInputError(f"sample_names applies to fragment files, not {source.kind}")
    if barcodes is not None:
        raise _core.InvalidInputError("barcodes applies to one fragment file, not to samples")
    return atlas.manifest_from_paths(list(source.paths), sample_names)


def _tokenize_to(
    data: Any,
    tokenizer: Tokenizer | PathLike | None,
    out: Path,
    *,
    sample_names: Sequence[str] | None,
    progress: bool,
    **options: Any,
) -> Path:
    """:func:`tokenize` with ``out``: an atlas for fragments and manifests, else the cells
    as an AnnData written atomically."""
    from . import atlas

    fmt = atlas._atlas_format(out)
    manifest = _as_manifest(data, options["format"], sample_names, options["barcodes"])
    if manifest is None and is_path_list(data) and not isinstance(data, TokenizedCells):
        paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        source = detect_source(paths, options["format"])
        if source.kind == "fragments":
            if options["barcodes"] is not None and len(source.paths) > 1:
                raise _core.InvalidInputError(
                    "barcodes applies to one fragment file; for several samples, give a "
                    "manifest with a barcodes column"
                )
            manifest = atlas.manifest_from_paths(list(source.paths), barcodes=options["barcodes"])
    if manifest is not None:
        if options["layer"] is not None:
            raise _core.InvalidInputError("layer applies to AnnData only, not to fragment files")
        threads = _thread_count(options["threads"])
        return atlas.write_atlas(
            manifest,
            as_tokenizer(tokenizer),
            out,
            min_fragments=options["min_fragments"],
            max_fragments=options["max_fragments"],
            on_error=options["on_error"],
            threads=threads,
            verbose=progress,
            barcode_suffix=options["barcode_suffix"],
            chrom_names=options["chrom_names"],
        )
    tok = as_tokenizer(tokenizer) if needs_tokenizer(data, options["format"]) else None
    cells = _tokenize(data, tok if tok is not None else tokenizer, **options)[0]
    if tok is None:
        tok = as_tokenizer(tokenizer)
    adata = cells.to_anndata(tok)
    atlas.write_anndata(adata, out, fmt)
    return out


def is_anndata(data: Any) -> bool:
    """An ``AnnData`` (checked by shape, so anndata need not be imported)."""
    return all(hasattr(data, a) for a in ("obs", "var", "obsm", "obs_names", "X"))


def needs_tokenizer(data: Any, format: str = "auto") -> bool:
    """False for inputs that are already token ids (a ``TokenizedCells``, an ``.atok``)."""
    if isinstance(data, TokenizedCells):
        return False
    if is_path_list(data):
        paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        return detect_source(paths, format).kind != "atok"
    return True


def as_tokenizer(tokenizer: Tokenizer | PathLike | None) -> Tokenizer:
    """A :class:`Tokenizer` itself, or the one a name stands for."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        return Tokenizer.from_pretrained(tokenizer)
    if tokenizer is None:
        raise _core.InvalidInputError(
            "this input needs a tokenizer: a Tokenizer, 'demo', a folder or a Hub repo id"
        )
    raise _core.AtacformerTypeError(
        f"tokenizer must be a Tokenizer or a name, got {type(tokenizer).__name__}"
    )


def _tokenize(
    data: Any,
    tokenizer: Tokenizer | PathLike | None,
    *,
    barcodes: Sequence[str] | PathLike | None = None,
    barcode_suffix: str = "auto",
    min_fragments: int = 0,
    max_fragments: int | None = None,
    on_error: str = "raise",
    threads: int | None = None,
    layer: str | None = None,
    format: str = "auto",
    chrom_names: str = "auto",
) -> tuple[TokenizedCells, Any]:
    """:func:`tokenize`, plus the ``obs`` table of an ``.h5ad`` path (else None), in the
    cells' order."""
    if chrom_names not in CHROM_NAMES:
        raise _core.InvalidInputError(f"chrom_names must be 'auto' or 'exact', got {chrom_names!r}")
    if _stdin.is_stdin(data):  # "-": standard input, spooled to a file
        with _stdin.stdin_input(data, format) as (spooled, spooled_format):
            return _tokenize(
                spooled,
                tokenizer,
                barcodes=barcodes,
                barcode_suffix=barcode_suffix,
                min_fragments=min_fragments,
                max_fragments=max_fragments,
                on_error=on_error,
                threads=threads,
                layer=layer,
                format=spooled_format,
                chrom_names=chrom_names,
            )
    if max_fragments is not None and not isinstance(max_fragments, bool):
        if isinstance(max_fragments, int) and max_fragments < 1:
            raise _core.InvalidInputError(f"max_fragments must be at least 1, got {max_fragments}")
    fragment_options = {
        "barcodes": barcodes is not None,
        "barcode_suffix": barcode_suffix != "auto",
        "min_fragments": min_fragments != 0,
        "max_fragments": max_fragments is not None,
        "on_error": on_error != "raise",
    }

    def only_for(kind: str, what: str) -> None:
        given = [name for name, set_ in fragment_options.items() if set_]
        if kind != "fragments" and given:
            raise _core.InvalidInputError(
                f"{', '.join(given)} apply to fragment files only, and {what} is {kind}"
            )
        if kind != "h5ad" and layer is not None:
            raise _core.InvalidInputError(f"layer applies to AnnData only, and {what} is {kind}")

    if isinstance(data, TokenizedCells):
        only_for("TokenizedCells", "the input")
        return data, None
    with _threads(threads):
        if is_anndata(data):
            only_for("h5ad", "the input")
            return _from_anndata(as_tokenizer(tokenizer), data, layer, chrom_names), None
        if not is_path_list(data):
            raise _core.AtacformerTypeError(
                "data must be a path (fragments, BED, folder, .h5ad, .atok), a list of paths, "
                f"an AnnData or a TokenizedCells; got {type(data).__name__}"
            )
        paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        source = detect_source(paths, format)
        only_for(source.kind, source.describe())
        if source.kind == "atok":
            return TokenizedCells.load(source.paths[0]), None
        tok = as_tokenizer(tokenizer)
        if source.kind == "fragments":
            options = dict(
                barcodes=barcodes,
                barcode_suffix=barcode_suffix,
                min_fragments=min_fragments,
                max_fragments=max_fragments,
                on_error=on_error,
                chrom_names=chrom_names,
            )
            return _from_fragments(tok, source, options), None
        if source.kind == "h5ad":
            return _from_h5ad(tok, source, layer, chrom_names)
        return tok.tokenize_files(list(source.paths), chrom_names=chrom_names), None


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """Runs the block with ``threads`` tokenizer threads, then restores the count."""
    threads = _thread_count(threads)
    if threads is None:
        yield
        return
    before = _core.get_num_threads()
    _core.set_num_threads(threads)
    try:
        yield
    finally:
        _core.set_num_threads(before)


def _thread_count(threads: Any) -> int | None:
    """``threads`` checked: None or a positive integer."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise _core.InvalidInputError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


def _from_fragments(tok: Tokenizer, source: Source, options: dict[str, Any]) -> TokenizedCells:
    parts = []
    for path in source.paths:
        cells = tok.tokenize_fragments(path, **options)
        if len(cells) == 0:
            raise _core.InvalidInputError(f"{path}: no cell has a fragment in the universe")
        parts.append(cells)
    if len(parts) == 1:
        return parts[0]
    samples = sample_names(source.paths)
    names = [f"{s}#{name}" for s, cells in zip(samples, parts, strict=True) for name in cells.names]
    return _concat(parts, names)


def _concat(parts: Sequence[TokenizedCells], names: Sequence[str]) -> TokenizedCells:
    """The cells of ``parts`` one after another (same vocabulary), renamed ``names``."""
    joined = TokenizedCells.concat(list(parts))  # carries counts, qc and coverage along
    joined.names = list(names)
    return joined


def _from_anndata(
    tok: Tokenizer, adata: Any, layer: str | None, chrom_names: str = "auto"
) -> TokenizedCells:
    return tok.tokenize_anndata(adata, layer=layer, chrom_names=chrom_names)


def _from_h5ad(
    tok: Tokenizer, source: Source, layer: str | None, chrom_names: str = "auto"
) -> tuple[TokenizedCells, Any]:
    from ._deps import require

    ad = require("anndata", "reading .h5ad files", "atacformer[anndata]")
    path = source.paths[0]
    try:
        adata = ad.read_h5ad(path, backed="r")
    except (OSError, KeyError) as e:
        raise _core.AtacformerIOError(f"{path}: not a readable .h5ad file ({e})") from e
    try:
        cells = _from_anndata(tok, adata, layer, chrom_names)
        obs = adata.obs.copy()
    finally:
        if adata.isbacked:
            adata.file.close()
    return cells, obs
