"""Pickling into DataLoader workers (fork and spawn) and use from many Python threads."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from atacformer import Tokenizer

from conftest import oracle_ids, write_bed


def _case(tmp_path: Path, n_cells: int = 12):
    rng = random.Random(5)
    universe = sorted({("chr1", s, s + 300) for s in rng.sample(range(0, 10**6, 7), 800)})
    cells = [
        [("chr1", s, s + 200) for s in rng.sample(range(0, 10**6), 50)] for _ in range(n_cells)
    ]
    tok = Tokenizer(write_bed(tmp_path / "u.bed", universe))
    return tok, universe, cells


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers(tmp_path: Path, context: str):
    import torch

    from workers import CellDataset

    tok, universe, cells = _case(tmp_path)
    loader = torch.utils.data.DataLoader(
        CellDataset(tok, cells),
        batch_size=None,
        num_workers=2,
        multiprocessing_context=context,
    )
    got = [t.tolist() for t in loader]
    assert got == [oracle_ids(universe, c) for c in cells]


def test_threads_share_one_tokenizer(tmp_path: Path):
    tok, universe, cells = _case(tmp_path, n_cells=40)
    want = [oracle_ids(universe, c) for c in cells]
    results: dict[int, list[int]] = {}

    def work(k: int) -> None:
        for i in range(k, len(cells), 4):
            results[i] = tok(cells[i])["input_ids"].tolist()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(cells))] == want
