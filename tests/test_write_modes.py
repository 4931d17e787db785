"""Outputs written through a temporary file get the permissions of any new file (0666 less
the umask), and paths that are not regular files get an error that says so."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

import atacformer
from atacformer import InvalidInputError, MissingFileError, TokenizedCells
from atacformer._atomic import atomic_path
from atacformer.synthetic import write_bgzf
from atacformer.tokenized_cells import read_gtok


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_outputs_get_the_usual_permissions(tmp_path: Path) -> None:
    # The umask of this process is read once at import; 0666 less it is what open() gives.
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("y")
    assert mode(tmp_path / "out.txt") == mode(plain)
    with atomic_path(tmp_path / "out.zarr", directory=True) as tmp:
        (tmp / "a").write_text("z")
    os.mkdir(tmp_path / "plain_dir")
    assert mode(tmp_path / "out.zarr") == mode(tmp_path / "plain_dir")


def test_saved_cells_and_bgzf_are_readable_by_others_as_plain_files_are(tmp_path: Path) -> None:
    cells = TokenizedCells.from_lists([[1, 2], [3]], names=["a", "b"])
    cells.save(tmp_path / "c.atok")
    cells.to_gtok(tmp_path / "gtok")
    write_bgzf(tmp_path / "f.tsv.gz", b"chr1\t1\t2\tA\t1\n")
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    want = mode(plain)
    assert want & stat.S_IRGRP  # the test's own premise: the usual umask lets others read
    for p in (tmp_path / "c.atok", tmp_path / "gtok" / "a.gtok", tmp_path / "f.tsv.gz"):
        assert mode(p) == want, p


@pytest.mark.parametrize("reader", [TokenizedCells.load, read_gtok])
def test_a_folder_or_device_is_not_called_missing(tmp_path: Path, reader) -> None:
    with pytest.raises(InvalidInputError, match="is a folder"):
        reader(tmp_path)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        reader("/dev/null")
    with pytest.raises(MissingFileError):
        reader(tmp_path / "absent")


def test_a_loaded_atok_equals_what_was_saved(tmp_path: Path) -> None:
    cells = TokenizedCells.from_lists([[5, 6, 7], [8]], names=["x", "y"])
    cells.save(tmp_path / "c.atok")
    back = atacformer.TokenizedCells.load(tmp_path / "c.atok")
    assert [list(map(int, c)) for c in back] == [[5, 6, 7], [8]]
    assert np.asarray(back.offsets).tolist() == [0, 3, 4]
