"""`Tokenizer`: maps genomic regions onto the ids of a fixed universe of regions.

Ids ``0..N`` are the universe regions in file order; ``N..N+6`` are the special tokens
unk, pad, mask, cls, eos, bos, sep. The work happens in Rust (``atacformer._core``);
this module adds the Hugging Face-style surface: ``from_pretrained``/``save_pretrained``,
``__call__`` returning a :class:`BatchEncoding`, and the token/id conversions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Union

import numpy as np

from . import _core
from ._encoding import BatchEncoding

PathLike = Union[str, "os.PathLike[str]"]
Regions = Any  # RegionSet | BED path | DataFrame | iterable of region-like objects

CONFIG_FILE = "tokenizer.toml"
UNIVERSE_FILES = ("universe.bed.gz", "universe.bed")
_SPECIAL_NAMES = ("unk", "pad", "mask", "cls", "eos", "bos", "sep")


def _as_id_array(ids: Any) -> np.ndarray:
    """Any int, sequence, NumPy array or torch tensor of ids as a 1-D int64 array."""
    if hasattr(ids, "detach") and hasattr(ids, "cpu"):  # a torch tensor
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.dtype == object or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"token ids must be integers, got an array of {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64).reshape(-1)


class _SpecialToken:
    """Class attribute giving a special token's string (``as_id=False``) or id."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.__doc__ = f"The {_SPECIAL_NAMES[index]} token string."

    def __get__(self, obj: Tokenizer | None, objtype: type | None = None) -> str:
        if obj is None:
            return self  # type: ignore[return-value]
        return obj._tok.special_tokens[self.index]


class _SpecialId:
    """Class attribute giving a special token's id (universe size plus its position)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.__doc__ = f"The id of the {_SPECIAL_NAMES[index]} token."

    def __get__(self, obj: Tokenizer | None, objtype: type | None = None) -> int:
        if obj is None:
            return self  # type: ignore[return-value]
        return obj._tok.universe_size + self.index


class Tokenizer:
    """An immutable, thread-safe interval tokenizer.

    ``Tokenizer(path)`` accepts a ``.bed``/``.bed.gz`` universe, a ``.toml`` config or a
    directory written by :meth:`save_pretrained`.
    """

    unk_token = _SpecialToken(0)
    pad_token = _SpecialToken(1)
    mask_token = _SpecialToken(2)
    cls_token = _SpecialToken(3)
    eos_token = _SpecialToken(4)
    bos_token = _SpecialToken(5)
    sep_token = _SpecialToken(6)
    unk_token_id = _SpecialId(0)
    pad_token_id = _SpecialId(1)
    mask_token_id = _SpecialId(2)
    cls_token_id = _SpecialId(3)
    eos_token_id = _SpecialId(4)
    bos_token_id = _SpecialId(5)
    sep_token_id = _SpecialId(6)

    def __init__(self, path: PathLike | None = None, *, _core_tokenizer: Any = None) -> None:
        if _core_tokenizer is None:
            if path is None:
                raise TypeError("Tokenizer() needs a path to a universe, config or directory")
            _core_tokenizer = _core.Tokenizer(path)
        self._tok = _core_tokenizer

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_bed(cls, path: PathLike) -> Tokenizer:
        """A tokenizer over a BED universe (plain or gzip) with default special tokens."""
        return cls(_core_tokenizer=_core.Tokenizer.from_bed(path))

    @classmethod
    def from_config(cls, path: PathLike) -> Tokenizer:
        """A tokenizer from a TOML config whose ``universe`` is relative to the file."""
        return cls(_core_tokenizer=_core.Tokenizer.from_config(path))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: PathLike,
        revision: str | None = None,
        cache_dir: PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> Tokenizer:
        """Loads from a local directory or a Hugging Face Hub repo id.

        A directory is read as ``tokenizer.toml`` if present, else ``universe.bed.gz``, else
        ``universe.bed``. A repo id fetches the same files with ``huggingface_hub`` (which
        honours ``HF_HUB_OFFLINE=1`` and the local cache).
        """
        if os.path.isdir(name_or_path):
            return cls(_core_tokenizer=_core.Tokenizer.from_dir(name_or_path))
        if os.path.isfile(name_or_path):
            return cls(name_or_path)
        return cls._from_hub(str(name_or_path), revision, cache_dir, local_files_only, token)

    @classmethod
    def _from_hub(
        cls,
        repo_id: str,
        revision: str | None,
        cache_dir: PathLike | None,
        local_files_only: bool,
        token: str | bool | None,
    ) -> Tokenizer:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        def fetch(filename: str) -> str | None:
            try:
                return hf_hub_download(
                    repo_id,
                    filename,
                    revision=revision,
                    cache_dir=cache_dir,
                    local_files_only=local_files_only,
                    token=token,
                )
            except (EntryNotFoundError, LocalEntryNotFoundError):
                return None

        config = fetch(CONFIG_FILE)
        if config is not None:
            import tomllib

            with open(config, "rb") as f:
                universe = tomllib.load(f).get("universe")
            if isinstance(universe, str):
                fetch(universe)  # lands next to the config in the snapshot folder
            return cls.from_config(config)
        for name in UNIVERSE_FILES:
            path = fetch(name)
            if path is not None:
                return cls.from_bed(path)
        raise _core.MissingFileError(
            2,
            f"no {CONFIG_FILE} or {' or '.join(UNIVERSE_FILES)} found for {repo_id!r} "
            "(on the Hub or in the local cache)",
            repo_id,
        )

    def save_pretrained(self, save_directory: PathLike) -> None:
        """Writes ``universe.bed.gz`` and ``tokenizer.toml`` into ``save_directory``."""
        self._tok.save_pretrained(save_directory)

    # ------------------------------------------------------------------ tokenizing
    def __call__(
        self,
        regions: Regions,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
    ) -> BatchEncoding:
        """Tokenizes one region set into ``input_ids`` and ``attention_mask`` (int64, 1-D)."""
        ids, mask = self._tok.encode_regions(regions)
        enc = BatchEncoding(input_ids=ids)
        if return_attention_mask:
            enc["attention_mask"] = mask
        if return_tensors is not None:
            enc.convert_to_tensors(return_tensors)
        return enc

    def tokenize(self, regions: Regions) -> list[str]:
        """The token strings (``chr:start-end``) of the universe regions hit by ``regions``."""
        return self._tok.tokenize(regions)

    def encode(self, tokens: str | Sequence[str]) -> list[int]:
        """Ids of one token string or a list of them; unknown tokens give the unk id."""
        if isinstance(tokens, str):
            return [self._tok.token_to_id(tokens)]
        return self._tok.tokens_to_ids(list(tokens))

    def decode(self, ids: Any) -> list[str]:
        """Token strings of an int, list, NumPy array or torch tensor of ids."""
        return self._tok.ids_to_tokens(_as_id_array(ids))

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """A scalar for a string, a list for a list; unknown tokens give the unk id."""
        if isinstance(tokens, str):
            return self._tok.token_to_id(tokens)
        return self._tok.tokens_to_ids(list(tokens))

    def convert_ids_to_tokens(self, ids: Any) -> str | list[str]:
        """A string for a scalar id, a list for a sequence; unknown ids give unk."""
        if isinstance(ids, (int, np.integer)) or (hasattr(ids, "ndim") and ids.ndim == 0):
            return self._tok.ids_to_tokens(_as_id_array(ids))[0]
        return self._tok.ids_to_tokens(_as_id_array(ids))

    def decode_regions(self, ids: Any) -> _core.RegionSet:
        """The universe regions of ``ids`` as a RegionSet, skipping special tokens."""
        return self._tok.decode_regions(_as_id_array(ids))

    # ------------------------------------------------------------------ vocabulary
    @property
    def universe(self) -> _core.RegionSet:
        """The universe regions; region ``i`` has id ``i``."""
        return self._tok.universe()

    @property
    def vocab_size(self) -> int:
        """Universe regions plus the seven special tokens."""
        return self._tok.vocab_size

    def __len__(self) -> int:
        return self._tok.vocab_size

    def get_vocab(self) -> dict[str, int]:
        """Every token string mapped to its id."""
        return self._tok.get_vocab()

    @property
    def tokenizer_type(self) -> str:
        return self._tok.tokenizer_type

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """``{"unk_token": "<unk>", ..., "sep_token": "<sep>"}``."""
        return {
            f"{n}_token": t for n, t in zip(_SPECIAL_NAMES, self._tok.special_tokens, strict=True)
        }

    @property
    def all_special_tokens(self) -> list[str]:
        return list(self._tok.special_tokens)

    @property
    def all_special_ids(self) -> list[int]:
        first = self._tok.universe_size
        return list(range(first, first + len(_SPECIAL_NAMES)))

    def get_special_tokens_mask(
        self, tokens: Any, already_has_special_tokens: bool = True
    ) -> list[int]:
        """1 for each special token (given as ids or strings), 0 for each region token."""
        if isinstance(tokens, str) or (
            isinstance(tokens, Iterable)
            and not hasattr(tokens, "__array__")
            and any(isinstance(t, str) for t in tokens)
        ):
            tokens = self.convert_tokens_to_ids([tokens] if isinstance(tokens, str) else tokens)
        ids = _as_id_array(tokens)
        first = self._tok.universe_size
        return ((ids >= first) & (ids < first + len(_SPECIAL_NAMES))).astype(int).tolist()

    # -------------------------------------------------------------------- protocol
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self._tok == other._tok

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Tokenizer(universe_size={self._tok.universe_size}, "
            f"vocab_size={self._tok.vocab_size}, tokenizer_type={self.tokenizer_type!r})"
        )
