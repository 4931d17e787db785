"""Optional dependencies: import one, or fail with the command that installs it."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from importlib.util import find_spec
from typing import Any

from .exceptions import MissingDependencyError

__all__ = ["MissingDependencyError", "importable", "require", "require_all"]

PACKAGE_NAMES = {"sklearn": "scikit-learn", "umap": "umap-learn", "yaml": "PyYAML"}
"""The pip name of modules whose import name differs."""


def require(module: str, purpose: str, install: str) -> Any:
    """Imports ``module`` or raises :class:`MissingDependencyError` naming ``purpose`` and
    the package to install."""
    try:
        return import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"{purpose} needs {module}: pip install '{install}'") from e


def require_all(modules: Sequence[str], purpose: str, install: str) -> list[Any]:
    """Imports every module of ``modules``, or raises one :class:`MissingDependencyError`
    naming all that are missing and one command that installs them:
    ``the demo needs torch and scikit-learn: pip install 'atacformer[cli]'``."""
    loaded: list[Any] = []
    missing: list[str] = []
    for module in modules:
        try:
            loaded.append(import_module(module))
        except ImportError:
            missing.append(PACKAGE_NAMES.get(module, module))
    if missing:
        names = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " and " + missing[-1]
        raise MissingDependencyError(f"{purpose} needs {names}: pip install '{install}'")
    return loaded


def importable(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    return find_spec(module) is not None
