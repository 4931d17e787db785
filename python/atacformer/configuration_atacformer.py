"""`AtacformerConfig`: the hyper-parameters of an Atacformer checkpoint (its ``config.json``).

Defaults describe the published vocabulary (890,711 ids: 890,704 universe regions followed by
the special tokens unk, pad, mask, cls, eos, bos, sep). Importing this module needs
transformers but not torch.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from transformers import AutoConfig

from ._config_checks import OPTIONAL_LIMITS, SHAPE_LIMITS, TOKEN_IDS, check_shape
from .exceptions import AtacformerTypeError, ConfigError, MissingFileError

try:  # transformers >= 4.56 spells it PreTrainedConfig; 4.5x has only PretrainedConfig
    from transformers import PreTrainedConfig as _BaseConfig
except ImportError:  # pragma: no cover - depends on the installed transformers
    from transformers import PretrainedConfig as _BaseConfig

__all__ = ["SHAPE_LIMITS", "AtacformerConfig"]


class AtacformerConfig(_BaseConfig):
    """Configuration of an Atacformer encoder and its task heads.

    Shape: ``vocab_size`` ids, ``hidden_size`` H, ``intermediate_size`` I (feed-forward),
    ``num_hidden_layers`` post-LayerNorm encoder layers of ``num_attention_heads`` heads, and
    ``max_position_embeddings`` learned positions, added only when ``use_pos_embeddings``.

    Batch correction: ``num_batches`` experimental batches to predict (required by
    ``AtacformerForUnsupervisedBatchCorrection``), ``lambda_adv`` weight of the adversarial
    loss, ``grl_alpha`` gradient-reversal scale, ``bc_unfreeze_last_n_layers`` encoder layers
    left trainable.

    Every size is checked on construction (and again when a model is built from the config):
    an integer (not a bool) within :data:`SHAPE_LIMITS` (for example at most 1,024 layers and
    heads, 65,536 hidden units, 2**31 - 1 ids), ``hidden_size`` a multiple of
    ``num_attention_heads`` and ``pad_token_id`` inside the vocabulary. A bad value is a
    :class:`~atacformer.ConfigError` (an ``InvalidInputError``), naming the ``config.json``
    when it came from one.
    """

    model_type = "atacformer"

    def __init__(
        self,
        use_pos_embeddings: bool = True,
        vocab_size: int = 890711,
        max_position_embeddings: int = 8192,
        hidden_size: int = 384,
        intermediate_size: int = 1536,
        num_hidden_layers: int = 6,
        num_attention_heads: int = 8,
        pad_token_id: int = 890705,
        eos_token_id: int = 890708,
        bos_token_id: int = 890709,
        cls_token_id: int = 890707,
        sep_token_id: int = 890710,
        sparse_prediction: bool = True,
        norm_eps: float = 1e-5,
        embedding_dropout: float = 0.0,
        initializer_range: float = 0.02,
        initializer_cutoff_factor: float = 2.0,
        tie_word_embeddings: bool = True,
        num_batches: int | None = None,
        lambda_adv: float = 1.0,
        grl_alpha: float = 1.0,
        bc_unfreeze_last_n_layers: int = 2,
        **kwargs: Any,
    ) -> None:
        check_shape(
            {
                "vocab_size": vocab_size,
                "max_position_embeddings": max_position_embeddings,
                "hidden_size": hidden_size,
                "intermediate_size": intermediate_size,
                "num_hidden_layers": num_hidden_layers,
                "num_attention_heads": num_attention_heads,
                "pad_token_id": pad_token_id,
                "eos_token_id": eos_token_id,
                "bos_token_id": bos_token_id,
                "cls_token_id": cls_token_id,
                "sep_token_id": sep_token_id,
                "norm_eps": norm_eps,
                "embedding_dropout": embedding_dropout,
                "initializer_range": initializer_range,
                "num_batches": num_batches,
                "bc_unfreeze_last_n_layers": bc_unfreeze_last_n_layers,
            }
        )
        self.use_pos_embeddings = use_pos_embeddings
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.sparse_prediction = sparse_prediction
        self.norm_eps = norm_eps
        self.embedding_dropout = embedding_dropout
        self.initializer_range = initializer_range
        self.initializer_cutoff_factor = initializer_cutoff_factor
        self.num_batches = num_batches
        self.lambda_adv = lambda_adv
        self.grl_alpha = grl_alpha
        self.bc_unfreeze_last_n_layers = bc_unfreeze_last_n_layers
        token_ids = {
            "pad_token_id": pad_token_id,
            "eos_token_id": eos_token_id,
            "bos_token_id": bos_token_id,
            "cls_token_id": cls_token_id,
            "sep_token_id": sep_token_id,
        }
        super().__init__(**token_ids, tie_word_embeddings=tie_word_embeddings, **kwargs)
        # Set again after super(): 4.5x resets some token ids there, 5.x may not keep cls/sep.
        for name, value in token_ids.items():
            setattr(self, name, value)
        self.tie_word_embeddings = tie_word_embeddings

    def check_shape(self, path: str | None = None) -> None:
        """Raises :class:`~atacformer.ConfigError` if a size set after construction (an
        attribute changed, a ``from_pretrained`` keyword) breaks the rules of
        :data:`SHAPE_LIMITS`; models call it before they allocate anything."""
        check_shape(_shape_fields(self), path)

    @classmethod
    def from_json_file(cls, json_file: Any) -> Any:  # type: ignore[override]
        """Reads a ``config.json``; a malformed one is a ``ParseError`` and bad sizes a
        :class:`~atacformer.ConfigError`, both naming the file."""
        from .hub import read_config

        path = os.fspath(json_file)
        values = read_config(Path(path))
        return _naming(path, lambda: cls(**values))

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, pretrained_model_name_or_path: Any, **kwargs: Any
    ) -> Any:
        """Loads ``"demo"``, a folder or a Hub repo id through
        :func:`atacformer.hub.resolve_pretrained` (the resolver the model classes use), then
        reads its ``config.json`` as ``transformers`` does with the other arguments."""
        from os import PathLike, fspath

        if not isinstance(pretrained_model_name_or_path, (str, PathLike)):
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        from .hub import resolve_pretrained

        name = fspath(pretrained_model_name_or_path)
        if os.path.isfile(name):  # a config.json given directly, as transformers allows
            return cls._from_file(Path(name), kwargs)
        hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "token") if k in kwargs}
        folder = resolve_pretrained(
            name,
            local_files_only=bool(kwargs.pop("local_files_only", False)),
            weights=False,
            **hub,
        )
        return cls._from_file(folder / kwargs.pop("subfolder", "") / CONFIG_NAME, kwargs)

    @classmethod
    def _from_file(cls, path: Path, kwargs: dict[str, Any]) -> Any:
        """``transformers``' reading of one ``config.json``, after checking that it is a
        JSON object (not a list, null or a nesting too deep to parse), with every shape
        error naming the file."""
        from .hub import read_config

        if not path.is_file():
            raise MissingFileError(errno.ENOENT, "no such model config", str(path))
        read_config(path)
        loaded = _naming(
            str(path), lambda: super(AtacformerConfig, cls).from_pretrained(path, **kwargs)
        )
        config = loaded[0] if isinstance(loaded, tuple) else loaded
        config.check_shape(str(path))  # keywords are set after construction
        return loaded

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, **shape: Any) -> AtacformerConfig:
        """A config over ``tokenizer``'s vocabulary: its ``vocab_size`` and special token ids.

        ``shape`` holds every other setting (``hidden_size``, ``num_hidden_layers``, ...). The
        vocabulary and the special ids come only from the tokenizer, so that the model and the
        tokenizer cannot disagree; passing them in ``shape`` is an error.
        """
        given = sorted(set(shape) & set(_FROM_TOKENIZER))
        if given:
            raise AtacformerTypeError(
                f"AtacformerConfig.from_tokenizer takes {', '.join(given)} from the tokenizer; "
                "do not pass them"
            )
        return cls(**{name: getattr(tokenizer, name) for name in _FROM_TOKENIZER}, **shape)


_FROM_TOKENIZER = (
    "vocab_size",
    "pad_token_id",
    "cls_token_id",
    "eos_token_id",
    "bos_token_id",
    "sep_token_id",
)
"""The config fields that :meth:`AtacformerConfig.from_tokenizer` reads off the tokenizer."""


CONFIG_NAME = "config.json"


def _shape_fields(config: Any) -> dict[str, Any]:
    names = (*SHAPE_LIMITS, *TOKEN_IDS, *OPTIONAL_LIMITS, "norm_eps", "embedding_dropout")
    return {name: getattr(config, name, None) for name in names}


def _naming(path: str, build: Any) -> Any:
    """``build()``, with a :class:`ConfigError` raised inside it naming ``path``."""
    try:
        return build()
    except ConfigError as e:
        if e.path is not None:
            raise
        raise ConfigError(f"{path}: {e}", path=path) from None


AutoConfig.register("atacformer", AtacformerConfig, exist_ok=True)
