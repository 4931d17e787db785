"""Tiny Atacformer configurations and synthetic cells shared by the model and training tests."""

from __future__ import annotations

import numpy as np

N_SPECIAL = 7


def tiny_config(n_regions: int = 50, **overrides):
    """A small config whose special ids follow the real layout: regions, then 7 specials."""
    from atacformer.configuration_atacformer import AtacformerConfig

    v = n_regions + N_SPECIAL
    kwargs = dict(
        vocab_size=v,
        pad_token_id=n_regions + 1,
        cls_token_id=n_regions + 3,
        eos_token_id=n_regions + 4,
        bos_token_id=n_regions + 5,
        sep_token_id=n_regions + 6,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    kwargs.update(overrides)
    return AtacformerConfig(**kwargs)


def synthetic_cells(
    n_types: int = 3,
    cells_per_type: int = 100,
    peaks_per_type: int = 20,
    n_background: int = 60,
    p_peak: float = 0.5,
    p_background: float = 0.15,
    n_closed: int = 0,
    seed: int = 0,
) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Cells of known types: each type opens its own peaks, all share background regions.

    Regions ``[t * peaks_per_type, (t + 1) * peaks_per_type)`` belong to type ``t``; the last
    ``n_background`` regions before the ``n_closed`` never-open ones are open at random in every
    cell. Returns the cells (sorted ids, like a tokenizer in genomic order), their types and the
    number of regions.
    """
    rng = np.random.default_rng(seed)
    n_open = n_types * peaks_per_type + n_background
    n_regions = n_open + n_closed
    background = np.arange(n_types * peaks_per_type, n_open)
    cells, types = [], []
    for t in range(n_types):
        own = np.arange(t * peaks_per_type, (t + 1) * peaks_per_type)
        for _ in range(cells_per_type):
            ids = np.concatenate(
                [
                    own[rng.random(len(own)) < p_peak],
                    background[rng.random(len(background)) < p_background],
                ]
            )
            cells.append(np.sort(ids))
            types.append(t)
    order = rng.permutation(len(cells))
    return [cells[i] for i in order], np.asarray(types)[order], n_regions


def stock_encoder(model):
    """A ``torch.nn.TransformerEncoder`` holding ``model``'s encoder weights (loaded strictly)."""
    import torch

    cfg = model.config
    layer = torch.nn.TransformerEncoderLayer(
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.intermediate_size,
        dropout=0.1,
        batch_first=True,
    )
    enc = torch.nn.TransformerEncoder(layer, cfg.num_hidden_layers, enable_nested_tensor=False)
    enc.load_state_dict(model.base_model.encoder.state_dict(), strict=True)
    return enc.eval()


def oracle_tokens(model, cells):
    """Brute force: each cell alone through the stock encoder; a list of ``[n_i, H]`` arrays."""
    import torch

    enc = stock_encoder(model)
    emb = model.base_model.embeddings
    out = []
    with torch.no_grad():
        for cell in cells:
            ids = torch.as_tensor(np.asarray(cell, dtype=np.int64)).reshape(1, -1)
            x = emb.token_embeddings(ids)
            if model.config.use_pos_embeddings:
                x = x + emb.position_embeddings(torch.arange(ids.shape[1]))[None]
            out.append(enc(x)[0].numpy() if ids.shape[1] else np.zeros((0, x.shape[-1])))
    return out


def oracle_pooled(model, cells):
    """Brute-force cell embeddings ``[n_cells, H]``: the plain mean of :func:`oracle_tokens`."""
    h = model.config.hidden_size
    return np.stack([t.mean(0) if len(t) else np.zeros(h) for t in oracle_tokens(model, cells)])
