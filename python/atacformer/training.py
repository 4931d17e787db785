"""Data collators for training Atacformer with the Hugging Face ``Trainer`` (no logging deps).

Every collator takes a list of examples and returns padded ``torch.long`` tensors named like the
``forward`` arguments of the matching model class:

- :class:`DataCollatorForReplacedTokenDetection`: ELECTRA-style corruption for
  ``AtacformerForReplacedTokenDetection``;
- :class:`DataCollatorForTriplets`: anchor, positive and negative cells for
  ``AtacformerForCellClustering``;
- :class:`DataCollatorForBatchCorrection`: the replaced-token batch plus ``batch_labels`` for
  ``AtacformerForUnsupervisedBatchCorrection``.

An example is a 1-D sequence of token ids or a mapping holding one (``input_ids``, or ``anchor``,
``positive`` and ``negative``). Use ``remove_unused_columns=False`` in ``TrainingArguments`` so
that the Trainer hands the examples over untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from .configuration_atacformer import AtacformerConfig
from .modeling_atacformer import IGNORE_INDEX, truncate_ragged

__all__ = [
    "DataCollatorForBatchCorrection",
    "DataCollatorForReplacedTokenDetection",
    "DataCollatorForTriplets",
]

N_SPECIAL_TOKENS = 7
"""The vocabulary ends with unk, pad, mask, cls, eos, bos and sep, in that order."""


class _SeededCollator:
    """A NumPy generator seeded once, and re-seeded per ``DataLoader`` worker.

    Without the per-worker step, every worker would hold a copy of the same generator and
    corrupt its batches identically.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._worker: int | None = None

    @property
    def rng(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        worker = None if info is None else info.id
        if worker != self._worker:
            self._worker = worker
            self._rng = np.random.default_rng([self.seed, -1 if worker is None else worker])
        return self._rng


def _as_ids(example: Any, key: str) -> np.ndarray:
    """One cell's ids ``[n]`` int64 from an example (a mapping with ``key``, or the ids)."""
    value = example[key] if isinstance(example, Mapping) else example
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.int64).reshape(-1)


def _ragged(cells: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(cells) + 1, dtype=np.int64)
    np.cumsum([len(c) for c in cells], out=offsets[1:])
    flat = np.concatenate(cells) if cells else np.zeros(0, dtype=np.int64)
    return flat, offsets


def _pad(
    flat: np.ndarray, offsets: np.ndarray, pad_id: int, multiple: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Ragged cells -> right-padded ids ``[B, L]`` and 0/1 mask ``[B, L]``, both int64."""
    lengths = np.diff(offsets)
    width = int(lengths.max()) if len(lengths) else 0
    if multiple:
        width = -(-width // multiple) * multiple
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(len(flat)) - np.repeat(offsets[:-1], lengths)
    ids = np.full((len(lengths), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(lengths), width), dtype=np.int64)
    ids[rows, cols] = flat
    mask[rows, cols] = 1
    return ids, mask


class _PaddingCollator(_SeededCollator):
    """Truncation and padding shared by the collators."""

    def __init__(
        self,
        pad_token_id: int,
        max_length: int | None = None,
        truncation_strategy: Literal["random", "first"] = "random",
        pad_to_multiple_of: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.pad_token_id = pad_token_id
        self.max_length = max_length
        self.truncation_strategy = truncation_strategy
        self.pad_to_multiple_of = pad_to_multiple_of

    def _pad_cells(self, cells: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Truncates to ``max_length`` (a fresh seed per batch) and pads: ``[B, L]`` twice."""
        flat, offsets = _ragged(cells)
        if self.max_length is not None:
            seed = int(self.rng.integers(2**63))
            flat, offsets = truncate_ragged(
                flat, offsets, self.max_length, self.truncation_strategy, seed
            )
        return _pad(flat, offsets, self.pad_token_id, self.pad_to_multiple_of)


class DataCollatorForReplacedTokenDetection(_PaddingCollator):
    """Replaces a fraction ``mlm_probability`` of the non-special tokens with random ids.

    Each real, non-special token is picked independently with probability ``mlm_probability``
    and replaced by an id drawn uniformly from the non-special ids other than itself. Returns
    ``input_ids`` and ``attention_mask`` ``[B, L]`` and ``labels`` ``[B, L]``: 1 where replaced,
    0 where original, -100 on special and pad tokens.
    """

    def __init__(
        self,
        vocab_size: int,
        special_token_ids: Sequence[int],
        pad_token_id: int,
        mlm_probability: float = 0.15,
        max_length: int | None = None,
        truncation_strategy: Literal["random", "first"] = "random",
        pad_to_multiple_of: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(pad_token_id, max_length, truncation_strategy, pad_to_multiple_of, seed)
        if not 0.0 <= mlm_probability <= 1.0:
            raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}")
        self.vocab_size = vocab_size
        self.special = np.unique(np.asarray(list(special_token_ids) + [pad_token_id]))
        if self.special.size and (self.special.min() < 0 or self.special.max() >= vocab_size):
            raise ValueError("special token ids must lie in [0, vocab_size)")
        self.n_regular = vocab_size - len(self.special)
        if self.n_regular < 2:
            raise ValueError("replaced-token detection needs at least two non-special ids")
        self.mlm_probability = mlm_probability

    @classmethod
    def from_config(cls, config: AtacformerConfig, **kwargs: Any) -> Any:
        """Uses the vocabulary layout of Atacformer: the last seven ids are special."""
        specials = range(config.vocab_size - N_SPECIAL_TOKENS, config.vocab_size)
        if config.pad_token_id not in specials:
            raise ValueError(
                f"pad_token_id {config.pad_token_id} is not one of the last {N_SPECIAL_TOKENS} "
                "ids; pass special_token_ids explicitly"
            )
        return cls(config.vocab_size, list(specials), config.pad_token_id, **kwargs)

    def _rank(self, ids: np.ndarray) -> np.ndarray:
        """Index of each non-special id among the non-special ids, in id order."""
        return ids - np.searchsorted(self.special, ids, side="left")

    def _unrank(self, rank: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`_rank`: skips over the (sorted) special ids."""
        ids = rank.copy()
        for s in self.special:
            ids += ids >= s
        return ids

    def corrupt(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Padded ids and mask ``[B, L]`` -> corrupted ids and labels ``[B, L]`` int64."""
        regular = (mask != 0) & ~np.isin(ids, self.special)
        labels = np.where(regular, 0, IGNORE_INDEX).astype(np.int64)
        picked = regular & (self.rng.random(ids.shape) < self.mlm_probability)
        original = ids[picked]
        draw = self.rng.integers(0, self.n_regular - 1, size=original.shape)
        draw += draw >= self._rank(original)  # never the original id
        corrupted = ids.copy()
        corrupted[picked] = self._unrank(draw)
        labels[picked] = 1
        return corrupted, labels

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        ids, mask = self._pad_cells([_as_ids(e, "input_ids") for e in examples])
        corrupted, labels = self.corrupt(ids, mask)
        return {
            "input_ids": torch.from_numpy(corrupted),
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(labels),
        }


class DataCollatorForBatchCorrection(DataCollatorForReplacedTokenDetection):
    """The replaced-token batch plus ``batch_labels`` ``[B]``, from each ``batch_label``."""

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        batch = super().__call__(examples)
        labels = [e["batch_label"] if "batch_label" in e else e["batch_labels"] for e in examples]
        batch["batch_labels"] = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        return batch


class DataCollatorForTriplets(_PaddingCollator):
    """Pads the ``anchor``, ``positive`` and ``negative`` cells of each example.

    Returns ``{role}_input_ids`` and ``{role}_attention_mask`` ``[B, L_role]`` for each role.
    """

    ROLES = ("anchor", "positive", "negative")

    @classmethod
    def from_config(cls, config: AtacformerConfig, **kwargs: Any) -> Any:
        """Takes the pad id from the model's config."""
        return cls(config.pad_token_id, **kwargs)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for role in self.ROLES:
            ids, mask = self._pad_cells([_as_ids(e, role) for e in examples])
            batch[f"{role}_input_ids"] = torch.from_numpy(ids)
            batch[f"{role}_attention_mask"] = torch.from_numpy(mask)
        return batch
