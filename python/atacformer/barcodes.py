"""Barcode lists for fragment files: reading them, matching ``-1`` suffixes, reporting misses.

A list of barcodes (``barcodes=`` of :meth:`Tokenizer.tokenize_fragments` and
:func:`atacformer.pp.tokenize`, ``--barcodes`` on the command line) is one of:

- a Python sequence of strings;
- a file with one barcode per line, or cellranger's ``barcodes.tsv(.gz)`` (its first
  column);
- cellranger-atac's ``singlecell.csv`` (the rows whose ``is__cell_barcode`` is 1; the
  ``NO_BARCODE`` row is skipped), or any CSV table with a ``barcode`` column
  (cellranger-arc's ``per_barcode_metrics.csv``: the rows whose ``is_cell`` is 1).

Suffixes (``barcode_suffix="auto"``, the default): cellranger writes ``AAACGAAAGACACTTC-1``
while other tools strip the ``-1``. When the listed barcodes all carry a ``-<digits>``
suffix and the fragment file's do not (judged from its first lines), or the other way
round, the list is matched with the suffix removed (or the file's one suffix added); the
cells keep the listed names. ``"exact"`` matches the strings as they are.

Reporting: listed barcodes that are not in the file stay as cells (``[unk]``,
``qc["n_fragments"] == 0``), and a :class:`BarcodeWarning` gives their number and a few
examples (the command line prints it as one line). If none is in the file, an
:class:`~atacformer.InvalidInputError` shows three examples from each side.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from operator import index
from typing import Any, Union

from . import _core

__all__ = [
    "BARCODE_SUFFIX_MODES",
    "BarcodeWarning",
    "read_barcodes",
]

PathLike = Union[str, "os.PathLike[str]"]

BARCODE_SUFFIX_MODES = ("auto", "exact")
"""The values of ``barcode_suffix``."""
SUFFIX = re.compile(r"-\d+$")
"""A cellranger-style barcode suffix (``-1``, ``-12``)."""
PEEK_BARCODES = 200
"""Distinct barcodes read from the start of a fragment file to judge its suffixes."""
PEEK_BYTES = 256 << 10
"""At most this many (decompressed) bytes are read for that."""
EXAMPLES = 3
"""Examples shown from each side when barcodes do not match."""
SAMPLE_LISTED = 200
"""Listed barcodes read from a list file to judge their suffixes."""


class BarcodeWarning(UserWarning):
    """Listed barcodes that the fragment file does not have (their number and examples)."""

    __module__ = "atacformer"


def read_barcodes(path: PathLike) -> list[str]:
    """The barcodes a file lists, in its order: one per line (the first tab-separated
    column; blank and ``#`` lines skipped), cellranger's ``barcodes.tsv(.gz)``, or a CSV
    table with a header naming a ``barcode`` column (cellranger-atac's ``singlecell.csv``:
    the rows whose ``is__cell_barcode`` is 1, or ``is_cell`` for cellranger-arc; the
    ``NO_BARCODE`` row skipped). Plain or gzip. Errors name the file and line."""
    return _core.read_barcode_file(path)


def listed_barcodes(barcodes: Sequence[str] | PathLike | None) -> list[str] | None:
    """The barcodes of a ``barcodes=`` argument (a file is read with :func:`read_barcodes`;
    a sequence must hold non-empty strings without whitespace)."""
    from .tokenized_cells import _items

    if barcodes is None:
        return None
    if isinstance(barcodes, (str, os.PathLike)):
        return read_barcodes(barcodes)
    listed = []
    for b in _items(barcodes, "barcodes"):
        if not isinstance(b, str):
            raise _core.AtacformerTypeError(
                f"barcodes must be strings, got {type(b).__name__} {b!r}"
            )
        # Fragment fields are separated by tabs or spaces (README), so a barcode holding
        # whitespace, or an empty one, could never match a line.
        if not b or any(c.isspace() for c in b):
            raise _core.InvalidInputError(
                f"barcode {b!r} can never match a fragment line: barcodes are "
                "non-empty and hold no whitespace (fields are tab or space separated)"
            )
        listed.append(b)
    return listed


def peek_fragment_barcodes(path: PathLike, limit: int = PEEK_BARCODES) -> list[str]:
    """The first ``limit`` distinct barcodes (4th column) of a fragment file, read from the
    first :data:`PEEK_BYTES` of its text (plain, gzip or BGZF); damage is left for the real
    reader to report."""
    seen: dict[str, None] = {}
    try:
        with open(path, "rb") as raw:
            magic = raw.read(2)
            raw.seek(0)
            stream: Any = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw
            head = stream.read(PEEK_BYTES)
    except (OSError, EOFError, zlib.error, ValueError):
        return []
    lines = head.split(b"\n")
    if len(head) == PEEK_BYTES:
        lines.pop()  # cut by the peek
    for line in lines:
        if line.startswith(b"#"):
            continue
        fields = line.split(None, 4)
        if len(fields) >= 4:
            seen.setdefault(fields[3].decode("utf-8", "replace"), None)
            if len(seen) >= limit:
                break
    return list(seen)


@dataclass(frozen=True)
class SuffixMatch:
    """How listed barcodes are looked up: ``query[i]`` stands for ``listed[i]``."""

    listed: list[str]
    query: list[str]
    renamed: bool


def _all_suffixed(barcodes: Sequence[str]) -> bool:
    return bool(barcodes) and all(SUFFIX.search(b) for b in barcodes)


def _none_suffixed(barcodes: Sequence[str]) -> bool:
    return bool(barcodes) and not any(SUFFIX.search(b) for b in barcodes)


def match_suffixes(listed: list[str], seen: Sequence[str], mode: str) -> SuffixMatch:
    """The barcodes to look up for ``listed``, given the first barcodes ``seen`` in the
    file: under ``"auto"`` a suffix on one side only is removed or added (when that keeps
    the barcodes distinct and the file has one suffix), otherwise they are exact."""
    exact = SuffixMatch(listed, listed, renamed=False)
    if mode == "exact" or not listed or not seen:
        return exact
    if not set(seen).isdisjoint(listed):
        return exact
    if _all_suffixed(listed) and _none_suffixed(seen):
        query = [SUFFIX.sub("", b) for b in listed]
        if len(set(query)) == len(query):
            return SuffixMatch(listed, query, renamed=True)
        return exact
    if _none_suffixed(listed) and _all_suffixed(seen):
        suffixes = {m.group() for m in map(SUFFIX.search, seen) if m}
        if len(suffixes) == 1:
            (suffix,) = suffixes
            return SuffixMatch(listed, [b + suffix for b in listed], renamed=True)
    return exact


def check_mode(barcode_suffix: str) -> None:
    if barcode_suffix not in BARCODE_SUFFIX_MODES:
        raise _core.InvalidInputError(
            f"barcode_suffix must be 'auto' or 'exact', got {barcode_suffix!r}"
        )


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(items[:EXAMPLES])
    return shown + (", ..." if len(items) > EXAMPLES else "")


@dataclass
class Listing:
    """A ``barcodes=`` list being matched against one fragment file.

    A list file whose barcodes need no suffix change goes to the core as a path (read
    once, in Rust); otherwise the barcodes to look up go as a list. Either way the core
    returns every listed barcode, those absent from the file with ``qc["n_fragments"]``
    0, and :meth:`finish` reports them, renames and applies ``min_fragments``.
    """

    path: PathLike
    seen: list[str]
    min_fragments: int
    listed: list[str] | None = None
    """The listed barcodes, when read in Python (None: the file goes to the core)."""
    listed_path: PathLike | None = None
    match: SuffixMatch | None = None

    @classmethod
    def of(
        cls,
        path: PathLike,
        barcodes: Sequence[str] | PathLike | None,
        barcode_suffix: str,
        min_fragments: int,
        max_fragments: int | None = None,
    ) -> Listing | None:
        """The listing for ``barcodes`` (None without a list)."""
        check_mode(barcode_suffix)
        if barcodes is None:
            return None
        seen = peek_fragment_barcodes(path)
        if isinstance(barcodes, (str, os.PathLike)) and max_fragments is None:
            sample = _core.read_barcode_file(barcodes, limit=SAMPLE_LISTED)
            if not match_suffixes(sample, seen, barcode_suffix).renamed:
                return cls(path, seen, min_fragments, listed_path=barcodes)
        listed = listed_barcodes(barcodes)
        assert listed is not None
        match = match_suffixes(listed, seen, barcode_suffix)
        return cls(path, seen, min_fragments, listed=listed, match=match)

    def core_arguments(self) -> dict[str, Any]:
        """The ``barcodes``/``barcodes_path`` and ``min_fragments`` the core is called with
        (no ``min_fragments``: listed barcodes absent from the file must come back to be
        counted)."""
        # A min_fragments that is not a count goes to the core as it is, to be refused there.
        try:
            valid = not isinstance(self.min_fragments, bool) and index(self.min_fragments) >= 0
        except TypeError:
            valid = False
        core_min = 0 if valid else self.min_fragments
        if self.listed_path is not None:
            return {"barcodes_path": self.listed_path, "min_fragments": core_min}
        assert self.match is not None
        return {"barcodes": self.match.query, "min_fragments": core_min}

    def finish(self, cells: Any) -> Any:
        """The cells under their listed names, below ``min_fragments`` dropped; warns about
        listed barcodes the file lacks and refuses a list none of which it has."""
        import warnings

        import numpy as np

        if self.match is not None and self.match.renamed:
            back = dict(zip(self.match.query, self.match.listed, strict=True))
            cells.names = [back.get(n, n) for n in cells.names]
        listed = self.listed if self.listed is not None else cells.names
        n_fragments = np.asarray(cells.qc["n_fragments"])
        absent = np.flatnonzero(n_fragments == 0)
        if len(absent) == len(listed):  # every listed barcode came back, and none was seen
            raise none_found_error(self.path, listed, self.seen)
        if len(absent):
            names = [cells.names[i] for i in absent[:EXAMPLES].tolist()]
            warnings.warn(missing_warning(self.path, len(absent), names, len(listed)), stacklevel=3)
        if index(self.min_fragments) > 0:
            cells = cells.take(np.flatnonzero(n_fragments >= index(self.min_fragments)))
        return cells


def none_found_error(path: PathLike, listed: Sequence[str], seen: Sequence[str]) -> Exception:
    """The error for a list none of whose barcodes is in the file."""
    file_side = _examples(list(seen)) if seen else "no barcodes"
    return _core.InvalidInputError(
        f"{os.fspath(path)}: none of the {len(listed)} listed barcodes is in the file; "
        f"listed: {_examples(list(listed))}; in the file: {file_side} "
        "(another sample's list, or barcodes written differently?)"
    )


def missing_warning(
    path: PathLike, n_missing: int, examples: Sequence[str], n_listed: int
) -> BarcodeWarning:
    """The warning for the ``n_missing`` listed barcodes that the file does not have."""
    shown = ", ".join(examples[:EXAMPLES]) + (", ..." if n_missing > EXAMPLES else "")
    return BarcodeWarning(
        f"{os.fspath(path)}: {n_missing} of {n_listed} listed barcodes are not in the file "
        f"({shown}); they are kept as cells with no fragments ([unk], n_fragments 0)"
    )
