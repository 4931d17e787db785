"""Data collators for training Atacformer with the Hugging Face ``Trainer`` (no logging deps).

Every collator takes a list of examples and returns padded ``torch.long`` tensors named like the
``forward`` arguments of the matching model class:

- :class:`DataCollatorForReplacedTokenDetection`: ELECTRA-style corruption for
  ``AtacformerForReplacedTokenDetection``;
- :class:`DataCollatorForTriplets`: anchor, positive and negative cells for
  ``AtacformerForCellClustering``, under the reference's (geniml's) names
  ``input_ids_anchor``, ``attention_mask_anchor``, ...; :class:`DataCollatorForTripletLoss` is
  the same collator under geniml's class name and constructor;
- :class:`DataCollatorForBatchCorrection`: the replaced-token batch plus ``batch_labels`` for
  ``AtacformerForUnsupervisedBatchCorrection``.

An example is a 1-D sequence of token ids or a mapping holding one (``input_ids``, or ``anchor``,
``positive`` and ``negative``, or geniml's ``input_ids_anchor``, ``input_ids_positive`` and
``input_ids_negative``). Use ``remove_unused_columns=False`` in ``TrainingArguments`` so that
the Trainer hands the examples over untouched. Cells are truncated and padded by
:class:`~atacformer.tokenized_cells.TokenizedCells`, as everywhere else.

:class:`AtlasDataset` serves the cells of a tokenized atlas on disk as such examples, reading
row blocks and never the whole matrix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from .configuration_atacformer import AtacformerConfig
from .exceptions import InvalidInputError
from .inference import as_tokenized_cells, truncate
from .modeling_atacformer import IGNORE_INDEX
from .tokenizers import SPECIAL_TOKEN_NAMES

__all__ = [
    "AtlasDataset",
    "DataCollatorForBatchCorrection",
    "DataCollatorForReplacedTokenDetection",
    "DataCollatorForTripletLoss",
    "DataCollatorForTriplets",
]


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


def _first(example: Mapping[str, Any], *keys: str) -> Any:
    """The value of the first of ``keys`` that ``example`` holds."""
    for key in keys:
        if key in example:
            return example[key]
    raise KeyError(f"an example needs one of {', '.join(keys)}; it has {', '.join(example)}")


def _cell(example: Any, *keys: str) -> Any:
    """One cell's ids: the example itself, or its value under the first of ``keys`` it has."""
    return _first(example, *keys) if isinstance(example, Mapping) else example


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

    def _pad_cells(self, cells: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Truncates to ``max_length`` (a fresh seed per batch) and pads: ids and 0/1 mask,
        both ``[B, L]`` int64, ``L`` rounded up to ``pad_to_multiple_of``."""
        ragged = as_tokenized_cells(cells)
        if self.max_length is not None:
            seed = int(self.rng.integers(2**63))
            ragged = truncate(ragged, self.max_length, self.truncation_strategy, seed)
        width = int(ragged.lengths.max()) if len(ragged) else 0
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        padded = ragged.to_padded(
            max_length=width, pad_token_id=self.pad_token_id, pad_to_max_length=True
        )
        return padded["input_ids"], padded["attention_mask"]


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
        """Uses the vocabulary layout of Atacformer: the special tokens are the last ids."""
        n_special = len(SPECIAL_TOKEN_NAMES)
        specials = range(config.vocab_size - n_special, config.vocab_size)
        if config.pad_token_id not in specials:
            raise ValueError(
                f"pad_token_id {config.pad_token_id} is not one of the last {n_special} "
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
        ids, mask = self._pad_cells([_cell(e, "input_ids") for e in examples])
        corrupted, labels = self.corrupt(ids, mask)
        return {
            "input_ids": torch.from_numpy(corrupted),
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(labels),
        }


class DataCollatorForBatchCorrection(DataCollatorForReplacedTokenDetection):
    """The replaced-token batch plus ``batch_labels`` ``[B]``, from each example's
    ``batch_label`` (or ``batch_labels``, or geniml's ``batch_id``)."""

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        batch = super().__call__(examples)
        labels = [_first(e, "batch_label", "batch_labels", "batch_id") for e in examples]
        batch["batch_labels"] = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        return batch


class DataCollatorForTriplets(_PaddingCollator):
    """Pads the anchor, positive and negative cells of each example.

    Each example holds ``anchor``, ``positive`` and ``negative`` (or geniml's
    ``input_ids_anchor``, ``input_ids_positive`` and ``input_ids_negative``). Returns
    ``input_ids_{role}`` and ``attention_mask_{role}`` ``[B, L_role]`` for each role: the
    keyword names of ``AtacformerForCellClustering.forward``.
    """

    ROLES = ("anchor", "positive", "negative")

    @classmethod
    def from_config(cls, config: AtacformerConfig, **kwargs: Any) -> Any:
        """Takes the pad id from the model's config."""
        return cls(config.pad_token_id, **kwargs)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for role in self.ROLES:
            ids, mask = self._pad_cells([_cell(e, role, f"input_ids_{role}") for e in examples])
            batch[f"input_ids_{role}"] = torch.from_numpy(ids)
            batch[f"attention_mask_{role}"] = torch.from_numpy(mask)
        return batch


class DataCollatorForTripletLoss(DataCollatorForTriplets):
    """:class:`DataCollatorForTriplets` under geniml's name and constructor.

    ``DataCollatorForTripletLoss(tokenizer, max_position_embeddings=None)`` takes the pad id
    from ``tokenizer`` and keeps a random subset of at most ``max_position_embeddings`` tokens
    per cell, so geniml training scripts run with only their imports changed.
    """

    def __init__(
        self, tokenizer: Any, max_position_embeddings: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(tokenizer.pad_token_id, max_length=max_position_embeddings, **kwargs)


class AtlasDataset(torch.utils.data.Dataset):
    """The cells of a tokenized atlas (``atacformer tokenize --manifest``) for a ``DataLoader``,
    read from disk in row blocks: ``X`` is never loaded whole.

    Item ``i`` is ``{"input_ids": ids}`` (int64 token ids of atlas row ``i``, a cell without
    tokens reading as ``[unk]``), plus ``"batch_label"`` (the integer code of
    ``obs[batch_key]``, for :class:`DataCollatorForBatchCorrection`) when ``batch_key`` is
    given. Rows are read ``block_size`` at a time and the last block is kept, so a sampler
    that visits rows block by block (:meth:`block_order`) reads each block once. Each
    ``DataLoader`` worker opens its own file handle.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        batch_key: str | None = None,
        block_size: int = 1024,
        unk_token_id: int | None = None,
    ) -> None:
        from ._stream import Atlas

        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise InvalidInputError(f"block_size must be a positive integer, got {block_size!r}")
        self.atlas = Atlas(path)
        self.block_size = block_size
        # The specials follow the universe ids, unk first (see atacformer.tokenizers).
        self.unk_token_id = self.atlas.n_vars if unk_token_id is None else int(unk_token_id)
        self.batch_labels: np.ndarray | None = None
        if batch_key is not None:
            obs = self.atlas.obs()
            if batch_key not in obs.columns:
                have = ", ".join(map(str, obs.columns)) or "none"
                raise InvalidInputError(f"{path}: obs has no column {batch_key!r} (have: {have})")
            codes = obs[batch_key].astype("category").cat.codes.to_numpy()
            self.batch_labels = codes.astype(np.int64)
        self._cached: tuple[int, Any] | None = None

    def __len__(self) -> int:
        return self.atlas.n_cells

    def _block(self, b: int) -> Any:
        if self._cached is None or self._cached[0] != b:
            start = b * self.block_size
            stop = min(start + self.block_size, self.atlas.n_cells)
            self._cached = (b, self.atlas.block(start, stop, self.unk_token_id))
        return self._cached[1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"cell {index} of an atlas of {len(self)} cells")
        cells = self._block(i // self.block_size)
        item: dict[str, Any] = {"input_ids": cells[i % self.block_size].astype(np.int64)}
        if self.batch_labels is not None:
            item["batch_label"] = int(self.batch_labels[i])
        return item

    def block_order(self, seed: int | None = None) -> list[int]:
        """All row indices, block after block: blocks in a seeded random order and rows
        shuffled inside each block (``seed`` None: atlas order). Pass it as a ``DataLoader``
        ``sampler`` to shuffle while reading each block once per epoch."""
        n, size = len(self), self.block_size
        starts = np.arange(0, n, size)
        if seed is None:
            return list(range(n))
        rng = np.random.default_rng(seed)
        order = [rng.permutation(np.arange(s, min(s + size, n))) for s in rng.permutation(starts)]
        return np.concatenate(order).tolist() if order else []
