"""atacformer: fast genomic-interval tokenization and the Atacformer model.

The tokenizer half (``Tokenizer``, ``RegionSet``, ``Region``) needs only NumPy. The model
half (``AtacformerModel`` and friends) needs the ``atacformer[model]`` extra (PyTorch and
transformers) and is imported on first use. The pipeline API follows scanpy: ``atacformer.pp``
(tokenize any input), ``atacformer.tl`` (embed and cluster into an AnnData) and
``atacformer.pl`` (figures), also imported on first use; ``atacformer.hub`` resolves model
names (``"demo"``, a folder, a Hub repo id) for all of them.
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
from .coverage import Coverage, CoverageWarning
from .exceptions import (
    AtacformerError,
    AtacformerIndexError,
    AtacformerIOError,
    AtacformerTypeError,
    ConfigError,
    InvalidInputError,
    MissingDependencyError,
    MissingFileError,
    ParseError,
)
from .tokenized_cells import TokenizedCells, read_gtok, write_gtok
from .tokenizers import Tokenizer

_SUBMODULES = ("hub", "pl", "pp", "tl")
"""The pipeline API (``pp``, ``tl``, ``pl``, as in scanpy) and the name resolver, imported
on first use."""

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
            "DataCollatorForTripletLoss",
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
    "ConfigError",
    "Coverage",
    "CoverageWarning",
    "InvalidInputError",
    "MissingDependencyError",
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
]
# Imported on first use (see __getattr__); the tables above are the one place they are named.
__all__ += list(_SUBMODULES) + list(_MODEL_NAMES)


def __getattr__(name: str) -> Any:
    """Imports model classes lazily so that ``import atacformer`` works without torch."""
    from importlib import import_module

    if name in _SUBMODULES:
        submodule = import_module(f".{name}", __name__)
        globals()[name] = submodule
        return submodule
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
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
