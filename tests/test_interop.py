"""Tokenizer and model together: padded batches straight into the model, same truncation."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from _model_helpers import tiny_config

from atacformer import AtacformerModel, Tokenizer

from conftest import write_bed


def test_model_takes_the_tokenizer_output_and_truncates_like_it(tmp_path: Path):
    rng = random.Random(2)
    universe = sorted({("chr1", s, s + 300) for s in rng.sample(range(0, 10**5, 10), 40)})
    tok = Tokenizer(write_bed(tmp_path / "u.bed", universe))
    cells = [[("chr1", s, s + 2000) for s in rng.sample(range(10**5), n)] for n in (3, 9, 1)]
    model = AtacformerModel(tiny_config(n_regions=len(universe))).eval()
    batch = tok(cells, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (*batch["input_ids"].shape, 32)
    # The model's own truncation is the tokenizer's: same kept tokens, so same embeddings.
    ragged = tok(cells)["input_ids"]
    cut = tok(cells, truncation=True, max_length=4, seed=5)["input_ids"]
    assert ragged.lengths.max() > 4 and cut.lengths.max() == 4  # truncation happens
    a = model.encode_tokenized_cells(ragged, max_tokens_per_cell=4, seed=5, progress=False)
    b = model.encode_tokenized_cells(cut, progress=False)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_the_tokenizer_ragged_output_is_the_model_packed_input(tmp_path: Path):
    rng = random.Random(4)
    universe = sorted({("chr1", s, s + 300) for s in rng.sample(range(0, 10**5, 10), 40)})
    tok = Tokenizer(write_bed(tmp_path / "u.bed", universe))
    cells = [[("chr1", s, s + 2000) for s in rng.sample(range(10**5), n)] for n in (3, 9, 1)]
    model = AtacformerModel(tiny_config(n_regions=len(universe))).eval()
    ragged = tok(cells)["input_ids"]  # TokenizedCells: flat ids and offsets
    padded = tok(cells, padding=True, return_tensors="pt")
    with torch.inference_mode():
        packed = model(
            input_ids=torch.from_numpy(ragged.ids), cu_seqlens=torch.from_numpy(ragged.offsets)
        ).last_hidden_state
        full = model(**padded).last_hidden_state
    assert packed.shape == (int(ragged.offsets[-1]), 32)
    real = padded["attention_mask"].bool()
    torch.testing.assert_close(packed, full[real], atol=1e-5, rtol=0)
