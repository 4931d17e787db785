"""The exceptions atacformer raises, declared once.

Every one derives from :class:`AtacformerError` and from the built-in exception a caller
would expect (``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps
working. The Rust extension raises these same classes (it imports them from here).
"""

from __future__ import annotations

__all__ = [
    "AtacformerError",
    "AtacformerIOError",
    "AtacformerIndexError",
    "AtacformerTypeError",
    "ConfigError",
    "InvalidInputError",
    "MissingDependencyError",
    "MissingFileError",
    "ParseError",
]


class AtacformerError(Exception):
    """Base class of every error raised by atacformer."""

    __module__ = "atacformer"


class ParseError(AtacformerError, ValueError):
    """A malformed BED, TOML, compressed or ``.atok`` file; ``path`` and ``line`` (1-based,
    0 when no line is to blame) say where, when known."""

    __module__ = "atacformer"

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.path, self.line))


class MissingFileError(AtacformerError, FileNotFoundError):
    """A file that does not exist."""

    __module__ = "atacformer"


class AtacformerIOError(AtacformerError, OSError):
    """A file that could not be read or written."""

    __module__ = "atacformer"


class InvalidInputError(AtacformerError, ValueError):
    """An argument with a bad value."""

    __module__ = "atacformer"


class AtacformerTypeError(AtacformerError, TypeError):
    """An argument of the wrong type."""

    __module__ = "atacformer"


class AtacformerIndexError(AtacformerError, IndexError):
    """An index out of range."""

    __module__ = "atacformer"


class MissingDependencyError(AtacformerError, ImportError):
    """An optional dependency that a step needs is not installed; the message says what to
    ``pip install``."""

    __module__ = "atacformer"


class ConfigError(InvalidInputError):
    """A model configuration (``config.json``, ``AtacformerConfig``) whose shape is invalid:
    a size that is not a positive integer, is out of its documented bounds, or disagrees
    with another (``hidden_size`` not a multiple of ``num_attention_heads``). ``path`` names
    the ``config.json`` when the values came from one."""

    __module__ = "atacformer"

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.path))
