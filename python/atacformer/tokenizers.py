"""`Tokenizer`: maps genomic regions onto the ids of a fixed universe of regions.

Ids ``0..N`` are the universe regions in file order; ``N..N+6`` are the special tokens
unk, pad, mask, cls, eos, bos, sep. The work happens in Rust (``atacformer._core``);
this module adds the Hugging Face-style surface: ``from_pretrained``/``save_pretrained``,
``__call__`` returning a :class:`BatchEncoding`, and the token/id conversions.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np

from . import _core
from . import barcodes as _barcodes
from ._core import CONFIG_FILE, DEFAULT_SEED, UNIVERSE_FILES
from ._encoding import BatchEncoding
from .coverage import MIN_INTERVALS, Coverage, genome_build, is_low, warn_if_poor
from .tokenized_cells import TokenizedCells, _items, _length_arg

PathLike = Union[str, "os.PathLike[str]"]
Regions = Any  # RegionSet | BED path | DataFrame | iterable of region-like objects

SPECIAL_TOKEN_NAMES: tuple[str, ...] = _core.SPECIAL_TOKEN_NAMES
"""Names of the special tokens in id order (after the universe ids), as the core defines."""

__all__ = ["CONFIG_FILE", "DEFAULT_SEED", "SPECIAL_TOKEN_NAMES", "UNIVERSE_FILES", "Tokenizer"]


def _is_region_set_like(x: Any) -> bool:
    """True for the forms that are one whole cell: a RegionSet, a path or a DataFrame."""
    return isinstance(x, (_core.RegionSet, str, os.PathLike)) or (
        hasattr(x, "columns") and hasattr(x, "iloc")
    )


def _is_batch(regions: Any) -> bool:
    """A list or tuple of cells, as opposed to one cell given as a list of regions."""
    if not isinstance(regions, (list, tuple)) or not regions:
        return False
    first = regions[0]
    if _is_region_set_like(first):
        return True
    if isinstance(first, (list, tuple)):  # a (chr, start, end) tuple, or a cell
        return not (first and isinstance(first[0], str))
    return False


def _source_name(regions: Any) -> str:
    """How a warning names one region input: its path, or what it is."""
    if isinstance(regions, (str, os.PathLike)):
        return os.fspath(regions)
    return "the regions" if not isinstance(regions, _core.RegionSet) else "the RegionSet"


def _cell_name(cell: Any, i: int) -> str:
    if isinstance(cell, (str, os.PathLike)):
        return os.path.basename(os.fspath(cell))
    return str(i)


def _from_tensor(values: Any) -> Any:
    """A torch tensor as a NumPy array (anything else as it is). A tensor NumPy cannot hold
    (bfloat16) or with no data (on the meta device) is an error, not a torch one."""
    if not (hasattr(values, "detach") and hasattr(values, "cpu")):
        return values
    if getattr(values, "is_meta", False):
        raise _core.InvalidInputError(
            "a tensor on the meta device has no values to read; move it to a real device"
        )
    dtype = getattr(values, "dtype", None)
    if getattr(dtype, "is_floating_point", False) or getattr(dtype, "is_complex", False):
        raise _core.AtacformerTypeError(f"token ids must be integers, got a tensor of {dtype}")
    try:
        return values.detach().cpu().numpy()
    except (TypeError, RuntimeError) as e:
        raise _core.AtacformerTypeError(f"cannot read ids from a tensor of {dtype}: {e}") from e


def _as_id_array(ids: Any) -> np.ndarray:
    """Any int, sequence, NumPy array or torch tensor of ids as a 1-D int64 array. Ids
    beyond int64 (surely unknown) become -1, which decodes as unk. Rows of different
    lengths (a batch of cells) are refused: :meth:`Tokenizer.batch_decode` takes those."""
    ids = _from_tensor(ids)
    try:
        arr = np.asarray(ids)
    except ValueError as e:  # nested sequences of uneven length
        raise _core.InvalidInputError(
            "token ids must be one flat sequence; for a batch of cells of different lengths "
            f"use batch_decode ({e})"
        ) from e
    if arr.dtype == object:
        values = arr.reshape(-1).tolist()
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in values):
            big = np.iinfo(np.int64)
            arr = np.array([x if big.min <= x <= big.max else -1 for x in values], np.int64)
    if arr.dtype == object or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise _core.AtacformerTypeError(f"token ids must be integers, got an array of {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        arr = np.where(arr > np.iinfo(np.int64).max, -1, arr.astype(np.int64))
    return np.ascontiguousarray(arr, dtype=np.int64).reshape(-1)


def _token_strings(tokens: Any) -> list[str]:
    """A sequence of token strings as a list, refusing anything else."""
    if isinstance(tokens, (int, np.integer)) or not isinstance(tokens, Iterable):
        raise _core.AtacformerTypeError(
            f"tokens must be a string or a sequence of strings, got {type(tokens).__name__}"
        )
    values = [t.item() if isinstance(t, np.str_) else t for t in tokens]
    bad = next((t for t in values if not isinstance(t, str)), None)
    if bad is not None:
        raise _core.AtacformerTypeError(
            f"tokens must be strings, got {type(bad).__name__} ({bad!r})"
        )
    return values


def _flat(values: Any, what: str = "input_ids") -> np.ndarray:
    """A sequence, array or tensor as a flat NumPy array."""
    values = _from_tensor(values)
    try:
        return np.asarray(values).reshape(-1)
    except (ValueError, TypeError) as e:
        raise _core.InvalidInputError(f"{what}: not a flat sequence ({e})") from e


def _special_index(attribute: str) -> int:
    """Position of the special token an attribute such as ``cls_token_id`` names, in the
    core's order (the one place the order is stated)."""
    return SPECIAL_TOKEN_NAMES.index(attribute.split("_token")[0])


class _SpecialToken:
    """Class attribute giving a special token's string; ``unk_token = _SpecialToken()``
    takes the token from the attribute's name."""

    index = -1

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.index = _special_index(attribute)
        self.__doc__ = f"The {SPECIAL_TOKEN_NAMES[self.index]} token string."

    def __get__(self, obj: Tokenizer | None, objtype: type | None = None) -> str:
        if obj is None:
            return self  # type: ignore[return-value]
        return obj._tok.special_tokens[self.index]

    def __set__(self, obj: Tokenizer, value: Any) -> None:
        raise AttributeError("a Tokenizer is immutable: its special tokens cannot be changed")


class _SpecialId:
    """Class attribute giving a special token's id (universe size plus its position);
    ``unk_token_id = _SpecialId()`` takes the token from the attribute's name."""

    index = -1

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.index = _special_index(attribute)
        self.__doc__ = f"The id of the {SPECIAL_TOKEN_NAMES[self.index]} token."

    def __get__(self, obj: Tokenizer | None, objtype: type | None = None) -> int:
        if obj is None:
            return self  # type: ignore[return-value]
        return obj._tok.universe_size + self.index

    def __set__(self, obj: Tokenizer, value: Any) -> None:
        raise AttributeError("a Tokenizer is immutable: its special token ids cannot be changed")


class Tokenizer:
    """An immutable, thread-safe interval tokenizer.

    ``Tokenizer(path)`` accepts a ``.bed``/``.bed.gz`` universe, a ``.toml`` config or a
    directory written by :meth:`save_pretrained`.
    """

    unk_token = _SpecialToken()
    pad_token = _SpecialToken()
    mask_token = _SpecialToken()
    cls_token = _SpecialToken()
    eos_token = _SpecialToken()
    bos_token = _SpecialToken()
    sep_token = _SpecialToken()
    unk_token_id = _SpecialId()
    pad_token_id = _SpecialId()
    mask_token_id = _SpecialId()
    cls_token_id = _SpecialId()
    eos_token_id = _SpecialId()
    bos_token_id = _SpecialId()
    sep_token_id = _SpecialId()

    def __init__(self, path: PathLike | None = None, *, _core_tokenizer: Any = None) -> None:
        if _core_tokenizer is None:
            if path is None:
                raise _core.AtacformerTypeError(
                    "Tokenizer() needs a path to a universe, config or directory"
                )
            _core_tokenizer = _core.Tokenizer(path)
            self.__dict__["_name_or_path"] = os.fspath(path)
        self._tok = _core_tokenizer

    @property
    def genome_build(self) -> str | None:
        """The genome build named in the tokenizer's name or path (``hg38``, ``mm10``, ...),
        else in the folder it was loaded from, or None when neither names one."""
        return genome_build(self.name_or_path) or genome_build(self.__dict__.get("_folder"))

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_bed(cls, path: PathLike) -> Tokenizer:
        """A tokenizer over a BED universe (plain or gzip) with default special tokens."""
        return cls(_core_tokenizer=_core.Tokenizer.from_bed(path))._named(path)

    @classmethod
    def from_config(cls, path: PathLike) -> Tokenizer:
        """A tokenizer from a TOML config whose ``universe`` is relative to the file."""
        return cls(_core_tokenizer=_core.Tokenizer.from_config(path))._named(path)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: PathLike,
        revision: str | None = None,
        cache_dir: PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> Tokenizer:
        """Loads ``"demo"`` (the packaged demo model), a local folder, a universe or config
        file, or a Hugging Face Hub repo id.

        A folder is read as ``tokenizer.toml`` if present, else ``universe.bed.gz``, else
        ``universe.bed``. Names are resolved by :func:`atacformer.hub.resolve_pretrained`,
        the one resolver the model classes and the command line use too (a repo id fetches
        the same files, honouring ``HF_HUB_OFFLINE=1`` and the local cache).
        """
        from .hub import DEMO_NAME, resolve_pretrained

        if not isinstance(name_or_path, (str, os.PathLike)):
            raise _core.AtacformerTypeError(
                "from_pretrained takes 'demo', a path or a Hub repo id (a string), got "
                f"{type(name_or_path).__name__}"
            )
        # "demo" means the packaged model here as everywhere, even beside a file named demo.
        if isinstance(name_or_path, (str, os.PathLike)) and os.fspath(name_or_path) != DEMO_NAME:
            if os.path.isfile(name_or_path):
                return cls(name_or_path)

        folder = resolve_pretrained(
            name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            weights=False,
        )
        tok = cls(_core_tokenizer=_core.Tokenizer.from_dir(folder))._named(name_or_path)
        tok.__dict__["_folder"] = os.fspath(folder)
        return tok

    def _named(self, name_or_path: PathLike) -> Tokenizer:
        self.__dict__["_name_or_path"] = os.fspath(name_or_path)
        return self

    @property
    def name_or_path(self) -> str:
        """The name or path the tokenizer was loaded from (as in Hugging Face), else its
        universe file, else ``""``; atlases record it in ``uns["atacformer"]["tokenizer"]``."""
        return self.__dict__.get("_name_or_path") or self._tok.universe().path or ""

    def save_pretrained(self, save_directory: PathLike) -> None:
        """Writes ``universe.bed.gz`` and ``tokenizer.toml`` into ``save_directory``.

        All or nothing: after any failure the folder loads as before or as this tokenizer,
        and the error names ``universe.bed.gz`` or ``tokenizer.toml``. Saves of one
        tokenizer may run at once on a folder, and loads racing a save succeed; saves of
        different tokenizers racing on one folder are not ordered (serialise them).
        """
        self._tok.save_pretrained(save_directory)

    # ------------------------------------------------------------------ tokenizing
    def __call__(
        self,
        regions: Regions,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        truncation_strategy: str = "random",
        seed: int = DEFAULT_SEED,
        chrom_names: str = "auto",
    ) -> BatchEncoding:
        """Tokenizes one region set, or a list of them (a batch), Hugging Face style.

        One set gives 1-D int64 ``input_ids`` and ``attention_mask``. A batch gives a
        :class:`TokenizedCells` as ``input_ids`` when not padded, else ``[n, width]`` int64
        arrays where padded positions hold the pad id and have mask 0. ``truncation`` cuts
        cells to ``max_length``: a seeded random subset in original order
        (``truncation_strategy="random"``) or the first ids (``"first"``).
        ``chrom_names`` matches chromosome names as in :meth:`tokenize_fragments`, and a
        :class:`~atacformer.CoverageWarning` says when the input barely overlaps the
        universe or no cell has a token.
        """
        if not _is_batch(regions):
            # One set is a batch of one cell, through the same ragged padding; row 0.
            if padding in (False, "do_not_pad") and truncation in (False, "do_not_truncate"):
                # The common call, in one trip: the cell padded to its own width in Rust.
                ids, mask, (n, hit, bp), raw = self._tok.encode_row(
                    regions, chrom_names, MIN_INTERVALS
                )
                # The coverage comes (counted in the same pass) only for an input that
                # has no overlap or is large enough to be judged.
                if raw is not None and (not hit or is_low(self._extent, n, hit, bp)):
                    warn_if_poor(
                        Coverage._from_core(raw),
                        [len(ids) if hit else 0],
                        _source_name(regions),
                        self.genome_build,
                        chrom_names,
                        stacklevel=3,
                    )
                enc = BatchEncoding(input_ids=ids)
                if return_attention_mask:
                    enc["attention_mask"] = mask
                return enc.convert_to_tensors(return_tensors)
            one = TokenizedCells._wrap(
                self._tok.encode(regions, chrom_names), None, self.pad_token_id
            )
            self._check_coverage(one, _source_name(regions), chrom_names)
            enc = self._finish(
                one,
                padding,
                truncation,
                max_length,
                None,
                return_attention_mask,
                truncation_strategy,
                seed,
                stack=True,
            )
            for key, value in enc.items():
                enc[key] = value[0]
            return enc.convert_to_tensors(return_tensors)
        cells = self.encode_cells(regions, chrom_names=chrom_names, _stacklevel=5)
        return self._finish(
            cells,
            padding,
            truncation,
            max_length,
            return_tensors,
            return_attention_mask,
            truncation_strategy,
            seed,
        )

    def _finish(
        self,
        cells: TokenizedCells,
        padding: bool | str,
        truncation: bool | str,
        max_length: int | None,
        return_tensors: str | None,
        return_attention_mask: bool,
        truncation_strategy: str,
        seed: int,
        stack: bool = False,
    ) -> BatchEncoding:
        """Applies the truncation and padding options to ragged ids. Unpadded cells stay
        ragged unless tensors are asked for or ``stack`` is set; they must then be of one
        length, and stack into a rectangle."""
        truncate = truncation not in (False, "do_not_truncate")
        max_length = _length_arg(max_length, "max_length")
        if truncate and max_length is None:
            raise _core.InvalidInputError("truncation needs max_length")
        if padding in (False, "do_not_pad"):
            if truncate:
                cells = cells.truncate(max_length, truncation_strategy, seed)  # type: ignore[arg-type]
            if return_tensors is None and not stack:
                return BatchEncoding(input_ids=cells)
            lengths = cells.lengths
            if len(cells) and (lengths != lengths[0]).any():
                raise _core.InvalidInputError(
                    f"return_tensors={return_tensors!r} needs padding=True: the cells differ "
                    f"in length ({int(lengths.min())} to {int(lengths.max())} tokens)"
                )
            # Cells of one length stack into a rectangle, as in Hugging Face.
            width = int(lengths[0]) if len(cells) else 0
            enc = cells.to_padded(width, "first", 0, pad_token_id=self.pad_token_id)
            if not return_attention_mask:
                del enc["attention_mask"]
            return enc.convert_to_tensors(return_tensors)
        if padding in (True, "longest"):
            longest = int(cells.lengths.max()) if len(cells) else 0
            width = min(longest, max_length) if truncate else longest  # type: ignore[type-var]
        elif padding == "max_length":
            if max_length is None:
                raise _core.InvalidInputError("padding='max_length' needs max_length")
            too_long = np.flatnonzero(cells.lengths > max_length)
            if too_long.size and not truncate:
                raise _core.InvalidInputError(
                    f"cell {too_long[0]} has {cells.lengths[too_long[0]]} tokens, more than "
                    f"max_length={max_length}; pass truncation=True"
                )
            width = max_length
        else:
            raise _core.InvalidInputError(
                f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', "
                f"got {padding!r}"
            )
        enc = cells.to_padded(
            width,
            truncation_strategy,
            seed,
            return_tensors=None,
            pad_token_id=self.pad_token_id,
            pad_to_max_length=True,
        )
        if not return_attention_mask:
            del enc["attention_mask"]
        return enc.convert_to_tensors(return_tensors)

    def encode_cells(
        self,
        cells: Sequence[Regions],
        names: Sequence[str] | None = None,
        chrom_names: str = "auto",
        _stacklevel: int = 4,
    ) -> TokenizedCells:
        """Tokenizes many region sets in parallel (GIL released) into TokenizedCells.
        Each cell is anything the single call accepts; empty or unmatched cells get [unk].

        The result's :attr:`TokenizedCells.qc` gives per cell ``n_fragments`` (its
        intervals), ``n_fragments_in_universe``, ``frac_in_universe`` and ``n_tokens`` (0
        for an [unk] cell); :attr:`TokenizedCells.coverage` sums all the cells' intervals.
        ``chrom_names`` and :class:`~atacformer.CoverageWarning` are as in
        :meth:`tokenize_fragments`."""
        ragged = self._tok.encode_batch(cells, chrom_names)
        if names is None:
            names = [_cell_name(c, i) for i, c in enumerate(cells)]
        out = TokenizedCells._wrap(ragged, names, self.pad_token_id)
        source = f"{len(out)} cell(s)" if len(out) != 1 else _source_name(cells[0])
        self._check_coverage(out, source, chrom_names, _stacklevel)
        return out

    def tokenize_files(
        self, paths: Sequence[PathLike], chrom_names: str = "auto"
    ) -> TokenizedCells:
        """Tokenizes BED files (bulk region sets) in parallel; cells are named by file.
        QC, coverage, ``chrom_names`` and the coverage warning are as in
        :meth:`encode_cells`."""
        paths = _items(paths, "paths")
        bad = next((p for p in paths if not isinstance(p, (str, os.PathLike))), None)
        if bad is not None:
            raise _core.AtacformerTypeError(
                f"tokenize_files takes paths (str or os.PathLike), got {type(bad).__name__}"
            )
        names = [os.path.basename(os.fspath(p)) for p in paths]
        return self.encode_cells(paths, names=names, chrom_names=chrom_names, _stacklevel=5)

    def tokenize_fragments(
        self,
        path: PathLike,
        barcodes: Sequence[str] | PathLike | None = None,
        min_fragments: int = 0,
        max_fragments: int | None = None,
        unique: bool = True,
        on_error: str = "raise",
        barcode_suffix: str = "auto",
        chrom_names: str = "auto",
    ) -> TokenizedCells:
        """Tokenizes a 10x fragment file (plain, gzip or BGZF), one cell per barcode.

        Streams the file on several threads with memory bounded by the output. A fragment
        that overlaps nothing contributes nothing. ``unique`` keeps each id once per cell in
        genomic order, with :attr:`TokenizedCells.counts` saying how many of the cell's
        fragments overlap each region (without ``unique`` there are no counts). The result's
        :attr:`TokenizedCells.qc` gives per cell ``n_fragments`` (its fragment lines),
        ``n_fragments_in_universe``, ``frac_in_universe`` and ``n_tokens``. ``barcodes`` (a
        sequence, a file with one per line, cellranger's ``barcodes.tsv(.gz)`` or
        cellranger-atac's ``singlecell.csv``; see :mod:`atacformer.barcodes`) selects cells
        and fixes their order, and a listed cell with no tokens gets ``[unk]`` (count 0,
        ``n_tokens`` 0; ``n_fragments`` 0 when it is absent from the file); otherwise cells
        come in first-seen order and empty ones are dropped. ``barcode_suffix="auto"``
        matches ``AAAC-1`` to ``AAAC`` when only one side carries ``-1``-style suffixes (the
        cells keep the listed names; ``"exact"`` turns this off). Listed barcodes the file
        lacks are counted in a :class:`~atacformer.BarcodeWarning`, and a list none of which
        is in the file is an :class:`~atacformer.InvalidInputError` showing examples of
        both. ``min_fragments`` and
        ``max_fragments`` bound the number of fragment lines per barcode.
        ``on_error="skip"`` skips malformed lines and warns with their count; it also skips
        corrupt BGZF blocks (a block is checked against its size, CRC32 and ``ISIZE``) with
        their lines, and warns with the number of blocks lost (a block whose size swallows
        the next counts the blocks it holds) and of lines skipped: a line that a lost block
        cuts (the text between the newlines around it) is skipped and counted too. A block
        that cannot be read at all (a size too small, a truncated last block) loses the rest
        of the file, with a warning. A BGZF file without its end-of-file block is read
        whole, with a warning, as htslib does. ``barcodes`` given as a list must be
        non-empty strings without whitespace.

        ``chrom_names="auto"`` matches a chromosome the universe lacks under its alias
        (``chr`` added or removed, ``M``/``MT``/``chrMT`` <-> ``chrM``); ``"exact"`` does not.
        The result's :attr:`TokenizedCells.coverage` (:class:`atacformer.Coverage`) counts
        the lines of the barcodes read as cells (all lines without a barcode list), and a
        :class:`atacformer.CoverageWarning` names the likely cause and fix when they barely
        overlap the universe or no cell has a token.
        """
        if on_error not in ("raise", "skip"):
            raise _core.InvalidInputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        listing = _barcodes.Listing.of(path, barcodes, barcode_suffix, min_fragments, max_fragments)
        listed = {"min_fragments": min_fragments} if listing is None else listing.core_arguments()
        ragged, names, stats = _core.tokenize_fragments(
            self._tok,
            path,
            **listed,
            max_fragments=max_fragments,
            unique=unique,
            skip_bad_lines=on_error == "skip",
            chrom_names=chrom_names,
        )
        if stats["skipped_lines"]:
            warnings.warn(
                f"{os.fspath(path)}: skipped {stats['skipped_lines']} malformed line(s); the "
                f"first, line {stats['first_skipped_line']}: {stats['first_skipped_problem']}",
                stacklevel=2,
            )
        if stats["lost_blocks"]:
            warnings.warn(
                f"{os.fspath(path)}: skipped {stats['lost_blocks']} corrupt BGZF block(s) "
                f"and their lines, and {stats['skipped_lines']} skipped line(s) in all "
                "(lines cut by a lost block included); the first bad block: "
                f"{stats['first_lost_block']}",
                stacklevel=2,
            )
        if "missing_eof_at" in stats:
            warnings.warn(
                f"{os.fspath(path)}: the BGZF file ends at byte {stats['missing_eof_at']} "
                "without its end-of-file block; it may be truncated",
                stacklevel=2,
            )
        cells = TokenizedCells._wrap(ragged, names, self.pad_token_id)
        if listing is not None:
            cells = listing.finish(cells)
        self._check_coverage(cells, os.fspath(path), chrom_names)
        return cells

    def _check_coverage(
        self, cells: TokenizedCells, source: str, chrom_names: str, stacklevel: int = 4
    ) -> None:
        """Warns (:class:`CoverageWarning`) when ``cells``' input barely overlaps the
        universe or no cell has a token; the warning points at the caller's caller."""
        warn_if_poor(
            cells.coverage,
            cells.qc["n_tokens"],
            source,
            self.genome_build,
            chrom_names,
            stacklevel,
        )

    @property
    def _extent(self) -> tuple[int, int, int]:
        """The universe's (span, bp, regions), for the coverage check; cached."""
        cached = self.__dict__.get("_extent_cache")
        if cached is None:
            cached = self._tok.universe_extent
            self.__dict__["_extent_cache"] = cached
        return cached

    def tokenize_anndata(
        self,
        adata: Any,
        layer: str | None = None,
        chunk_size: int = 10_000,
        chrom_names: str = "auto",
    ) -> TokenizedCells:
        """Tokenizes a cells x peaks AnnData, one cell per row, aligned with ``obs_names``.

        Peaks come from ``var`` columns ``chr``/``chrom``, ``start``, ``end``, or from
        ``var_names`` like ``chr1:100-600`` or ``chr1-100-600``. A nonzero entry means
        accessible. ``X`` (or ``layers[layer]``) may be CSR, CSC or dense; a backed
        ``.h5ad`` is read ``chunk_size`` rows at a time. Each peak is mapped to universe
        ids once, then each cell gathers the ids of its peaks (unique, genomic order).

        The result's :attr:`TokenizedCells.qc` counts peaks, not fragments: per cell
        ``n_fragments`` is the row's nonzero peaks and ``n_fragments_in_universe`` those
        that overlap the universe. :attr:`TokenizedCells.coverage` counts the ``var`` peaks
        (each once, whatever the cells). ``chrom_names`` and the coverage warning are as in
        :meth:`tokenize_fragments`.
        """
        from ._anndata import check_anndata, obs_names, peaks_of, row_chunks

        check_anndata(adata)
        # Built once (overlaps and genomic ranks), reused for every chunk of rows.
        table = _core.PeakTable(self._tok, peaks_of(adata), chrom_names)
        parts = [
            table.gather(indptr, indices, data)
            for indptr, indices, data in row_chunks(adata, layer, chunk_size)
        ]
        ragged = parts[0] if len(parts) == 1 else _core.Ragged.concat(parts)
        qcs = [p.qc for p in parts]
        qc = {k: np.concatenate([q[k] for q in qcs]) for k in qcs[0]} if len(parts) > 1 else None
        cells = TokenizedCells._wrap(
            ragged,
            obs_names(adata),
            self.pad_token_id,
            qc,
            Coverage._from_core(table.coverage),
        )
        self._check_coverage(cells, "the AnnData's peaks", chrom_names)
        return cells

    def pad(
        self,
        encoded_inputs: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pads a batch, following ``transformers.PreTrainedTokenizerBase.pad``.

        ``encoded_inputs`` is a list of mappings with ``input_ids`` (what data collators
        pass), or one mapping whose ``input_ids`` is a list of id sequences or a
        :class:`TokenizedCells`. Other keys are stacked as they are. Nothing is truncated.
        """
        extra: dict[str, Any] = {}
        masks: list[np.ndarray] | None = None
        max_length = _length_arg(max_length, "max_length")
        pad_to_multiple_of = _length_arg(pad_to_multiple_of, "pad_to_multiple_of")
        if isinstance(encoded_inputs, (list, tuple)):
            rows = _items(encoded_inputs, "encoded_inputs")
            if not rows:
                raise _core.InvalidInputError("pad() got an empty batch")
            for i, r in enumerate(rows):
                if not isinstance(r, Mapping):
                    raise _core.AtacformerTypeError(
                        f"pad(): row {i} must be a mapping with input_ids, got {type(r).__name__}"
                    )
                if "input_ids" not in r:
                    raise _core.InvalidInputError(f"pad(): row {i} has no input_ids")
            ids = [_flat(r["input_ids"], f"row {i}: input_ids") for i, r in enumerate(rows)]
            if all("attention_mask" in r for r in rows):
                masks = [_flat(r["attention_mask"], "attention_mask") for r in rows]
            for key in rows[0]:
                if key not in ("input_ids", "attention_mask"):
                    try:
                        extra[key] = np.stack([np.asarray(r[key]) for r in rows])
                    except (KeyError, ValueError, TypeError) as e:
                        raise _core.InvalidInputError(
                            f"pad(): {key!r} cannot be stacked across the rows ({e!r})"
                        ) from e
        else:
            if not isinstance(encoded_inputs, Mapping):
                raise _core.AtacformerTypeError(
                    "pad() takes a list of mappings with input_ids or one mapping, got "
                    f"{type(encoded_inputs).__name__}"
                )
            if "input_ids" not in encoded_inputs:
                raise _core.InvalidInputError("pad(): the mapping has no input_ids")
            ids = encoded_inputs["input_ids"]
            mask = encoded_inputs.get("attention_mask")
            if mask is not None and not isinstance(ids, TokenizedCells):
                masks = [_flat(m, "attention_mask") for m in _items(mask, "attention_mask")]
            for key, value in encoded_inputs.items():
                if key not in ("input_ids", "attention_mask"):
                    extra[key] = value
        cells = (
            ids
            if isinstance(ids, TokenizedCells)
            else TokenizedCells.from_lists([_flat(i) for i in _items(ids, "input_ids")])
        )
        if masks is not None and [len(m) for m in masks] != cells.lengths.tolist():
            raise _core.InvalidInputError("pad(): attention_mask and input_ids differ in length")
        longest = int(cells.lengths.max()) if len(cells) else 0
        if padding in (False, "do_not_pad"):
            return BatchEncoding(input_ids=cells, **extra)
        width = max(longest, max_length or 0) if padding == "max_length" else longest
        if pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        enc = cells.to_padded(
            width, "first", 0, pad_token_id=self.pad_token_id, pad_to_max_length=True
        )
        if masks is not None:
            # Keep the masks given (positions padded earlier stay 0); new padding gets 0.
            given = TokenizedCells.from_lists(masks).to_padded(
                width, "first", 0, pad_token_id=0, pad_to_max_length=True
            )
            enc["attention_mask"] = given["input_ids"]
        if return_attention_mask is False:
            del enc["attention_mask"]
        enc.update(extra)
        return enc.convert_to_tensors(return_tensors)

    def tokenize(self, regions: Regions) -> list[str]:
        """The token strings (``chr:start-end``) of the universe regions hit by ``regions``."""
        return self._tok.tokenize(regions)

    def encode(self, tokens: str | Sequence[str]) -> list[int]:
        """Ids of one token string or a list of them; unknown tokens give the unk id."""
        if isinstance(tokens, str):
            return [self._tok.token_to_id(tokens)]
        return self._tok.tokens_to_ids(_token_strings(tokens))

    def decode(self, ids: Any, strict: bool = False) -> list[str]:
        """Token strings of an int, list, NumPy array or torch tensor of ids (one cell;
        a rectangle is read row after row). Rows of different lengths are refused with an
        :class:`~atacformer.InvalidInputError`: :meth:`batch_decode` decodes a batch.

        An id outside the vocabulary (negative, or ``vocab_size`` and above) decodes to the
        unk token, as in Hugging Face tokenizers; with ``strict=True`` it is an
        :class:`~atacformer.InvalidInputError` naming the id and its position."""
        array = _as_id_array(ids)
        if strict:
            bad = np.flatnonzero((array < 0) | (array >= self.vocab_size))
            if bad.size:
                i = int(bad[0])
                raise _core.InvalidInputError(
                    f"id {int(array[i])} (at position {i}) is not in the vocabulary of "
                    f"{self.vocab_size} ids (0 to {self.vocab_size - 1})"
                    + (f", nor are {bad.size - 1} more" if bad.size > 1 else "")
                )
        return self._tok.ids_to_tokens(array)

    def batch_decode(self, sequences: Any) -> list[list[str]]:
        """Token strings of each cell of a batch: a list of id sequences (of any
        lengths), a 2-D array or tensor, or a :class:`TokenizedCells`."""
        if isinstance(sequences, TokenizedCells):
            rows: list[Any] = list(sequences)
        else:
            sequences = _from_tensor(sequences)
            if isinstance(sequences, np.ndarray) and sequences.ndim != 2:
                raise _core.InvalidInputError(
                    f"batch_decode takes a 2-D batch, got an array of shape {sequences.shape}"
                )
            rows = _items(sequences, "sequences")
        return [self.decode(r) for r in rows]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """A scalar for a string, a list for a list; unknown tokens give the unk id."""
        if isinstance(tokens, str):
            return self._tok.token_to_id(tokens)
        return self._tok.tokens_to_ids(_token_strings(tokens))

    def convert_ids_to_tokens(self, ids: Any) -> str | list[str]:
        """A string for a scalar id, a list for a sequence; unknown ids give unk."""
        if isinstance(ids, (int, np.integer)) or (hasattr(ids, "ndim") and ids.ndim == 0):
            return self._tok.ids_to_tokens(_as_id_array(ids))[0]
        return self._tok.ids_to_tokens(_as_id_array(ids))

    def decode_regions(self, ids: Any) -> _core.RegionSet:
        """The universe regions of ``ids`` as a RegionSet, skipping special tokens."""
        return self._tok.decode_regions(_as_id_array(ids))

    # ------------------------------------------------------------------ vocabulary
    @property
    def universe(self) -> _core.RegionSet:
        """The universe regions; region ``i`` has id ``i``."""
        return self._tok.universe()

    @property
    def universe_id(self) -> str:
        """The universe's identifier: :attr:`RegionSet.identifier` of :attr:`universe`, an MD5
        digest of its chromosomes, starts and ends in id order. Two tokenizers with the same
        ``universe_id`` give the same ids; atlases and embeddings record it in
        ``uns["atacformer"]["universe_id"]``."""
        cached = self.__dict__.get("_universe_id")
        if cached is None:
            cached = self._tok.universe().identifier
            self.__dict__["_universe_id"] = cached
        return cached

    @property
    def vocab_size(self) -> int:
        """Universe regions plus the seven special tokens."""
        return self._tok.vocab_size

    def __len__(self) -> int:
        return self._tok.vocab_size

    def get_vocab(self) -> dict[str, int]:
        """Every token string mapped to its id."""
        return self._tok.get_vocab()

    @property
    def tokenizer_type(self) -> str:
        return self._tok.tokenizer_type

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """``{"unk_token": "<unk>", ..., "sep_token": "<sep>"}``."""
        return {
            f"{n}_token": t
            for n, t in zip(SPECIAL_TOKEN_NAMES, self._tok.special_tokens, strict=True)
        }

    @property
    def all_special_tokens(self) -> list[str]:
        return list(self._tok.special_tokens)

    @property
    def all_special_ids(self) -> list[int]:
        first = self._tok.universe_size
        return list(range(first, first + len(SPECIAL_TOKEN_NAMES)))

    def get_special_tokens_mask(
        self, tokens: Any, already_has_special_tokens: bool = True
    ) -> list[int]:
        """1 for each special token, 0 for any other, as in Hugging Face. Tokens are ids
        or token strings; a string counts only when it is exactly a special token."""
        if isinstance(tokens, str):
            tokens = [tokens]
        elif not hasattr(tokens, "__array__"):
            tokens = _items(tokens, "tokens")  # also takes generators, read once
        if hasattr(tokens, "detach") or (hasattr(tokens, "dtype") and tokens.dtype.kind in "iu"):
            ids = _as_id_array(tokens)
        else:
            values = np.asarray(tokens, dtype=object).reshape(-1).tolist()
            if all(isinstance(t, str) for t in values):
                special = set(self._tok.special_tokens)
                return [int(t in special) for t in values]
            ids = _as_id_array(values)
        first = self._tok.universe_size
        return ((ids >= first) & (ids < first + len(SPECIAL_TOKEN_NAMES))).astype(int).tolist()

    # -------------------------------------------------------------------- protocol
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self._tok == other._tok

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Tokenizer(universe_size={self._tok.universe_size}, "
            f"vocab_size={self._tok.vocab_size}, tokenizer_type={self.tokenizer_type!r})"
        )
