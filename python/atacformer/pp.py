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
from typing import Any, Union

import numpy as np

from . import _core
from ._sources import Source, detect_source, is_path_list, sample_names
from .tokenized_cells import TokenizedCells
from .tokenizers import Tokenizer

__all__ = ["tokenize"]

CHROM_NAMES = ("auto", "exact")
"""The ways of matching input chromosome names to the universe's (``chrom_names=``)."""

PathLike = Union[str, "os.PathLike[str]"]


def tokenize(
    data: Any,
    tokenizer: Tokenizer | PathLike | None,
    *,
    barcodes: Sequence[str] | PathLike | None = None,
    min_fragments: int = 0,
    max_fragments: int | None = None,
    on_error: str = "raise",
    threads: int | None = None,
    layer: str | None = None,
    format: str = "auto",
    chrom_names: str = "auto",
) -> TokenizedCells:
    """Tokenizes ``data`` against ``tokenizer``'s universe.

    ``data`` is one of:

    - a 10x fragment file (plain, gzip or BGZF): one cell per barcode, named by barcode;
      several fragment files: each is tokenized and the cells are concatenated, named
      ``{sample}#{barcode}`` where ``sample`` is the file name without its suffixes;
    - a BED file, a list of BED files or a folder of them: one cell per file, named by file;
    - an ``AnnData`` (cells x peaks) or an ``.h5ad`` path: one cell per row, in ``obs`` order
      and named by ``obs_names`` (``layer`` reads a layer instead of ``X``);
    - an ``.atok`` file, or a ``TokenizedCells``: returned as they are.

    A path's kind comes from its name unless ``format`` (``"fragments"``, ``"bed"``,
    ``"h5ad"``, ``"atok"``) says otherwise. ``tokenizer`` is a :class:`Tokenizer` or a name
    for :meth:`Tokenizer.from_pretrained` (``"demo"``, a folder, a universe file, a Hub repo
    id). ``barcodes``, ``min_fragments``, ``max_fragments`` and ``on_error`` apply to
    fragment files (see :meth:`Tokenizer.tokenize_fragments`); ``threads`` sets the number of
    tokenizer threads for this call. ``chrom_names="auto"`` (the default) matches an input
    chromosome the universe lacks under its alias (``chr`` added or removed, ``MT`` <->
    ``chrM``), ``"exact"`` only by its own name; the result's ``coverage`` says which aliases
    were used.
    """
    return _tokenize(
        data,
        tokenizer,
        barcodes=barcodes,
        min_fragments=min_fragments,
        max_fragments=max_fragments,
        on_error=on_error,
        threads=threads,
        layer=layer,
        format=format,
        chrom_names=chrom_names,
    )[0]


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
    if max_fragments is not None and not isinstance(max_fragments, bool):
        if isinstance(max_fragments, int) and max_fragments < 1:
            raise _core.InvalidInputError(f"max_fragments must be at least 1, got {max_fragments}")
    fragment_options = {
        "barcodes": barcodes is not None,
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
            return _from_anndata(as_tokenizer(tokenizer), data, layer), None
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
                min_fragments=min_fragments,
                max_fragments=max_fragments,
                on_error=on_error,
                chrom_names=chrom_names,
            )
            return _from_fragments(tok, source, options), None
        if source.kind == "h5ad":
            return _from_h5ad(tok, source, layer)
        return tok.tokenize_files(list(source.paths)), None


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """Runs the block with ``threads`` tokenizer threads, then restores the count."""
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise _core.InvalidInputError(f"threads must be a positive integer, got {threads!r}")
    before = _core.get_num_threads()
    _core.set_num_threads(int(threads))
    try:
        yield
    finally:
        _core.set_num_threads(before)


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


def _from_anndata(tok: Tokenizer, adata: Any, layer: str | None) -> TokenizedCells:
    return tok.tokenize_anndata(adata, layer=layer)


def _from_h5ad(tok: Tokenizer, source: Source, layer: str | None) -> tuple[TokenizedCells, Any]:
    from ._deps import require

    ad = require("anndata", "reading .h5ad files", "atacformer[anndata]")
    path = source.paths[0]
    try:
        adata = ad.read_h5ad(path, backed="r")
    except (OSError, KeyError) as e:
        raise _core.AtacformerIOError(f"{path}: not a readable .h5ad file ({e})") from e
    try:
        cells = _from_anndata(tok, adata, layer)
        obs = adata.obs.copy()
    finally:
        if adata.isbacked:
            adata.file.close()
    return cells, obs
