"""Plots (``pl``): cells on a plane, coloured by ``obs`` columns, and per-cell QC. Each
returns its figure."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from . import _core, pp
from ._atomic import atomic_path, refuse_overwriting_inputs
from ._deps import importable, require

__all__ = ["embedding", "qc"]

PathLike = Union[str, "os.PathLike[str]"]

UMAP_MIN_CELLS = 30
"""With ``basis="auto"``, fewer cells than this are drawn with PCA (UMAP needs neighbours)."""
_MAX_CATEGORIES = 30
"""A numeric column with more distinct values than this is drawn as a colour scale."""


def embedding(
    adata: Any,
    color: str | Sequence[str] | None = None,
    basis: str = "auto",
    use_rep: str = "X_atacformer",
    ax: Any = None,
    save: PathLike | None = None,
    show: bool | None = None,
    title: str | Sequence[str] | None = None,
    random_state: int = 0,
) -> Any:
    """Cells on a 2-D map of ``obsm[use_rep]``, one panel per ``color`` column of ``obs``.

    ``basis="umap"`` uses UMAP (``umap-learn``), ``"pca"`` the first two principal
    components; ``"auto"`` picks UMAP when it is installed and there are at least
    :data:`UMAP_MIN_CELLS` cells. The map is stored as ``obsm["X_umap"]``/``obsm["X_pca"]``
    (the scanpy names) and reused by later calls. A category keeps one colour in every panel,
    and each panel's title names the model (from ``uns["atacformer"]``) and the column.
    ``ax`` draws one panel into existing axes; ``save`` writes the figure (the format from
    its suffix, e.g. ``.png``) atomically; ``show=True`` calls ``pyplot.show()``.
    Returns the matplotlib ``Figure``.
    """
    columns = _columns(adata, color)
    titles = _titles(adata, columns, title)
    coords, name = map_2d(adata, basis=basis, use_rep=use_rep, random_state=random_state)
    require("matplotlib", "plotting", "matplotlib")
    import matplotlib.pyplot as plt

    if ax is not None and len(columns) != 1:
        raise _core.InvalidInputError(f"ax takes one panel, and color names {len(columns)}")
    if ax is None:
        n = len(columns)
        fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.8), dpi=100, squeeze=False)
        panels = list(axes[0])
    else:
        fig, panels = ax.figure, [ax]
    values = {c: adata.obs[c].to_numpy() for c in columns if c is not None}
    colours = _shared_colours({c: v for c, v in values.items() if not _continuous(v)})
    for panel, column, text in zip(panels, columns, titles, strict=True):
        if column is None:
            panel.scatter(coords[:, 0], coords[:, 1], s=5, color="#4c72b0")
        elif _continuous(values[column]):
            drawn = panel.scatter(
                coords[:, 0], coords[:, 1], s=5, c=values[column].astype(float), cmap="viridis"
            )
            fig.colorbar(drawn, ax=panel, label=column)
        else:
            labels = np.asarray([str(x) for x in values[column]])
            # The group's categories that occur in this panel, in the group's order.
            present = [c for c in colours[column] if np.any(labels == c)]
            for category in present:
                at = labels == category
                panel.scatter(
                    coords[at, 0],
                    coords[at, 1],
                    s=5,
                    color=colours[column][category],
                    label=category,
                )
            if len(present) <= 20:
                panel.legend(markerscale=2.5, fontsize=7, frameon=False, loc="best")
        panel.set_xlabel(f"{name} 1")
        panel.set_ylabel(f"{name} 2")
        panel.set_title(text, fontsize=10)
    if ax is None:
        fig.tight_layout()
    if save is not None:
        if getattr(adata, "isbacked", False) and adata.filename is not None:
            refuse_overwriting_inputs(save, [adata.filename])
        _save_atomically(fig, Path(save))
    if show:
        plt.show()
    return fig


def map_2d(
    adata: Any, basis: str = "auto", use_rep: str = "X_atacformer", random_state: int = 0
) -> tuple[np.ndarray, str]:
    """The ``[n_obs, 2]`` map of ``obsm[use_rep]`` and its name (``"UMAP"`` or ``"PCA"``),
    made once and kept in ``obsm["X_umap"]``/``obsm["X_pca"]``. A map already there is reused
    only when ``uns["atacformer"]`` records that it was made from ``use_rep``."""
    from .tl import _representation

    if basis not in ("auto", "umap", "pca"):
        raise _core.InvalidInputError(f"basis must be 'auto', 'umap' or 'pca', got {basis!r}")
    rep = _representation(adata, use_rep)
    if basis == "auto":
        basis = "umap" if importable("umap") and len(rep) >= UMAP_MIN_CELLS else "pca"
    key = f"X_{basis}"
    record = dict(adata.uns.get("atacformer", {}))
    made_from = record.get(f"{basis}_from")
    stored = adata.obsm[key] if key in adata.obsm else None
    if (
        stored is not None
        and made_from == use_rep  # a map made by another tool is not ours to reuse
        and np.ndim(stored) == 2
        and np.shape(stored)[1] >= 2
    ):
        return np.asarray(stored)[:, :2], basis.upper()
    coords = _umap(rep, random_state) if basis == "umap" else _pca(rep)
    adata.obsm[key] = coords
    record[f"{basis}_from"] = use_rep
    adata.uns["atacformer"] = record
    return coords, basis.upper()


# --------------------------------------------------------------------------- helpers


def _umap(rep: np.ndarray, random_state: int) -> np.ndarray:
    umap = require("umap", "basis='umap'", "umap-learn")
    if len(rep) < 3:
        raise _core.InvalidInputError(f"UMAP needs at least 3 cells, got {len(rep)}")
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(15, len(rep) - 1),
        random_state=random_state,
        n_jobs=1,  # a seed makes UMAP single-threaded anyway; say so to silence its warning
    )
    return np.asarray(reducer.fit_transform(rep), dtype=np.float32)


def _pca(rep: np.ndarray) -> np.ndarray:
    """The first two principal components (zeros where there are fewer)."""
    centred = np.asarray(rep, dtype=np.float64) - rep.mean(axis=0)
    coords = np.zeros((len(rep), 2))
    if len(centred) >= 2:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        top = centred @ vt[:2].T
        coords[:, : top.shape[1]] = top
    return coords.astype(np.float32)


def _columns(adata: Any, color: str | Sequence[str] | None) -> list[str | None]:
    if not pp.is_anndata(adata):
        raise _core.AtacformerTypeError(f"expected an AnnData, got {type(adata).__name__}")
    columns: list[str | None] = (
        [None] if color is None else [color] if isinstance(color, str) else list(color)
    )
    if not columns:
        raise _core.InvalidInputError("color names no column")
    for c in columns:
        if c is not None and c not in adata.obs.columns:
            have = ", ".join(map(str, adata.obs.columns)) or "none"
            raise _core.InvalidInputError(f"color {c!r}: no such obs column (have: {have})")
    return columns


def _titles(adata: Any, columns: list[str | None], title: str | Sequence[str] | None) -> list[str]:
    if title is not None:
        titles = [title] if isinstance(title, str) else list(title)
        if len(titles) != len(columns):
            raise _core.InvalidInputError(f"{len(titles)} titles for {len(columns)} panels")
        return titles
    model = adata.uns.get("atacformer", {}).get("model", "Atacformer")
    n = adata.n_obs
    return [f"{model}: {n:,} cells" + (f" by {c}" if c else "") for c in columns]


def _continuous(values: np.ndarray) -> bool:
    """A numeric, non-boolean column with many distinct values."""
    kind = getattr(values.dtype, "kind", "O")
    return kind in "iuf" and len(np.unique(values)) > _MAX_CATEGORIES


def _shared_colours(columns: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """A category -> colour map per categorical column. Columns that share a category share
    one map (so the category has one colour in every panel); unrelated columns each start
    from the first colour of the palette."""
    labels = {c: sorted({str(x) for x in v}, key=_natural) for c, v in columns.items()}
    groups: list[tuple[set[str], list[str]]] = []
    for column, categories in labels.items():
        joined: tuple[set[str], list[str]] = (set(categories), [column])
        for group in [g for g in groups if g[0] & joined[0]]:
            groups.remove(group)
            joined = (group[0] | joined[0], group[1] + joined[1])
        groups.append(joined)
    maps: dict[str, dict[str, Any]] = {}
    for _, members in groups:
        ordered: dict[str, None] = {}
        for column in sorted(members, key=list(labels).index):
            ordered.update(dict.fromkeys(labels[column]))
        palette = _palette(len(ordered))
        shared = {c: palette[i] for i, c in enumerate(ordered)}
        maps.update(dict.fromkeys(members, shared))
    return maps


def _palette(n: int) -> list[Any]:
    import matplotlib.pyplot as plt

    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    return [plt.get_cmap("gist_ncar")(i / n) for i in range(n)]


def _natural(text: str) -> tuple[int, Any]:
    """Numbers in numeric order ("2" before "10"), then everything else by text."""
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)


def _save_atomically(fig: Any, path: Path) -> None:
    """Writes the figure through :func:`atomic_path`: a temporary file next to ``path``,
    renamed over it when complete (a failed write keeps the old file)."""
    suffix = path.suffix.lower().lstrip(".")
    if not suffix:
        raise _core.InvalidInputError(f"cannot tell the image format of {path}: add a suffix")
    known = fig.canvas.get_supported_filetypes()
    if suffix not in known:
        raise _core.InvalidInputError(
            f"cannot write {path}: .{suffix} is not an image format matplotlib writes "
            f"({', '.join('.' + k for k in sorted(known))})"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix)


# --------------------------------------------------------------------------- per-cell QC

QC_COLUMNS = ("n_fragments", "frac_in_universe")
"""The ``obs`` columns :func:`qc` draws (written by :func:`atacformer.tl.embed`)."""


def qc(
    adata: Any,
    min_fragments: int | None = None,
    min_frac: float | None = None,
    ax: Any = None,
    save: PathLike | None = None,
    show: bool | None = None,
    title: str | None = None,
) -> Any:
    """Fragments per cell (log x) against the fraction of them in the universe, one point
    per cell, from ``obs["n_fragments"]`` and ``obs["frac_in_universe"]``.

    ``min_fragments`` and ``min_frac`` draw the cut-offs (a dashed line each); cells at or
    above both are drawn in colour, the others in grey, and the title counts the cells that
    pass. Cells with no fragments cannot sit on a log axis and are counted in the title
    instead. ``ax``, ``save`` and ``show`` work as in :func:`embedding`. Returns the
    matplotlib ``Figure``.
    """
    if not pp.is_anndata(adata):
        raise _core.AtacformerTypeError(f"expected an AnnData, got {type(adata).__name__}")
    missing = [c for c in QC_COLUMNS if c not in adata.obs.columns]
    if missing:
        raise _core.InvalidInputError(
            f"obs has no {', '.join(repr(c) for c in missing)}: these per-cell QC columns come "
            "from atacformer.tl.embed on fragment files"
        )
    if min_fragments is not None and (
        isinstance(min_fragments, bool)
        or not isinstance(min_fragments, (int, np.integer))
        or min_fragments < 0
    ):
        raise _core.InvalidInputError(
            f"min_fragments must be a non-negative integer, got {min_fragments!r}"
        )
    if min_frac is not None and (
        isinstance(min_frac, bool)
        or not isinstance(min_frac, (int, float, np.integer, np.floating))
        or not 0.0 <= float(min_frac) <= 1.0
    ):
        raise _core.InvalidInputError(f"min_frac must be a number from 0 to 1, got {min_frac!r}")
    fragments = np.asarray(adata.obs["n_fragments"], dtype=np.float64)
    frac = np.asarray(adata.obs["frac_in_universe"], dtype=np.float64)
    require("matplotlib", "plotting", "matplotlib")
    import matplotlib.pyplot as plt

    passed = np.ones(len(fragments), dtype=bool)
    if min_fragments is not None:
        passed &= fragments >= min_fragments
    if min_frac is not None:
        passed &= frac >= float(min_frac)
    drawn = fragments > 0
    own_axes = ax is None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4.8), dpi=100)
    else:
        fig = ax.figure
    cut = min_fragments is not None or min_frac is not None
    for mask, colour, label in (
        (drawn & passed, "#4c72b0", "pass" if cut else None),
        (drawn & ~passed, "#b0b0b0", "fail"),
    ):
        if mask.any():
            ax.scatter(
                fragments[mask],
                frac[mask],
                s=5,
                color=colour,
                label=f"{label} ({int(mask.sum()):,})" if label else None,
            )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_plain_count)
    ax.xaxis.set_minor_formatter(_two_and_five)  # labels 200, 500, 2,000, ... between decades
    if min_fragments is not None:
        ax.axvline(min_fragments, color="#c44e52", linestyle="--", linewidth=1)
    if min_frac is not None:
        ax.axhline(float(min_frac), color="#c44e52", linestyle="--", linewidth=1)
    ax.set_xlabel("fragments per cell")
    ax.set_ylabel("fraction of fragments in the universe")
    if cut:
        ax.legend(markerscale=2.5, fontsize=7, frameon=False, loc="best")
    if title is None:
        n = len(fragments)
        title = f"{int(passed.sum()):,} of {n:,} cells pass" if cut else f"{n:,} cells"
        if (~drawn).any():
            title += f" ({int((~drawn).sum()):,} with no fragments not drawn)"
    ax.set_title(title, fontsize=10)
    if own_axes:
        fig.tight_layout()
    if save is not None:
        if getattr(adata, "isbacked", False) and adata.filename is not None:
            refuse_overwriting_inputs(save, [adata.filename])
        _save_atomically(fig, Path(save))
    if show:
        plt.show()
    return fig


def _plain_count(value: float, _position: Any = None) -> str:
    """A log-axis tick as a plain count: 1,000 rather than 10^3."""
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _two_and_five(value: float, _position: Any = None) -> str:
    """Minor log-axis ticks at 2 and 5 times a power of ten get a label; the rest none."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** np.floor(np.log10(value))
    return _plain_count(value) if np.isclose(mantissa, [2, 5]).any() else ""
