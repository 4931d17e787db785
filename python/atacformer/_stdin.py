"""``-`` as an input: standard input, spooled to a temporary file named ``stdin``.

The readers take paths (the fragment reader reads a file on several threads), so standard
input is copied to ``<temporary folder>/stdin`` first: plain or gzip/BGZF bytes alike (the
readers sniff the compression), and a BED input becomes one cell named ``stdin``. Unless a
format is given, the first data line decides: 4 or 5 columns whose 4th is not a number
and whose 5th (if any) is a whole number are a fragment file; anything else is BED.
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

STDIN = "-"
SPOOL_NAME = "stdin"


def is_stdin(data: Any) -> bool:
    """``"-"``, alone or as the one entry of a list."""
    if isinstance(data, str):
        return data == STDIN
    return isinstance(data, (list, tuple)) and len(data) == 1 and data[0] == STDIN


def _spool() -> Path:
    from .exceptions import InvalidInputError

    if sys.stdin is None or sys.stdin.isatty():
        raise InvalidInputError(
            "'-' reads standard input, and none is piped in "
            "(for example: zcat fragments.tsv.gz | atacformer tokenize - ...)"
        )
    folder = Path(tempfile.mkdtemp(prefix="atacformer-stdin-"))
    path = folder / SPOOL_NAME
    source = sys.stdin.buffer
    with open(path, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return path


def _remove(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)


def sniff_format(path: Path) -> str:
    """``"fragments"`` or ``"bed"``, from the first data line of ``path``."""
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream: Any = gzip.GzipFile(fileobj=raw) if gz else raw
            for _ in range(1000):
                line = stream.readline(1 << 16)
                if not line:
                    break
                fields = line.split()
                if not fields or fields[0].startswith((b"#", b"track", b"browser")):
                    continue
                fragment_like = len(fields) in (4, 5) and not fields[3].isdigit()
                if len(fields) == 5:
                    fragment_like = fragment_like and fields[4].isdigit()
                return "fragments" if fragment_like else "bed"
    except (OSError, EOFError, zlib.error):
        pass
    return "bed"  # empty or unreadable: the BED reader says what is wrong


@contextlib.contextmanager
def stdin_input(data: Any, fmt: str) -> Iterator[tuple[Any, str]]:
    """``(data, fmt)`` as they are, or for ``"-"`` the spooled file and its format (the
    file is removed when the block ends)."""
    if not is_stdin(data):
        yield data, fmt
        return
    path = _spool()
    try:
        yield path, (fmt if fmt != "auto" else sniff_format(path))
    finally:
        _remove(path)


def spool_for_command(inputs: Sequence[str], fmt: str) -> tuple[list[str], str]:
    """For a command: ``inputs`` as they are, or ``["-"]`` spooled (removed at exit)."""
    if not is_stdin(list(inputs)):
        return list(inputs), fmt
    path = _spool()
    atexit.register(_remove, path)
    return [os.fspath(path)], (fmt if fmt != "auto" else sniff_format(path))
