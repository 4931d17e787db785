"""Writing files so that nothing is lost: every output goes to a uniquely named temporary
sibling and is renamed over its final name only once it is complete, and no output may
replace one of the inputs it was made from.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .exceptions import AtacformerIOError, InvalidInputError

__all__ = ["atomic_path", "refuse_overwriting_inputs"]

PathLike = str | os.PathLike[str]


@contextlib.contextmanager
def atomic_path(path: PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yields a fresh temporary path beside ``path`` (same folder, same suffix) to write
    into; on a clean exit it is renamed over ``path`` in one step, on any error it is
    removed and ``path`` keeps its old contents. ``directory=True`` gives an empty
    temporary folder instead of a file (for formats such as ``.zarr``).

    An ``OSError`` while writing (a full disk, a read-only folder) becomes an
    :class:`~atacformer.AtacformerIOError` that names ``path``.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise AtacformerIOError(2, "the output folder does not exist", str(parent))
    prefix = f".{path.name}."
    try:
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=f".tmp{path.suffix}", dir=parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as e:
        raise AtacformerIOError(
            e.errno, f"cannot write beside {path}: {e.strerror}", str(path)
        ) from e
    try:
        yield tmp
        # mkstemp makes files only the owner can read; outputs get the usual permissions.
        tmp.chmod((0o777 if directory else 0o666) & ~_UMASK)
        if directory and path.is_dir() and not path.is_symlink():
            # Folders cannot be swapped in one rename; the old one goes only after the new
            # one is complete, so an interruption leaves one of the two whole.
            old = Path(tempfile.mkdtemp(prefix=prefix, suffix=".old", dir=parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        if isinstance(e, AtacformerIOError):
            raise
        raise AtacformerIOError(
            e.errno, f"could not write {path}: {e.strerror or e}", str(path)
        ) from e
    except BaseException:
        _remove(tmp)
        raise


def _read_umask() -> int:
    """The process's umask, read once at import (setting it is the only portable way to
    read it, so it is not done per write, where other threads may be creating files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _remove(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def refuse_overwriting_inputs(output: PathLike, inputs: Iterable[PathLike | None]) -> None:
    """Raises :class:`~atacformer.InvalidInputError` when ``output`` is one of ``inputs``:
    the same path, or the same file reached through a link or another spelling."""
    out = Path(output)
    for given in inputs:
        if given is None:
            continue
        src = Path(given)
        same = out.resolve() == src.resolve()
        if not same and out.exists() and src.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(out, src)
        if same:
            raise InvalidInputError(
                f"the output {out} is the input {src}: writing it would destroy the input; "
                "choose another output path"
            )
