"""Cell embeddings from tokenized cells: input conversion, truncation, batching by length, pooling.

The model file holds the model; this module holds what runs around it. :func:`encode` is what
``model.encode_tokenized_cells`` calls: it turns any accepted cell input into one
:class:`~atacformer.tokenized_cells.TokenizedCells` (:func:`as_tokenized_cells`), cuts long
cells (:func:`truncate`), sorts the cells by length and groups them into batches
(:func:`length_sorted_batches`), calls the model's public ``forward`` on each batch (packed, or
padded through ``TokenizedCells.to_padded``) and mean-pools each cell's tokens
(:func:`mean_pool`, the one pooling function, which the task heads use too).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from .tokenized_cells import TokenizedCells

if TYPE_CHECKING:  # pragma: no cover - import cycle at run time
    from .modeling_atacformer import AtacformerPreTrainedModel

__all__ = ["as_tokenized_cells", "encode", "length_sorted_batches", "mean_pool", "truncate"]

# Packed batches are cut at a token budget so that the widest activation, [tokens,
# intermediate] fp32, stays near 24 MiB whatever batch_size is (64 cells of 4,000 tokens would
# otherwise need 0.8 GB per activation at the published shape). Packed cells do not interact, so
# the cut changes no result.
_PACKED_BYTES = 24 << 20

Layout = Literal["auto", "packed", "padded"]


# --------------------------------------------------------------------------- pooling


def mean_pool(
    hidden: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over each cell's real tokens, ``[n_cells, H]`` (zeros for a cell without tokens;
    :func:`encode` warns about those).

    Padded: ``hidden`` ``[B, L, H]`` with ``attention_mask`` ``[B, L]`` (bool or 0/1; None means
    every position is a token). Packed: ``hidden`` ``[T, H]`` with ``cu_seqlens`` ``[n + 1]``,
    cell ``i`` owning rows ``cu_seqlens[i]:cu_seqlens[i + 1]``. A padded batch is reduced to
    the packed case, so both layouts share one sum and one division.
    """
    if cu_seqlens is None:
        if hidden.dim() != 3:
            raise ValueError(f"padded hidden states must be [B, L, H], got {tuple(hidden.shape)}")
        batch, width, size = hidden.shape
        if attention_mask is None:
            lengths = torch.full((batch,), width, dtype=torch.int64, device=hidden.device)
            hidden = hidden.reshape(batch * width, size)
        else:
            keep = attention_mask.to(hidden.device).bool().reshape(batch, width)
            lengths = keep.sum(1)
            hidden = hidden[keep]  # row-major: each cell's tokens stay together, in order
    else:
        if attention_mask is not None:
            raise ValueError("mean_pool takes attention_mask (padded) or cu_seqlens (packed)")
        lengths = torch.diff(torch.as_tensor(cu_seqlens, device=hidden.device).long())
    segment = torch.repeat_interleave(torch.arange(len(lengths), device=hidden.device), lengths)
    sums = hidden.new_zeros(len(lengths), hidden.shape[-1]).index_add_(0, segment, hidden)
    return sums / lengths.clamp(min=1).unsqueeze(1).to(hidden.dtype)


# --------------------------------------------------------------------------- cell inputs


def as_tokenized_cells(cells: Any) -> TokenizedCells:
    """Any accepted cell input as a :class:`TokenizedCells` (returned as is when it is one).

    Accepted: a ``TokenizedCells`` (or any object with flat ``ids`` and ``offsets``), a list of
    1-D id arrays, lists or tensors, or a padded mapping with ``input_ids`` ``[B, L]`` and an
    optional ``attention_mask`` (the tokenizer's output; its ``input_ids`` may also be ragged).
    """
    if isinstance(cells, TokenizedCells):
        return cells
    if isinstance(cells, Mapping):
        inner = cells["input_ids"]
        if hasattr(inner, "ids") and hasattr(inner, "offsets"):
            return as_tokenized_cells(inner)
        ids = _to_numpy(inner)
        if ids.ndim != 2:
            raise ValueError(f"padded input_ids must be [B, L], got shape {ids.shape}")
        mask = cells.get("attention_mask")
        keep = np.ones(ids.shape, dtype=bool) if mask is None else _to_numpy(mask).astype(bool)
        offsets = np.zeros(ids.shape[0] + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=offsets[1:])
        return TokenizedCells(ids[keep], offsets)  # row-major indexing keeps each cell's order
    if hasattr(cells, "ids") and hasattr(cells, "offsets"):
        return TokenizedCells(np.asarray(cells.ids), np.asarray(cells.offsets))
    if isinstance(cells, (Sequence, np.ndarray)) and not isinstance(cells, (str, bytes)):
        return TokenizedCells.from_lists([_to_numpy(c).reshape(-1) for c in cells])
    raise TypeError(
        "cells must be a TokenizedCells, a list of id arrays or a mapping with input_ids, "
        f"got {type(cells).__name__}"
    )


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def truncate(
    cells: TokenizedCells,
    max_tokens: int,
    strategy: Literal["random", "first"] = "random",
    seed: int = 0,
) -> TokenizedCells:
    """``cells`` with at most ``max_tokens`` ids each, through ``TokenizedCells.truncate``.

    ``"first"`` keeps the leading ids, ``"random"`` a seeded uniform subset in original order:
    the tokenizer's own truncation, so a cell is cut the same way here and in
    ``tokenizer(cells, truncation=True, ...)``. ``cells`` comes back unchanged when no cell is
    too long.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens_per_cell must be positive, got {max_tokens}")
    if strategy not in ("random", "first"):
        raise ValueError(f"truncation_strategy must be 'random' or 'first', got {strategy!r}")
    if not (cells.lengths > max_tokens).any():
        return cells
    return cells.truncate(max_tokens, strategy, seed)


# --------------------------------------------------------------------------- batching


def length_sorted_batches(
    lengths: np.ndarray, batch_size: int, budget: int | None = None
) -> Iterator[np.ndarray]:
    """Cell indices per batch, longest cells first: ``batch_size`` cells at most each.

    Similar lengths share a batch (little padding) and memory peaks at the start. With a
    ``budget`` (packed layout), a batch is also cut before it passes ``budget`` tokens; packed
    cells do not interact, so the cut changes nothing but memory use.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for first in range(0, len(order), batch_size):
        idx = order[first : first + batch_size]
        if budget is None:
            yield idx
            continue
        start, total = 0, 0
        for j, n in enumerate(lengths[idx].tolist()):
            if total and total + n > budget:
                yield idx[start:j]
                start, total = j, 0
            total += n
        yield idx[start:]


def _gathered_batches(
    cells: TokenizedCells, batch_size: int, budget: int | None
) -> Iterator[tuple[np.ndarray, TokenizedCells]]:
    """:func:`length_sorted_batches` of ``cells``: each batch's indices and its cells.

    A batch is built from views of its own cells, so its cost is its size: selecting from
    ``cells`` directly reads every cell's offset, which repeated per batch grows with the
    square of the number of cells.
    """
    ids, offsets = cells.ids, cells.offsets
    for idx in length_sorted_batches(cells.lengths, batch_size, budget):
        bounds = zip(offsets[idx].tolist(), offsets[idx + 1].tolist(), strict=True)
        yield idx, TokenizedCells.from_lists([ids[a:b] for a, b in bounds])


def _token_budget(hidden: int, intermediate: int) -> int:
    """Tokens per packed batch: the widest fp32 activation stays near ``_PACKED_BYTES``."""
    return max(512, _PACKED_BYTES // (4 * max(intermediate, 3 * hidden)))


# --------------------------------------------------------------------------- encoding


def encode(
    model: AtacformerPreTrainedModel,
    cells: Any,
    batch_size: int = 64,
    pool_tokens: bool = True,
    max_tokens_per_cell: int | None = None,
    truncation_strategy: Literal["random", "first"] = "random",
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    return_tensors: Literal["np", "pt"] = "np",
    layout: Layout = "auto",
) -> np.ndarray | torch.Tensor | list[np.ndarray] | list[torch.Tensor]:
    """Cell embeddings ``[n_cells, hidden]`` float32 from ``model``'s encoder, in input order.

    The arguments are those of ``AtacformerPreTrainedModel.encode_tokenized_cells``, which
    documents them. ``seed`` 0 draws the random truncation subset, as in the first release.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if return_tensors not in ("np", "pt"):
        raise ValueError(f"return_tensors must be 'np' or 'pt', got {return_tensors!r}")
    if layout not in ("auto", "packed", "padded"):
        raise ValueError(f"layout must be 'auto', 'packed' or 'padded', got {layout!r}")
    device = parse_device(device, "device")  # before any work, and never meta or xla
    check_loaded = getattr(model, "check_encoder_loaded", None)
    if check_loaded is not None:
        check_loaded()
    cells = as_tokenized_cells(cells)
    if max_tokens_per_cell is not None:
        cells = truncate(cells, max_tokens_per_cell, truncation_strategy, seed)
    lengths = cells.lengths
    base: Any = model.base_model  # the AtacformerModel inside any head
    if len(lengths):
        base.embeddings.check_length(int(lengths.max()))
    if device is not None:
        model.to(device)  # type: ignore[arg-type]
    run_device = next(model.parameters()).device
    if layout == "auto":
        layout = "packed" if run_device.type == "cpu" else "padded"
    autocast = _autocast(run_device, dtype, next(model.parameters()).dtype)
    config = model.config
    budget = _token_budget(config.hidden_size, config.intermediate_size)

    n_cells = len(lengths)
    n_empty = int(np.count_nonzero(lengths == 0))
    if n_empty and pool_tokens:
        warnings.warn(
            f"{n_empty} of {n_cells} cells have no tokens; their embeddings are zeros",
            UserWarning,
            stacklevel=3,
        )
    pooled = np.zeros((n_cells, config.hidden_size if pool_tokens else 0), dtype=np.float32)
    per_token: list[Any] = [None] * (0 if pool_tokens else n_cells)
    batches = _gathered_batches(cells, batch_size, budget if layout == "packed" else None)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast, _progress(n_cells, progress) as bar:
            for idx, batch in batches:
                cu_seqlens = torch.from_numpy(_buffer(batch, "offsets")).to(run_device)
                if layout == "packed":
                    tokens = _encode_packed(base, batch, cu_seqlens, run_device)
                else:
                    tokens = _encode_padded(base, batch, run_device)
                tokens = tokens.float()  # [T_b, H], cells in `idx` order, back to back
                if not bool(torch.isfinite(tokens).all()):
                    _refuse_non_finite(model)
                if pool_tokens:
                    pooled[idx] = mean_pool(tokens, cu_seqlens=cu_seqlens).cpu().numpy()
                else:
                    parts = tokens.cpu().split(batch.lengths.tolist())
                    for i, part in zip(idx.tolist(), parts, strict=True):
                        per_token[i] = part.numpy() if return_tensors == "np" else part
                bar.update(len(idx))
    finally:
        model.train(was_training)
    if pool_tokens:
        return torch.from_numpy(pooled) if return_tensors == "pt" else pooled
    return per_token


def _refuse_non_finite(model: Any) -> None:
    """Raises :class:`~atacformer.InvalidInputError`: the encoder gave NaN or infinite
    values, naming the first parameter that holds any."""
    from .exceptions import InvalidInputError

    bad = next(
        (name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())),
        None,
    )
    where = f" (parameter {bad} holds NaN or infinite values)" if bad else ""
    raise InvalidInputError(
        f"the model produced non-finite embeddings (NaN or infinity){where}; its weights "
        "are broken, or the dtype overflows: refusing to return them"
    )


def _buffer(batch: TokenizedCells, name: str) -> np.ndarray:
    """The array behind ``batch.ids``/``batch.offsets`` for ``torch.from_numpy``. Users get
    read-only views, which torch warns about; a batch here is built by this module for one
    forward pass that only reads it, so its own buffer is handed over (no copy)."""
    return getattr(batch._ragged, name)


def _encode_packed(
    base: Any, batch: TokenizedCells, cu_seqlens: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """The batch's cells laid end to end through ``forward(cu_seqlens=...)``: ``[T, H]``."""
    out = base(
        input_ids=torch.from_numpy(_buffer(batch, "ids")).to(device),
        cu_seqlens=cu_seqlens,
        max_seqlen=int(batch.lengths.max()) if len(batch) else 0,
        return_dict=True,
    )
    return out.last_hidden_state


def _encode_padded(base: Any, batch: TokenizedCells, device: torch.device) -> torch.Tensor:
    """The batch padded by ``TokenizedCells.to_padded``, then unpadded: real tokens ``[T, H]``."""
    if batch.offsets[-1] == 0:
        return torch.zeros(0, base.config.hidden_size, device=device)
    padded = batch.to_padded(pad_token_id=base.config.pad_token_id, return_tensors="pt")
    input_ids = padded["input_ids"].to(device, non_blocking=True)
    keep = padded["attention_mask"].to(device, non_blocking=True).bool()
    hidden = base(input_ids=input_ids, attention_mask=keep, return_dict=True).last_hidden_state
    return hidden[keep]


def _autocast(
    device: torch.device, dtype: torch.dtype | str | None, model_dtype: torch.dtype
) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` when it differs from the model's, else a no-op."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."))
    if dtype is None or dtype == model_dtype:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Any]:
    """A tqdm bar counting cells, or a silent stand-in when disabled or tqdm is missing."""
    bar: Any = None
    if enabled:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="cell", desc="Encoding cells")
        except ImportError:
            bar = None
    if bar is None:
        bar = _NoBar()
    try:
        yield bar
    finally:
        bar.close()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


DEVICE_TYPES = ("cpu", "cuda", "mps")
"""The devices embedding runs on (``meta`` holds no data, others lack the kernels)."""


def parse_device(device: Any, what: str = "device") -> torch.device | None:
    """``device`` as a ``torch.device`` that this machine has, or None when not given;
    otherwise an :class:`~atacformer.InvalidInputError` naming the argument ``what``."""
    from .exceptions import InvalidInputError

    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise InvalidInputError(
            f"{what} {device!r} is not a torch device (cpu, cuda, cuda:1, mps)"
        ) from e
    if parsed.type not in DEVICE_TYPES:
        raise InvalidInputError(
            f"{what} {device}: embedding runs on {', '.join(DEVICE_TYPES)}, not on "
            f"{parsed.type} devices"
        )
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"{what} {device}: CUDA is not available on this machine")
    if parsed.type == "cuda" and parsed.index is not None:
        count = torch.cuda.device_count()
        if parsed.index >= count:
            raise InvalidInputError(f"{what} {device}: this machine has {count} CUDA devices")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidInputError(f"{what} {device}: MPS is not available on this machine")
    return parsed
