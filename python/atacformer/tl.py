"""Tools (``tl``): cell embeddings and clusters, written into an ``AnnData``.

:func:`embed` puts the Atacformer embeddings in ``obsm["X_atacformer"]`` and records the
model and settings in ``uns["atacformer"]``; :func:`cluster` adds KMeans clusters of them to
``obs``; :func:`transfer_labels` annotates query cells from a labelled reference by their
nearest reference cells. They follow the scverse convention: given an ``AnnData`` they change
it in place.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Union

import numpy as np

from . import _core, pp
from ._deps import importable, require
from .coverage import CoverageWarning
from .tokenized_cells import TokenizedCells
from .tokenizers import SPECIAL_TOKEN_NAMES, Tokenizer

__all__ = [
    "check_compatible",
    "check_same_model",
    "check_universe",
    "cluster",
    "embed",
    "transfer_labels",
]

PathLike = Union[str, "os.PathLike[str]"]

DTYPES = ("float32", "bfloat16", "float16")
_SPECIAL_IDS = tuple(f"{name}_token_id" for name in SPECIAL_TOKEN_NAMES)
_MAPS = ("umap", "pca")


def embed(
    data: Any,
    model: Any,
    tokenizer: Tokenizer | PathLike | None = None,
    key_added: str = "X_atacformer",
    batch_size: int = 64,
    device: Any = None,
    dtype: Any = None,
    max_tokens_per_cell: int | None = None,
    progress: bool = True,
    out: PathLike | None = None,
    block_size: int | None = None,
    chrom_names: str = "auto",
) -> Any:
    """Cell embeddings ``[n_cells, hidden]`` float32 in ``obsm[key_added]``.

    - Given an ``AnnData``, tokenizes it (one cell per row), writes ``obsm[key_added]`` and
      ``obs["atacformer_n_tokens"]`` in place and returns the same object.
    - In both cases ``obs`` gets the tokenization's per-cell QC
      (:attr:`TokenizedCells.qc <atacformer.TokenizedCells.qc>`): ``n_tokens`` (universe
      ids per cell) and, whenever the tokenization knew them (fragment files),
      ``n_fragments``, ``n_fragments_in_universe`` and ``frac_in_universe``; plot them with
      :func:`atacformer.pl.qc`. ``atacformer_n_tokens`` is the length of each cell's token
      list as embedded, which counts the ``<unk>`` placeholder of a cell that overlaps
      nothing (``n_tokens`` 0, ``atacformer_n_tokens`` 1).
    - Given anything else :func:`atacformer.pp.tokenize` reads (fragment or BED files, an
      ``.h5ad`` or ``.atok`` path, a ``TokenizedCells``), returns a new ``AnnData`` whose
      ``obs`` are the cells (index = cell names; an ``.h5ad`` keeps its ``obs`` columns) with
      ``atacformer_n_tokens``, and whose ``obsm[key_added]`` holds the embeddings.

    ``model`` is an Atacformer model or a name (``"demo"``, a folder, a Hub repo id) loaded as
    :class:`~atacformer.AtacformerModel`. ``tokenizer`` defaults to the model's own. The model
    and the tokenizer must agree (vocabulary size, special ids); this is checked before any
    work. Cells longer than ``max_tokens_per_cell`` keep a seeded random subset of their
    tokens; the default is the model's context when it uses positions, else no limit.
    ``dtype`` (``"bfloat16"``, ``torch.float16``) runs the encoder under autocast.
    ``chrom_names`` (``"auto"`` or ``"exact"``) is passed to :func:`atacformer.pp.tokenize`.
    The model, tokenizer and settings are recorded in ``uns["atacformer"]``.

    A model whose checkpoint lacked encoder weights (``model.missing_encoder_weights()``),
    token ids outside the model's vocabulary (negative ones included), a device without
    data (``"meta"``) and non-finite embeddings are refused with an
    :class:`~atacformer.InvalidInputError`.

    **Atlases.** A tokenized atlas (an ``.h5ad``/``.zarr`` path or a backed ``AnnData``
    whose ``uns["atacformer"]["universe_id"]`` names its universe, as ``atacformer tokenize
    --manifest`` writes) is streamed: ``X`` is read in blocks of ``block_size`` cells
    (default 4,096), never whole, and the result is a new ``AnnData`` with the atlas's ``obs``
    (a backed ``AnnData`` gets ``obsm`` in place). An atlas of another universe than the
    model's tokenizer is refused, naming both identifiers. With ``out`` (an ``.h5ad`` path)
    each finished block is kept in ``{out}.partial/``, a rerun of the same call skips the
    finished blocks (a changed model or setting starts over, saying so), and the output is
    written atomically at the end. Under ``torch.distributed`` (a process group, or the
    environment ``torchrun``/``accelerate launch`` set) the blocks are shared among the ranks
    by token count, each rank on its own device (``cuda`` means ``cuda:LOCAL_RANK``); rank 0
    returns the whole result and the other ranks return None.

    ``out`` also writes the result of any other input to an ``.h5ad`` (atomically).
    """
    _positive("batch_size", batch_size)
    if block_size is not None:
        _positive("block_size", block_size)
    if out is not None:
        out = _check_out(out, data)
    if max_tokens_per_cell is not None:
        _positive("max_tokens_per_cell", max_tokens_per_cell)
    if not isinstance(key_added, str) or not key_added:
        raise _core.InvalidInputError(f"key_added must be a non-empty string, got {key_added!r}")
    dtype_name = _dtype_name(dtype)
    net = _as_model(model)
    from .inference import parse_device

    device = parse_device(device)  # a device this machine lacks fails before any work
    context = int(net.config.max_position_embeddings) if net.config.use_pos_embeddings else None
    if max_tokens_per_cell is not None and context is not None and max_tokens_per_cell > context:
        raise _core.InvalidInputError(
            f"max_tokens_per_cell {max_tokens_per_cell} is more than the model's context of "
            f"{context} positions"
        )
    from . import _stream

    if _stream.is_atlas(data):
        if chrom_names != "auto":
            raise _core.InvalidInputError(
                f"chrom_names={chrom_names!r}: a tokenized atlas holds token ids already, so "
                "there are no chromosome names to match"
            )
        return _embed_atlas(
            data,
            net,
            model,
            tokenizer,
            key_added=key_added,
            batch_size=batch_size,
            device=device,
            dtype_name=dtype_name,
            max_tokens_per_cell=context if max_tokens_per_cell is None else max_tokens_per_cell,
            block_size=block_size or _stream.DEFAULT_BLOCK_SIZE,
            progress=progress,
            out=out,
        )
    tok, tokenizer_name = _tokenizer_for(data, tokenizer, model, net)
    if tok is not None:
        check_compatible(net, tok)
    adata = data if pp.is_anndata(data) else None
    if adata is not None and tok is not None:
        check_universe(_recorded_universe(adata), tok, "the AnnData")
    if adata is not None:
        cells = pp.tokenize(adata, tok, chrom_names=chrom_names)
        obs = None
    else:
        cells, obs = pp._tokenize(data, tok, chrom_names=chrom_names)
    _check_cells(net, cells)
    if tok is not None:
        _warn_unk_only(cells, tok)
    if max_tokens_per_cell is None:
        max_tokens_per_cell = context
    embeddings = net.encode_tokenized_cells(
        cells,
        batch_size=batch_size,
        max_tokens_per_cell=max_tokens_per_cell,
        progress=progress,
        device=device,
        dtype=None if dtype_name == "float32" else dtype_name,
    )
    if adata is None:
        adata = _new_anndata(cells, obs)
    adata.obs["atacformer_n_tokens"] = cells.lengths
    for name, values in cells.qc.items():  # n_fragments, frac_in_universe, n_tokens, ...
        adata.obs[name] = values
    adata.obsm[key_added] = embeddings
    record = dict(adata.uns.get("atacformer", {}))
    for basis in _MAPS:  # a 2-D map drawn from the old embeddings no longer applies
        if record.pop(f"{basis}_from", None) == key_added:
            adata.obsm.pop(f"X_{basis}", None)
    record.update(
        model=str(net.name_or_path or type(net).__name__),
        key_added=key_added,
        n_cells=len(cells),
        hidden_size=int(embeddings.shape[1]),
        batch_size=int(batch_size),
        dtype=dtype_name,
        device=str(next(net.parameters()).device),
        max_tokens_per_cell=int(max_tokens_per_cell or 0),
        atacformer_version=_core.__version__,
    )
    if tokenizer_name is not None:
        record["tokenizer"] = tokenizer_name
    if tok is not None:
        record["universe_id"] = tok.universe_id
    adata.uns["atacformer"] = record
    if out is not None:
        _stream.write_h5ad(out, adata)
    return adata


def check_universe(universe_id: str | None, tokenizer: Tokenizer, what: str) -> None:
    """Raises :class:`~atacformer.InvalidInputError` when data tokenized with the universe
    ``universe_id`` (None: not recorded, accepted) are not in ``tokenizer``'s universe,
    naming both identifiers."""
    if universe_id is not None and universe_id != tokenizer.universe_id:
        raise _core.InvalidInputError(
            f"{what} was tokenized with the universe {universe_id}, but the model's tokenizer "
            f"has the universe {tokenizer.universe_id}: its token ids mean other regions; "
            "tokenize the data again with the model's tokenizer"
        )


def _recorded_universe(adata: Any) -> str | None:
    record = adata.uns.get("atacformer") if hasattr(adata, "uns") else None
    if isinstance(record, dict) and record.get("universe_id") is not None:
        return str(record["universe_id"])
    return None


def _check_out(out: PathLike, data: Any) -> Any:
    from pathlib import Path

    from ._atomic import refuse_overwriting_inputs

    path = Path(out)
    if path.suffix.lower() != ".h5ad":
        raise _core.InvalidInputError(f"out must be an .h5ad path, got {path}")
    inputs = [data] if isinstance(data, (str, os.PathLike)) else []
    if pp.is_anndata(data) and getattr(data, "filename", None):
        inputs.append(data.filename)
    refuse_overwriting_inputs(path, inputs)
    return path


def _embed_atlas(
    data: Any,
    net: Any,
    model: Any,
    tokenizer: Any,
    *,
    key_added: str,
    batch_size: int,
    device: Any,
    dtype_name: str,
    max_tokens_per_cell: int | None,
    block_size: int,
    progress: bool,
    out: Any,
) -> Any:
    """:func:`embed` of a tokenized atlas, streamed block by block (see there)."""
    from pathlib import Path

    from . import _stream

    path = Path(data.filename) if pp.is_anndata(data) else Path(data)
    atlas = _stream.Atlas(path)
    try:
        if tokenizer is not None:
            tok, tokenizer_name = pp.as_tokenizer(tokenizer), _name(tokenizer)
        else:
            name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else net.name_or_path
            if not name:
                raise _core.InvalidInputError(
                    "checking the atlas's universe needs the model's tokenizer, and the model "
                    "does not say where it was loaded from: pass tokenizer="
                )
            tok, tokenizer_name = Tokenizer.from_pretrained(name), str(name)
        check_compatible(net, tok)
        check_universe(atlas.universe_id, tok, f"the atlas {path}")
        if device is not None:
            run_type = device.type
        else:
            run_type = next(net.parameters()).device.type
        settings = _stream.Settings(
            batch_size=int(batch_size),
            dtype=dtype_name,
            max_tokens_per_cell=max_tokens_per_cell,
            block_size=int(block_size),
            device_type=run_type,
        )
        embeddings, group = _stream.embed_atlas(
            atlas, net, tok, settings, device=device, out=out, progress=progress
        )
        if embeddings is None:
            return None
        n_empty = int(np.count_nonzero(atlas.lengths == 0))
        if n_empty:
            warnings.warn(
                f"{n_empty} of {atlas.n_cells} cells of the atlas have no tokens (embedded as "
                "<unk> alone); do the data and the model share a genome and peak set?",
                CoverageWarning,
                stacklevel=3,
            )
        adata = data if pp.is_anndata(data) else None
        if adata is None:
            obs = atlas.obs()
            obs.index = obs.index.astype(str)
            ad = require("anndata", "building an AnnData", "atacformer[anndata]")
            adata = ad.AnnData(obs=obs)
        adata.obs["atacformer_n_tokens"] = np.maximum(atlas.lengths, 1)
        adata.obsm[key_added] = embeddings
        record = dict(adata.uns.get("atacformer", {})) if adata is data else {}
        record.update(
            model=str(net.name_or_path or type(net).__name__),
            universe_id=tok.universe_id,
            key_added=key_added,
            n_cells=int(atlas.n_cells),
            hidden_size=int(embeddings.shape[1]),
            batch_size=int(batch_size),
            dtype=dtype_name,
            device=str(device) if device is not None else run_type,
            max_tokens_per_cell=int(max_tokens_per_cell or 0),
            block_size=int(block_size),
            world_size=int(group.world_size),
            atlas=str(path),
            atacformer_version=_core.__version__,
        )
        if tokenizer_name is not None:
            record["tokenizer"] = tokenizer_name
        adata.uns["atacformer"] = record
        if out is not None:
            _stream.write_h5ad(out, adata)
            _stream.remove_store(out)
        return adata
    finally:
        atlas.close()


def _name(tokenizer: Any) -> str | None:
    return os.fspath(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else None


def cluster(
    adata: Any,
    n_clusters: int,
    key_added: str = "atacformer_cluster",
    use_rep: str = "X_atacformer",
    random_state: int = 0,
) -> None:
    """KMeans clusters of ``obsm[use_rep]`` as a categorical ``obs[key_added]`` (labels
    ``"0"`` .. ``"k-1"``); ``n_clusters`` must be between 2 and the number of cells."""
    rep = _representation(adata, use_rep)
    n_obs = len(rep)
    if (
        isinstance(n_clusters, bool)
        or not isinstance(n_clusters, (int, np.integer))
        or not 2 <= n_clusters <= n_obs
    ):
        raise _core.InvalidInputError(
            f"n_clusters must be an integer from 2 to the number of cells ({n_obs}), "
            f"got {n_clusters!r}"
        )
    require("sklearn", "clustering cells", "scikit-learn")
    import pandas as pd
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=int(n_clusters), n_init=10, random_state=random_state).fit_predict(
        rep
    )
    categories = [str(i) for i in range(int(n_clusters))]
    adata.obs[key_added] = pd.Categorical(labels.astype(str), categories=categories)
    record = dict(adata.uns.get("atacformer", {}))
    record[f"{key_added}_n_clusters"] = int(n_clusters)
    adata.uns["atacformer"] = record


def check_compatible(model: Any, tokenizer: Tokenizer) -> None:
    """Raises :class:`~atacformer.InvalidInputError` unless the tokenizer's vocabulary is the
    model's: the same size and pad id, and the same id for every special token the model's
    config places inside its vocabulary."""
    config = model.config
    if tokenizer.vocab_size != config.vocab_size or tokenizer.pad_token_id != config.pad_token_id:
        raise _core.InvalidInputError(
            f"the tokenizer's vocabulary has {tokenizer.vocab_size} ids (pad "
            f"{tokenizer.pad_token_id}) but the model's has {config.vocab_size} (pad "
            f"{config.pad_token_id}): a model only works with the universe it was trained on"
        )
    for name in _SPECIAL_IDS:
        want = getattr(config, name, None)
        if want is None or not 0 <= want < config.vocab_size:
            continue  # the config does not place this token in its vocabulary
        have = getattr(tokenizer, name)
        if have != want:
            raise _core.InvalidInputError(
                f"the tokenizer's {name} is {have} but the model's is {want}: they were not "
                "made for each other"
            )


# --------------------------------------------------------------------------- helpers


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise _core.InvalidInputError(f"{name} must be a positive integer, got {value!r}")


def _dtype_name(dtype: Any) -> str:
    """``None``, a name or a torch dtype as one of :data:`DTYPES`."""
    if dtype is None:
        return "float32"
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise _core.InvalidInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return name


def _as_model(model: Any) -> Any:
    if isinstance(model, (str, os.PathLike)):
        from .hub import load_model

        return load_model(model)
    if not hasattr(model, "encode_tokenized_cells") or not hasattr(model, "config"):
        raise _core.AtacformerTypeError(
            f"model must be an Atacformer model or a name, got {type(model).__name__}"
        )
    return model


def _tokenizer_for(
    data: Any, tokenizer: Any, model: Any, net: Any
) -> tuple[Tokenizer | None, str | None]:
    """The tokenizer to use (None when the data are token ids already) and its name."""
    if tokenizer is not None:
        name = os.fspath(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else None
        return pp.as_tokenizer(tokenizer), name
    if not pp.needs_tokenizer(data):
        return None, None
    name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else net.name_or_path
    if not name:
        raise _core.InvalidInputError(
            "this input needs a tokenizer, and the model does not say where it was loaded "
            "from: pass tokenizer="
        )
    return Tokenizer.from_pretrained(name), str(name)


def _check_cells(model: Any, cells: TokenizedCells) -> None:
    """Refuses ids that the model's embedding table does not have."""
    config = model.config
    if cells.pad_token_id is not None and cells.pad_token_id != config.pad_token_id:
        raise _core.InvalidInputError(
            f"these cells were tokenized with another vocabulary (pad id {cells.pad_token_id}, "
            f"the model's is {config.pad_token_id})"
        )
    if not len(cells.ids):
        return
    low, high = int(cells.ids.min()), int(cells.ids.max())
    if low < 0 or high >= config.vocab_size:
        bad = low if low < 0 else high
        raise _core.InvalidInputError(
            f"token id {bad} is outside the model's vocabulary of {config.vocab_size} ids "
            f"(0 to {config.vocab_size - 1})"
        )


def unk_only(cells: TokenizedCells, tokenizer: Tokenizer) -> int:
    """Number of cells whose only token is ``<unk>`` (they overlap nothing)."""
    single = np.flatnonzero(cells.lengths == 1)
    return int(np.sum(cells.ids[cells.offsets[single]] == tokenizer.unk_token_id))


def _warn_unk_only(cells: TokenizedCells, tokenizer: Tokenizer) -> None:
    unk = unk_only(cells, tokenizer)
    if unk:
        warnings.warn(
            f"{unk} of {len(cells)} cells overlap no region of the universe (their only token "
            "is <unk>); do the data and the model share a genome and peak set?",
            stacklevel=3,
        )


def _new_anndata(cells: TokenizedCells, obs: Any) -> Any:
    ad = require("anndata", "building an AnnData", "atacformer[anndata]")
    import pandas as pd

    table = obs.copy() if obs is not None else pd.DataFrame(index=pd.Index(cells.names))
    table.index = table.index.astype(str)
    return ad.AnnData(obs=table)


def _representation(adata: Any, use_rep: str) -> np.ndarray:
    if not pp.is_anndata(adata):
        raise _core.AtacformerTypeError(f"expected an AnnData, got {type(adata).__name__}")
    if use_rep not in adata.obsm:
        have = ", ".join(map(str, adata.obsm.keys())) or "none"
        raise _core.InvalidInputError(
            f"obsm has no {use_rep!r} (have: {have}); run atacformer.tl.embed first"
        )
    return np.asarray(adata.obsm[use_rep])


# --------------------------------------------------------------------------- label transfer

UNKNOWN_LABEL = "Unknown"
"""The label :func:`transfer_labels` gives a query cell it cannot place confidently."""
DISTANCE_TAIL = 0.05
"""Share of the reference that :func:`transfer_labels` treats as its far tail: a query cell
closer to the reference than all but this share of the predicted type's own reference cells
are to theirs gets full closeness; further out, closeness falls to 0."""
MIN_CALIBRATION_CELLS = 20
"""A predicted type with fewer reference cells than this is calibrated against the whole
reference's neighbour distances instead of its own."""
PYNNDESCENT_MIN_CELLS = 50_000
"""With ``method="auto"``, references at least this large use pynndescent when installed."""
_METHODS = ("auto", "brute", "pynndescent")
_WEIGHT_EPS = 1e-9  # keeps 1 / distance finite for a neighbour at distance 0
_MODEL_FIELDS = ("model", "universe_id", "vocab_size", "hidden_size")
"""The ``uns["atacformer"]`` fields that must agree between a reference and a query."""


def transfer_labels(
    reference: Any,
    query: Any,
    label_key: str,
    key_added: str = "atacformer_label",
    n_neighbors: int = 15,
    min_confidence: float = 0.5,
    use_rep: str = "X_atacformer",
    method: str = "auto",
) -> None:
    """Annotates ``query`` cells with the labels ``reference.obs[label_key]`` of their
    nearest reference cells in ``obsm[use_rep]`` (cosine distance), in place.

    Writes ``query.obs[key_added]`` (categorical: the reference's labels and
    :data:`UNKNOWN_LABEL`) and ``query.obs[f"{key_added}_confidence"]`` (float in [0, 1]),
    and records the settings in ``query.uns["atacformer"][key_added]``.

    For a query cell with ``k = n_neighbors`` nearest reference cells at cosine distances
    ``d_1 .. d_k``:

    - **agreement** ``a``: each neighbour votes for its label with weight
      ``1 / (d_j + 1e-9)``; the predicted label is the one with the most weight and ``a`` is
      its share of the total weight (1 when all neighbours agree).
    - **closeness** ``s``: ``p`` is the share of the predicted label's reference cells whose
      own mean distance to their ``k`` nearest other reference cells is at least the query
      cell's mean distance ``mean(d_j)`` (the whole reference is used when the label has
      fewer than :data:`MIN_CALIBRATION_CELLS` cells); ``s = min(1, p / DISTANCE_TAIL)``.
      A cell as close to the reference as all but the farthest 5 % of that type's own cells
      gets 1; one further away than every reference cell of the type gets 0.
    - **confidence** ``= a * s``. Cells below ``min_confidence`` are labelled
      :data:`UNKNOWN_LABEL`.

    Agreement alone is not enough: a type missing from the reference sits next to a sister
    type, its neighbours all agree, and only its distance gives it away.

    ``method`` is the neighbour search: ``"brute"`` (scikit-learn, exact), ``"pynndescent"``
    (approximate, for references of many cells; needs ``pynndescent``) or ``"auto"``
    (pynndescent for references of at least :data:`PYNNDESCENT_MIN_CELLS` cells when it is
    installed, else brute). Reference cells with no label (NaN) are left out.

    Raises :class:`~atacformer.InvalidInputError` when the two were embedded by different
    models (their ``uns["atacformer"]`` records differ in model, universe or size), when
    ``label_key`` or ``use_rep`` is missing, when the embeddings differ in width or are not
    finite, or when ``n_neighbors`` is not between 1 and the number of labelled reference
    cells minus one.
    """
    if not isinstance(label_key, str) or not label_key:
        raise _core.InvalidInputError(f"label_key must be a non-empty string, got {label_key!r}")
    if not isinstance(key_added, str) or not key_added:
        raise _core.InvalidInputError(f"key_added must be a non-empty string, got {key_added!r}")
    if method not in _METHODS:
        raise _core.InvalidInputError(
            f"method must be one of {', '.join(_METHODS)}, got {method!r}"
        )
    if (
        isinstance(min_confidence, bool)
        or not isinstance(min_confidence, (int, float, np.integer, np.floating))
        or not 0.0 <= float(min_confidence) <= 1.0
    ):
        raise _core.InvalidInputError(
            f"min_confidence must be a number from 0 to 1, got {min_confidence!r}"
        )
    ref_rep = _finite_rep(reference, use_rep, "reference")
    query_rep = _finite_rep(query, use_rep, "query")
    if ref_rep.shape[1] != query_rep.shape[1]:
        raise _core.InvalidInputError(
            f"the reference's {use_rep!r} has {ref_rep.shape[1]} dimensions and the query's "
            f"{query_rep.shape[1]}: they were not embedded by the same model"
        )
    check_same_model(reference, query, use_rep)
    if label_key not in reference.obs.columns:
        have = ", ".join(map(str, reference.obs.columns)) or "none"
        raise _core.InvalidInputError(
            f"the reference has no obs column {label_key!r} (have: {have})"
        )
    import pandas as pd

    column = reference.obs[label_key]
    labelled = column.notna().to_numpy()
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = [str(c) for c in column.cat.categories]
    else:
        categories = sorted({str(x) for x in column[labelled]})
    labels = np.asarray([str(x) for x in column[labelled]], dtype=object)
    if UNKNOWN_LABEL in set(labels):
        raise _core.InvalidInputError(
            f"the reference's {label_key!r} has cells labelled {UNKNOWN_LABEL!r}, the label "
            "given to cells that cannot be placed: rename them or leave them out"
        )
    ref_rep = ref_rep[labelled]
    n_ref = len(ref_rep)
    if (
        isinstance(n_neighbors, bool)
        or not isinstance(n_neighbors, (int, np.integer))
        or not 1 <= n_neighbors <= n_ref - 1
    ):
        raise _core.InvalidInputError(
            f"n_neighbors must be an integer from 1 to {n_ref - 1} (the {n_ref} labelled "
            f"reference cells, less one: each is compared with its own neighbours), got "
            f"{n_neighbors!r}"
        )
    k = int(n_neighbors)
    if method == "auto":
        method = (
            "pynndescent"
            if n_ref >= PYNNDESCENT_MIN_CELLS and importable("pynndescent")
            else "brute"
        )
    index = {c: i for i, c in enumerate(categories)}
    codes = np.fromiter((index[x] for x in labels), dtype=np.int64, count=len(labels))
    query_dist, query_idx, own_dist = _neighbours(ref_rep, query_rep, k, method)
    predicted, agreement = _weighted_vote(query_dist, codes[query_idx], len(categories))
    closeness = _closeness(query_dist.mean(axis=1), own_dist.mean(axis=1), codes, predicted)
    confidence = agreement * closeness
    names = np.asarray(categories, dtype=object)[predicted]
    names[confidence < float(min_confidence)] = UNKNOWN_LABEL
    query.obs[key_added] = pd.Categorical(names, categories=[*categories, UNKNOWN_LABEL])
    query.obs[f"{key_added}_confidence"] = confidence.astype(np.float32)
    record = dict(query.uns.get("atacformer", {}))
    record[key_added] = {
        "label_key": label_key,
        "n_neighbors": k,
        "min_confidence": float(min_confidence),
        "distance_tail": DISTANCE_TAIL,
        "use_rep": use_rep,
        "method": method,
        "n_reference_cells": int(n_ref),
    }
    query.uns["atacformer"] = record


def check_same_model(reference: Any, query: Any, use_rep: str = "X_atacformer") -> None:
    """Raises :class:`~atacformer.InvalidInputError` when the ``uns["atacformer"]`` records
    of the two say that ``obsm[use_rep]`` came from different models (model name or folder,
    tokenizer universe, vocabulary or hidden size). Warns when a side has no record of
    ``use_rep`` (its embeddings were not made by :func:`embed`), as nothing can be checked."""
    records = []
    for name, adata in (("reference", reference), ("query", query)):
        record = adata.uns.get("atacformer", {})
        made = record.get("key_added", "X_atacformer") if hasattr(record, "get") else None
        if not hasattr(record, "get") or "model" not in record or made != use_rep:
            warnings.warn(
                f"the {name} has no record of the model that made obsm[{use_rep!r}] "
                "(uns['atacformer'] from atacformer.tl.embed): cannot check that both sides "
                "were embedded by the same model",
                stacklevel=3,
            )
            return
        records.append(record)
    ref, qry = records
    for field in _MODEL_FIELDS:
        if field not in ref or field not in qry:
            continue
        a, b = ref[field], qry[field]
        if field == "model":
            a, b = _model_identity(a), _model_identity(b)
        if str(a) != str(b):
            raise _core.InvalidInputError(
                f"the reference was embedded by {_describe_model(ref)} and the query by "
                f"{_describe_model(qry)} ({field} differs): embeddings of different models "
                "are not comparable; embed both with the same model"
            )


def _model_identity(name: Any) -> str:
    """A model name as one spelling: ``"demo"`` and local folders as resolved paths."""
    from .hub import DEMO_MODEL_DIR, DEMO_NAME

    text = str(name)
    if text == DEMO_NAME:
        return str(DEMO_MODEL_DIR)
    path = os.path.expanduser(text)
    return os.path.realpath(path) if os.path.exists(path) else text


def _describe_model(record: Any) -> str:
    parts = [f"model {record.get('model')!r}"]
    for field in _MODEL_FIELDS[1:]:
        if field in record:
            parts.append(f"{field} {record[field]}")
    return "(" + ", ".join(parts) + ")" if len(parts) > 1 else parts[0]


def _finite_rep(adata: Any, use_rep: str, side: str) -> np.ndarray:
    if not pp.is_anndata(adata):
        raise _core.AtacformerTypeError(
            f"the {side} must be an AnnData, got {type(adata).__name__}"
        )
    if use_rep not in adata.obsm:
        have = ", ".join(map(str, adata.obsm.keys())) or "none"
        raise _core.InvalidInputError(
            f"the {side} has no obsm[{use_rep!r}] (have: {have}); run atacformer.tl.embed on "
            "it first"
        )
    rep = np.asarray(adata.obsm[use_rep], dtype=np.float64)
    if rep.ndim != 2 or rep.shape[1] < 1:
        raise _core.InvalidInputError(
            f"the {side}'s obsm[{use_rep!r}] must be [cells, dims], got shape {rep.shape}"
        )
    if len(rep) == 0:
        raise _core.InvalidInputError(f"the {side} has no cells")
    if not np.isfinite(rep).all():
        raise _core.InvalidInputError(
            f"the {side}'s obsm[{use_rep!r}] has non-finite values (NaN or infinity)"
        )
    return rep


def _neighbours(
    ref: np.ndarray, query: np.ndarray, k: int, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine distances and indices ``[n_query, k]`` of each query cell's ``k`` nearest
    reference cells, and ``[n_ref, k]`` distances of each reference cell's ``k`` nearest
    other reference cells."""
    if method == "pynndescent":
        nnd = require("pynndescent", "method='pynndescent'", "pynndescent")
        search = nnd.NNDescent(ref, metric="cosine", n_neighbors=max(k + 1, 15), random_state=0)
        query_idx, query_dist = search.query(query, k=k)
        own_idx, own_dist = search.query(ref, k=k + 1)
    else:
        require("sklearn", "label transfer", "scikit-learn")
        from sklearn.neighbors import NearestNeighbors

        search = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(ref)
        query_dist, query_idx = search.kneighbors(query)
        own_dist, own_idx = search.kneighbors(ref, n_neighbors=k + 1)
    own = _drop_self(np.asarray(own_idx), np.asarray(own_dist, dtype=np.float64))
    # Cosine distances are at least 0; rounding can give -1e-16.
    return (
        np.maximum(np.asarray(query_dist, dtype=np.float64), 0.0),
        np.asarray(query_idx, dtype=np.int64),
        np.maximum(own, 0.0),
    )


def _drop_self(indices: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """The ``k + 1`` neighbours of each reference cell less the cell itself (the last one
    where a duplicate pushed the cell out of its own list): ``[n_ref, k]`` distances."""
    n, width = indices.shape
    is_self = indices == np.arange(n)[:, None]
    missing = ~is_self.any(axis=1)
    is_self[missing, width - 1] = True
    first = is_self.argmax(axis=1)  # one entry per row is dropped
    keep = np.ones_like(is_self)
    keep[np.arange(n), first] = False
    return distances[keep].reshape(n, width - 1)


def _weighted_vote(
    distances: np.ndarray, labels: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """The label with the most ``1 / (distance + eps)`` weight among each row's neighbours
    and its share of the weight, both ``[n_query]``."""
    weights = 1.0 / (distances + _WEIGHT_EPS)
    totals = np.zeros((len(labels), n_labels))
    rows = np.repeat(np.arange(len(labels)), labels.shape[1])
    np.add.at(totals, (rows, labels.ravel()), weights.ravel())
    predicted = totals.argmax(axis=1)
    share = totals[np.arange(len(labels)), predicted] / totals.sum(axis=1)
    return predicted, np.clip(share, 0.0, 1.0)


def _closeness(
    query_mean: np.ndarray, own_mean: np.ndarray, codes: np.ndarray, predicted: np.ndarray
) -> np.ndarray:
    """``min(1, p / DISTANCE_TAIL)``, ``p`` the share of the predicted label's reference
    cells (all of them for a small label) whose own mean neighbour distance is at least the
    query cell's."""
    everyone = np.sort(own_mean)
    out = np.empty(len(query_mean))
    for label in np.unique(predicted):
        rows = np.flatnonzero(predicted == label)
        own = np.sort(own_mean[codes == label])
        if len(own) < MIN_CALIBRATION_CELLS:
            own = everyone
        at_least = len(own) - np.searchsorted(own, query_mean[rows], side="left")
        out[rows] = at_least / len(own)
    return np.minimum(1.0, out / DISTANCE_TAIL)
