"""What a list of input paths names: fragment files, BED files, an ``.h5ad`` or an ``.atok``.

Used by :func:`atacformer.pp.tokenize` (and the command line, which checks its inputs before
it loads anything).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._core import InvalidInputError, MissingFileError

BED_SUFFIXES = (".bed", ".bed.gz", ".narrowpeak", ".narrowpeak.gz", ".broadpeak", ".broadpeak.gz")
FRAGMENT_SUFFIXES = (".tsv", ".tsv.gz", ".tsv.bgz", ".bgz", ".frag.gz")
FORMATS = ("auto", "fragments", "bed", "h5ad", "atok")


@dataclass(frozen=True)
class Source:
    """What the inputs are: ``kind`` is fragments, bed, h5ad or atok, read from ``paths``."""

    kind: str
    paths: tuple[Path, ...]

    def describe(self) -> str:
        if len(self.paths) == 1:
            return f"{self.paths[0]} ({self.kind})"
        return f"{len(self.paths)} {self.kind} files"


def kind_of(path: Path) -> str | None:
    """The input kind a file name implies, or None when it says nothing."""
    name = path.name.lower()
    if name.endswith(".atok"):
        return "atok"
    if name.endswith(".h5ad"):
        return "h5ad"
    if "fragment" in name or name.endswith(FRAGMENT_SUFFIXES):
        return "fragments"
    if name.endswith(BED_SUFFIXES):
        return "bed"
    return None


def is_path_list(data: object) -> bool:
    """A path, or a non-empty list or tuple of paths."""
    if isinstance(data, (str, os.PathLike)):
        return True
    return (
        isinstance(data, (list, tuple))
        and bool(data)
        and all(isinstance(p, (str, os.PathLike)) for p in data)
    )


def detect_source(inputs: Sequence[str | os.PathLike[str]], fmt: str = "auto") -> Source:
    """Checks that the inputs exist and decides how to read them.

    One file is read by its name (``.atok``, ``.h5ad``, a name containing ``fragment`` or
    ending in ``.tsv[.gz]``/``.bgz``, else ``.bed[.gz]``) unless ``fmt`` says otherwise; a
    directory means every BED file in it; several paths must all be BED files or all be
    fragment files.
    """
    if fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    paths = [Path(p).expanduser() for p in inputs]
    if not paths:
        raise InvalidInputError("no input given")
    for p in paths:
        if not p.exists():
            raise MissingFileError(errno.ENOENT, "no such file or directory", str(p))
    if len(paths) == 1 and paths[0].is_dir():
        found = sorted(
            p for p in paths[0].iterdir() if p.is_file() and p.name.lower().endswith(BED_SUFFIXES)
        )
        if not found:
            raise InvalidInputError(
                f"{paths[0]} holds no BED files (*.bed, *.bed.gz, *.narrowPeak)"
            )
        return Source("bed", tuple(found))
    if any(p.is_dir() for p in paths):
        raise InvalidInputError("give one directory, or a list of files, not both")
    kinds = [fmt if fmt != "auto" else kind_of(p) for p in paths]
    if len(paths) > 1:
        if all(k == "bed" for k in kinds):
            return Source("bed", tuple(paths))
        if all(k == "fragments" for k in kinds):
            return Source("fragments", tuple(paths))
        raise InvalidInputError(
            "several inputs must all be BED files (one cell or sample each) or all be "
            "fragment files (one sample each)"
        )
    kind = kinds[0]
    if kind is None:
        raise InvalidInputError(
            f"cannot tell the format of {paths[0]} from its name; "
            "pass format (--format) fragments, bed, h5ad or atok"
        )
    return Source(kind, tuple(paths))


def sample_names(paths: Sequence[Path]) -> list[str]:
    """One short name per fragment file: the file name without its suffixes, or the path
    below the files' common folder when two file names are alike (``s1/fragments``)."""

    def strip(name: str) -> str:
        lower = name.lower()
        for suffix in sorted(FRAGMENT_SUFFIXES + (".gz",), key=len, reverse=True):
            if lower.endswith(suffix):
                return name[: -len(suffix)]
        return name

    names = [strip(p.name) for p in paths]
    if len(set(names)) == len(names):
        return names
    resolved = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    names = [strip(p.relative_to(common).as_posix()) for p in resolved]
    if len(set(names)) != len(names):
        raise InvalidInputError("the same fragment file is given twice")
    return names
