"""The shape rules of an Atacformer configuration, stated once and checked without torch or
transformers (``atacformer info`` checks a ``config.json`` with them too).

A size is a Python or NumPy integer (``True`` is not a size) within :data:`SHAPE_LIMITS`.
The bounds are far above any real model (the published one has 6 layers, 8 heads, 384
hidden units and 890,711 ids) but low enough that a wrong value fails at once instead of
allocating for minutes or forever.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .exceptions import ConfigError

__all__ = ["SHAPE_LIMITS", "check_shape", "shape_error"]

SHAPE_LIMITS: dict[str, tuple[int, int]] = {
    "vocab_size": (1, 2**31 - 1),  # ids are int32
    "hidden_size": (1, 65_536),
    "intermediate_size": (1, 262_144),
    "num_hidden_layers": (1, 1_024),
    "num_attention_heads": (1, 1_024),
    "max_position_embeddings": (1, 1 << 20),
}
"""Inclusive ``(low, high)`` bounds of every size field of ``AtacformerConfig``."""

OPTIONAL_LIMITS: dict[str, tuple[int, int]] = {
    "num_batches": (1, 1 << 20),  # None means "no batch correction head"
    "bc_unfreeze_last_n_layers": (0, 1_024),
}
"""Size fields that may also be ``None``."""

TOKEN_IDS = ("pad_token_id", "eos_token_id", "bos_token_id", "cls_token_id", "sep_token_id")
"""Special ids: ``None`` or a non-negative integer; the pad id must index the vocabulary."""


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return (
        type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iu"
    )


def shape_error(values: Mapping[str, Any], *, required: bool = False) -> str | None:
    """What is wrong with the shape fields of ``values`` (a config's dict), or None.

    ``required`` also refuses a missing size field (a ``config.json`` read on its own has no
    defaults to fall back on).
    """
    for name, (low, high) in SHAPE_LIMITS.items():
        if name not in values:
            if required:
                return f"{name} is missing"
            continue
        value = values[name]
        if not _is_int(value):
            return f"{name} must be an integer, got {value!r} ({type(value).__name__})"
        if not low <= value <= high:
            return f"{name} must be between {low:,} and {high:,}, got {value:,}"
    for name, (low, high) in OPTIONAL_LIMITS.items():
        value = values.get(name)
        if value is None:
            continue
        if not _is_int(value) or not low <= value <= high:
            return f"{name} must be None or an integer from {low:,} to {high:,}, got {value!r}"
    hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")
    if hidden is not None and heads is not None and hidden % heads:
        return f"hidden_size ({hidden}) must be a multiple of num_attention_heads ({heads})"
    vocab = values.get("vocab_size")
    for name in TOKEN_IDS:
        value = values.get(name)
        if value is None:
            continue
        if not _is_int(value) or value < 0:
            return f"{name} must be None or a non-negative integer, got {value!r}"
    pad = values.get("pad_token_id")
    if pad is not None and vocab is not None and pad >= vocab:
        return f"pad_token_id ({pad}) must be below vocab_size ({vocab})"
    for name in ("norm_eps", "initializer_range", "embedding_dropout"):
        value = values.get(name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            return f"{name} must be a finite number, got {value!r}"
    eps = values.get("norm_eps")
    if eps is not None and eps <= 0:
        return f"norm_eps must be positive, got {eps!r}"
    dropout = values.get("embedding_dropout")
    if dropout is not None and not 0 <= dropout < 1:
        return f"embedding_dropout must be in [0, 1), got {dropout!r}"
    return None


def check_shape(
    values: Mapping[str, Any], path: str | None = None, *, required: bool = False
) -> None:
    """Raises :class:`~atacformer.ConfigError` (naming ``path``, the ``config.json``, when
    given) unless :func:`shape_error` finds nothing wrong."""
    problem = shape_error(values, required=required)
    if problem is not None:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}invalid model config: {problem}", path=path)
