"""atacformer: fast genomic-interval tokenization and the Atacformer model.

The tokenizer half (``Tokenizer``, ``RegionSet``, ``Region``) needs only NumPy. The model
half (``AtacformerModel`` and friends) needs the ``atacformer[model]`` extra (PyTorch and
transformers) and is imported on first use.
"""

from __future__ import annotations

from typing import Any

from ._core import (  # noqa: I001 - the extension imports .exceptions, so it comes after
    Region,
    RegionSet,
    __version__,
    get_num_threads,
    set_num_threads,
)
from ._encoding import BatchEncoding
from .exceptions import (
    AtacformerError,
    AtacformerIndexError,
    AtacformerIOError,
    AtacformerTypeError,
    InvalidInputError,
    MissingFileError,
    ParseError,
)
from .tokenized_cells import TokenizedCells, read_gtok, write_gtok
from .tokenizers import Tokenizer

_MODEL_NAMES = {
    "AtacformerConfig": "configuration_atacformer",
    **dict.fromkeys(
        [
            "AtacformerForCellClustering",
            "AtacformerForMaskedLM",
            "AtacformerForReplacedTokenDetection",
            "AtacformerForUnsupervisedBatchCorrection",
            "AtacformerModel",
            "AtacformerPreTrainedModel",
        ],
        "modeling_atacformer",
    ),
    **dict.fromkeys(
        [
            "DataCollatorForBatchCorrection",
            "DataCollatorForReplacedTokenDetection",
            "DataCollatorForTriplets",
        ],
        "training",
    ),
}

__all__ = [
    "AtacformerError",
    "AtacformerIOError",
    "AtacformerIndexError",
    "AtacformerTypeError",
    "BatchEncoding",
    "InvalidInputError",
    "MissingFileError",
    "ParseError",
    "Region",
    "RegionSet",
    "TokenizedCells",
    "Tokenizer",
    "__version__",
    "get_num_threads",
    "read_gtok",
    "set_num_threads",
    "write_gtok",
    # model classes and collators, imported lazily (see __getattr__)
    "AtacformerConfig",
    "AtacformerForCellClustering",
    "AtacformerForMaskedLM",
    "AtacformerForReplacedTokenDetection",
    "AtacformerForUnsupervisedBatchCorrection",
    "AtacformerModel",
    "AtacformerPreTrainedModel",
    "DataCollatorForBatchCorrection",
    "DataCollatorForReplacedTokenDetection",
    "DataCollatorForTriplets",
]


def __getattr__(name: str) -> Any:
    """Imports model classes lazily so that ``import atacformer`` works without torch."""
    module = _MODEL_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'atacformer' has no attribute {name!r}")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"atacformer.{name} needs PyTorch and transformers; "
            "install them with: pip install 'atacformer[model]'"
        ) from e
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
