"""Shared fixtures: small files written by the tests themselves, and a brute-force oracle."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

DATA = Path(__file__).parent / "data"

# One fixed, derandomised profile for every property test, so CI runs are repeatable.
settings.register_profile(
    "atacformer-ci",
    derandomize=True,
    max_examples=60,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("atacformer-ci")


def write_bed(path: Path, rows, gz: bool = False) -> Path:
    """Writes rows (tuples or raw strings) as tab-separated lines."""
    text = "".join((r if isinstance(r, str) else "\t".join(map(str, r))) + "\n" for r in rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def oracle_ids(universe, queries) -> list[int]:
    """Brute force: for each query in order, every overlapping universe id sorted by
    (start, end); [unk] when nothing overlaps. universe/queries are lists of tuples."""
    uc = np.array([u[0] for u in universe])
    us = np.array([u[1] for u in universe], dtype=np.int64)
    ue = np.array([u[2] for u in universe], dtype=np.int64)
    out: list[int] = []
    for c, qs, qe in queries:
        hit = np.nonzero((uc == c) & (us < qe) & (qs < ue))[0]
        out.extend(sorted(hit.tolist(), key=lambda i: (us[i], ue[i])))
    return out or [len(universe)]


@pytest.fixture
def one_torch_thread():
    """Runs a test with one torch thread, restoring the count afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def peaks_dir() -> Path:
    return DATA / "tokenizers"


@pytest.fixture
def small_universe(tmp_path: Path):
    """A hand-checked universe: nested and overlapping regions on chr1, one on chr2."""
    rows = [
        ("chr1", 100, 200),  # id 0
        ("chr1", 50, 150),  # id 1
        ("chr2", 10, 20),  # id 2
        ("chr1", 120, 130),  # id 3, nested in 0 and 1
        ("chr1", 0, 1000),  # id 4, covers all of chr1 above
    ]
    return rows, write_bed(tmp_path / "universe.bed", rows)
