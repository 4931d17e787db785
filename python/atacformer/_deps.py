"""Optional dependencies: import one, or fail with the command that installs it."""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from typing import Any

from .exceptions import MissingDependencyError

__all__ = ["MissingDependencyError", "importable", "require"]


def require(module: str, purpose: str, install: str) -> Any:
    """Imports ``module`` or raises :class:`MissingDependencyError` naming ``purpose`` and
    the package to install."""
    try:
        return import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"{purpose} needs {module}: pip install '{install}'") from e


def importable(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    return find_spec(module) is not None
