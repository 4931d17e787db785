"""The ``atacformer`` command line: ``tokenize``, ``embed``, ``info`` and an offline ``demo``.

Each command is a function taking the parsed arguments. :func:`main` turns the errors a user
can cause (a missing file, a malformed input, a model that cannot be found) into one line on
stderr and exit status 1; anything else is a bug and keeps its traceback. Set
``ATACFORMER_DEBUG=1`` to see tracebacks for user errors too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import atacformer
from atacformer import AtacformerError, TokenizedCells, Tokenizer

DEMO_NAME = "demo"
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"
"""The small model that ships with the package (``--model demo``)."""

EMBEDDING_KEY = "X_atacformer"
OUTPUT_SUFFIXES = (".h5ad", ".npy", ".parquet")
BED_SUFFIXES = (".bed", ".bed.gz", ".narrowpeak", ".narrowpeak.gz", ".broadpeak", ".broadpeak.gz")
FRAGMENT_SUFFIXES = (".tsv", ".tsv.gz", ".tsv.bgz", ".bgz", ".frag.gz")
HUB_FILES = ["*.json", "*.toml", "*.bed", "*.bed.gz", "*.safetensors"]
HUB_FILES_NO_WEIGHTS = HUB_FILES[:-1]
DTYPES = ("float32", "bfloat16", "float16")


class CLIError(Exception):
    """A user error with a message meant to be printed as it is."""


# ------------------------------------------------------------------------------- inputs


@dataclass
class Source:
    """What the INPUT arguments name: ``kind`` is fragments, bed, h5ad or atok."""

    kind: str
    paths: list[Path]

    def describe(self) -> str:
        if len(self.paths) == 1:
            return f"{self.paths[0]} ({self.kind})"
        return f"{len(self.paths)} BED files"


def _kind_of(path: Path) -> str | None:
    """The input kind a file name implies, or None when it says nothing."""
    name = path.name.lower()
    if name.endswith(".atok"):
        return "atok"
    if name.endswith(".h5ad"):
        return "h5ad"
    if "fragment" in name or name.endswith(FRAGMENT_SUFFIXES):
        return "fragments"
    if name.endswith(BED_SUFFIXES):
        return "bed"
    return None


def detect_source(inputs: Sequence[str], fmt: str = "auto") -> Source:
    """Checks that the inputs exist and decides how to read them.

    One file is read by its name (``.atok``, ``.h5ad``, a name containing ``fragment`` or
    ending in ``.tsv[.gz]``/``.bgz``, else ``.bed[.gz]``) unless ``fmt`` says otherwise; a
    directory means every BED file in it; several paths must all be BED files.
    """
    paths = [Path(p).expanduser() for p in inputs]
    for p in paths:
        if not p.exists():
            raise CLIError(f"no such file or directory: {p}")
    if len(paths) == 1 and paths[0].is_dir():
        found = sorted(
            p for p in paths[0].iterdir() if p.is_file() and p.name.lower().endswith(BED_SUFFIXES)
        )
        if not found:
            raise CLIError(f"{paths[0]} holds no BED files (*.bed, *.bed.gz, *.narrowPeak)")
        return Source("bed", found)
    if any(p.is_dir() for p in paths):
        raise CLIError("give one directory, or a list of files, not both")
    kinds = [fmt if fmt != "auto" else _kind_of(p) for p in paths]
    if len(paths) > 1:
        if any(k != "bed" for k in kinds):
            raise CLIError("several inputs must all be BED files (one cell or sample each)")
        return Source("bed", paths)
    if kinds[0] is None:
        raise CLIError(
            f"cannot tell the format of {paths[0]} from its name; "
            "pass --format fragments, bed, h5ad or atok"
        )
    return Source(kinds[0], paths)


@dataclass
class Loaded:
    """Tokenized cells and, for an ``.h5ad`` input, its ``obs`` table (same row order)."""

    cells: TokenizedCells
    obs: Any = None


def tokenize_source(
    source: Source, tokenizer: Tokenizer | None, args: argparse.Namespace
) -> Loaded:
    """Reads and tokenizes the input, behind a progress indicator."""
    quiet = args.quiet
    if source.kind == "atok":
        with _activity("Reading tokenized cells", quiet):
            return Loaded(TokenizedCells.load(source.paths[0]))
    if tokenizer is None:  # pragma: no cover - callers always pass one for other kinds
        raise CLIError("a tokenizer is needed for this input")
    if source.kind == "fragments":
        with _activity("Tokenizing fragments", quiet):
            cells = tokenizer.tokenize_fragments(
                source.paths[0],
                barcodes=args.barcodes,
                min_fragments=args.min_fragments,
                on_error=args.on_error,
            )
        if len(cells) == 0:
            raise CLIError(f"{source.paths[0]}: no cell has a fragment in the universe")
        return Loaded(cells)
    if source.kind == "h5ad":
        ad = _require("anndata", "reading .h5ad files", "atacformer[anndata]")
        with _activity("Reading and tokenizing AnnData", quiet):
            try:
                adata = ad.read_h5ad(source.paths[0], backed="r")
            except (OSError, KeyError) as e:
                raise CLIError(f"{source.paths[0]}: not a readable .h5ad file ({e})") from e
            cells = tokenizer.tokenize_anndata(adata, layer=args.layer)
            obs = adata.obs.copy()
            if adata.isbacked:
                adata.file.close()
        return Loaded(cells, obs)
    with _activity(f"Tokenizing {len(source.paths)} BED file(s)", quiet):
        return Loaded(tokenizer.tokenize_files(source.paths))


# -------------------------------------------------------------------------- model lookup


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name.replace("/", "", 1)


def resolve_pretrained(
    name: str,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool = False,
    weights: bool = True,
) -> Path:
    """A local folder for ``name``: ``demo``, an existing folder, or a Hub repo id.

    Hub repos are fetched (config, universe, tokenizer config and, with ``weights``, the
    safetensors) with ``huggingface_hub``, which honours ``HF_HUB_OFFLINE=1`` and
    ``HF_HUB_CACHE``.
    """
    if name == DEMO_NAME:
        if not (DEMO_MODEL_DIR / "config.json").is_file():
            raise CLIError(f"the demo model is missing from this installation ({DEMO_MODEL_DIR})")
        return DEMO_MODEL_DIR
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CLIError(
            f"{path} is a file; give a folder (config.json, model.safetensors, "
            "universe.bed.gz) or a Hugging Face Hub repo id"
        )
    if _looks_like_path(name):
        raise CLIError(f"no such folder: {path}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = snapshot_download(
            name,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            allow_patterns=HUB_FILES if weights else HUB_FILES_NO_WEIGHTS,
        )
    except HFValidationError as e:
        raise CLIError(f"{name!r} is neither a local folder nor a valid Hub repo id") from e
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise CLIError(f"{name!r}: no such model on the Hugging Face Hub") from e
    except LocalEntryNotFoundError as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or local_files_only
        how = "offline mode is on" if offline else "the Hub cannot be reached"
        raise CLIError(
            f"{name!r} is neither a local folder nor in the Hugging Face cache, and {how}"
        ) from e
    return Path(folder)


def load_tokenizer(name: str, args: argparse.Namespace) -> Tokenizer:
    """The tokenizer of a model folder or repo, or of a universe file."""
    path = Path(name).expanduser()
    if path.is_file():
        return Tokenizer(path)
    folder = resolve_pretrained(
        name, args.revision, args.cache_dir, args.local_files_only, weights=False
    )
    try:
        return Tokenizer.from_pretrained(folder)
    except FileNotFoundError as e:
        raise CLIError(
            f"{name}: no tokenizer here (tokenizer.toml or universe.bed.gz); pass --tokenizer"
        ) from e


def load_model(folder: Path, quiet: bool) -> Any:
    """An ``AtacformerModel`` (the encoder) from a folder holding ``config.json``."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CLIError(f"{folder} has no config.json, so it holds no model")
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type != "atacformer":
        raise CLIError(f"{config_path}: model_type is {model_type!r}, not 'atacformer'")
    _require("torch", "embedding cells", "atacformer[model]")
    _require("transformers", "embedding cells", "atacformer[model]")
    from transformers.utils import logging as hf_logging

    from atacformer.modeling_atacformer import AtacformerModel

    hf_logging.set_verbosity_error()  # head weights left out of the encoder are expected
    hf_logging.disable_progress_bar()
    with _activity("Loading the model", quiet):
        return AtacformerModel.from_pretrained(folder)


def check_vocabulary(model: Any, tokenizer: Tokenizer | None, cells: TokenizedCells) -> None:
    """Refuses ids that the model's embedding table does not have."""
    config = model.config
    if tokenizer is not None and (
        tokenizer.vocab_size != config.vocab_size or tokenizer.pad_token_id != config.pad_token_id
    ):
        raise CLIError(
            f"the tokenizer's vocabulary has {tokenizer.vocab_size} ids (pad "
            f"{tokenizer.pad_token_id}) but the model's has {config.vocab_size} (pad "
            f"{config.pad_token_id}): a model only works with the universe it was trained on"
        )
    if cells.pad_token_id is not None and cells.pad_token_id != config.pad_token_id:
        raise CLIError(
            f"these cells were tokenized with another vocabulary (pad id {cells.pad_token_id}, "
            f"the model's is {config.pad_token_id})"
        )
    if len(cells.ids) and int(cells.ids.max()) >= config.vocab_size:
        raise CLIError(
            f"token id {int(cells.ids.max())} is outside the model's vocabulary of "
            f"{config.vocab_size} ids"
        )


# ------------------------------------------------------------------------------ outputs


def _check_output(path: Path, allowed: Sequence[str]) -> Path:
    if not path.name.lower().endswith(tuple(allowed)):
        raise CLIError(f"cannot write {path}: the output must end in {', '.join(allowed)}")
    if path.suffix == ".parquet":
        _require("pyarrow", "writing .parquet files", "pyarrow")
    if path.suffix == ".h5ad":
        _require("anndata", "writing .h5ad files", "atacformer[anndata]")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_embeddings(
    path: Path,
    embeddings: np.ndarray,
    cells: TokenizedCells,
    obs: Any = None,
    clusters: np.ndarray | None = None,
    uns: dict[str, Any] | None = None,
) -> None:
    """Writes ``[n_cells, hidden]`` embeddings as ``.npy``, ``.parquet`` or ``.h5ad``."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, embeddings)
        return
    import pandas as pd

    if suffix == ".parquet":
        frame = pd.DataFrame(
            embeddings, columns=[f"atacformer_{i}" for i in range(embeddings.shape[1])]
        )
        frame.insert(0, "cell", cells.names)
        if clusters is not None:
            frame.insert(1, "cluster", clusters)
        frame.to_parquet(path, index=False)
        return
    import anndata as ad

    table = obs.copy() if obs is not None else pd.DataFrame(index=pd.Index(cells.names))
    table.index = table.index.astype(str)
    table["atacformer_n_tokens"] = cells.lengths
    if clusters is not None:
        table["atacformer_cluster"] = pd.Categorical(clusters.astype(str))
    adata = ad.AnnData(obs=table, obsm={EMBEDDING_KEY: embeddings}, uns={"atacformer": uns or {}})
    adata.write_h5ad(path)


def cluster(embeddings: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """KMeans labels ``[n_cells]`` (k capped at the number of cells)."""
    sklearn = _require("sklearn", "clustering cells", "scikit-learn")
    del sklearn
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(embeddings)))
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embeddings)


def project_2d(embeddings: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """Cells on a plane: UMAP when ``umap-learn`` is installed (and there are enough cells),
    else the first two principal components. Returns the ``[n, 2]`` map and its name."""
    if len(embeddings) >= 30:
        try:
            import umap  # type: ignore[import-not-found]
        except ImportError:
            pass
        else:
            reducer = umap.UMAP(n_components=2, random_state=seed)
            return np.asarray(reducer.fit_transform(embeddings)), "UMAP"
    centred = embeddings - embeddings.mean(axis=0)
    if len(centred) < 2:
        return np.zeros((len(centred), 2)), "PCA"
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords, "PCA"


def plot_cells(
    path: Path, embeddings: np.ndarray, panels: Sequence[tuple[str, Sequence[Any]]]
) -> str:
    """Writes a PNG of the cells' 2-D map, one panel per ``(title, labels)`` colouring;
    returns the method used (UMAP or PCA)."""
    _require("matplotlib", "drawing --plot", "matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coords, method = project_2d(embeddings)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.8), dpi=100)
    for ax, (title, labels) in zip(np.atleast_1d(axes), panels, strict=True):
        names = np.asarray([str(x) for x in labels])
        categories = sorted(set(names.tolist()))
        cmap = plt.get_cmap("tab20" if len(categories) > 10 else "tab10")
        for i, cat in enumerate(categories):
            at = names == cat
            ax.scatter(coords[at, 0], coords[at, 1], s=5, color=cmap(i % cmap.N), label=cat)
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.set_title(title, fontsize=10)
        if len(categories) <= 20:
            ax.legend(markerscale=2.5, fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return method


# ------------------------------------------------------------------------------ commands


def cmd_tokenize(args: argparse.Namespace) -> int:
    """``atacformer tokenize``: INPUT -> ``.atok``."""
    source = detect_source(args.inputs, args.format)
    if source.kind == "atok":
        raise CLIError(f"{source.paths[0]} is already tokenized")
    out = _check_output(Path(args.output), (".atok",))
    _set_threads(args.threads)
    tokenizer = load_tokenizer(args.tokenizer, args)
    started = time.perf_counter()
    cells = tokenize_source(source, tokenizer, args).cells
    cells.save(out)
    _say(
        args,
        f"{len(cells):,} cells, {len(cells.ids):,} tokens ({_summary(cells, tokenizer)}) "
        f"in {time.perf_counter() - started:.2f} s -> {out}",
    )
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """``atacformer embed``: INPUT -> cell embeddings in ``.h5ad``/``.npy``/``.parquet``."""
    source = detect_source(args.inputs, args.format)
    out = _check_output(Path(args.output), OUTPUT_SUFFIXES)
    if args.plot:
        _check_output(Path(args.plot), (".png",))
        _require("matplotlib", "drawing --plot", "matplotlib")
    if args.color_by and source.kind != "h5ad":
        raise CLIError("--color-by names an obs column, so it needs an .h5ad input")
    torch = _require("torch", "embedding cells", "atacformer[model]")
    _set_threads(args.threads, torch)
    device = _parse_device(torch, args.device)
    folder = resolve_pretrained(args.model, args.revision, args.cache_dir, args.local_files_only)
    tokenizer = None
    if source.kind != "atok":
        tokenizer = load_tokenizer(args.tokenizer or str(folder), args)
    loaded = tokenize_source(source, tokenizer, args)
    if args.color_by and args.color_by not in loaded.obs.columns:
        raise CLIError(
            f"--color-by {args.color_by!r}: no such obs column "
            f"(have: {', '.join(map(str, loaded.obs.columns)) or 'none'})"
        )
    model = load_model(folder, args.quiet)
    check_vocabulary(model, tokenizer, loaded.cells)
    if tokenizer is not None:
        unk = _unk_only(loaded.cells, tokenizer)
        if unk:
            print(
                f"atacformer embed: warning: {unk} of {len(loaded.cells)} cells overlap no region "
                "of the universe (their only token is <unk>); do the data and the model share "
                "a genome and peak set?",
                file=sys.stderr,
            )
    max_tokens = args.max_tokens
    if max_tokens is None and model.config.use_pos_embeddings:
        max_tokens = model.config.max_position_embeddings
    started = time.perf_counter()
    embeddings = model.encode_tokenized_cells(
        loaded.cells,
        batch_size=args.batch_size,
        max_tokens_per_cell=max_tokens,
        progress=_bars_enabled(args.quiet),
        device=device,
        dtype=None if args.dtype == "float32" else getattr(torch, args.dtype),
    )
    seconds = time.perf_counter() - started
    clusters = None
    if args.n_clusters or (args.plot and not args.color_by):
        clusters = cluster(embeddings, args.n_clusters or 8)
    uns = {"model": args.model, "tokenizer": args.tokenizer or args.model}
    write_embeddings(out, embeddings, loaded.cells, loaded.obs, clusters, uns)
    _say(
        args,
        f"{embeddings.shape[0]:,} cells x {embeddings.shape[1]} dims in {seconds:.2f} s -> {out}",
    )
    if args.plot:
        labels = loaded.obs[args.color_by].to_numpy() if args.color_by else clusters
        what = args.color_by or "KMeans cluster"
        title = f"{len(embeddings):,} cells by {what}"
        method = plot_cells(Path(args.plot), embeddings, [(title, labels)])
        _say(args, f"{method} map coloured by {what} -> {args.plot}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``atacformer info``: the tokenizer and model summary of a folder or repo."""
    folder = resolve_pretrained(
        args.name, args.revision, args.cache_dir, args.local_files_only, weights=False
    )
    lines = [("source", str(folder))]
    tokenizer = None
    try:
        tokenizer = Tokenizer.from_pretrained(folder)
    except FileNotFoundError:
        lines.append(("tokenizer", "none (no tokenizer.toml or universe.bed.gz)"))
    if tokenizer is not None:
        universe = tokenizer.universe
        chroms = len(set(universe.chroms.tolist())) if len(universe) else 0
        lines += [
            ("universe", f"{len(universe):,} regions on {chroms} chromosomes"),
            ("vocabulary", f"{tokenizer.vocab_size:,} ids (regions, then 7 special tokens)"),
            ("tokenizer type", tokenizer.tokenizer_type),
            (
                "special tokens",
                " ".join(
                    f"{t}={i}"
                    for t, i in zip(
                        tokenizer.all_special_tokens, tokenizer.all_special_ids, strict=True
                    )
                ),
            ),
        ]
    config_path = folder / "config.json"
    if not config_path.is_file():
        lines.append(("model", "none (no config.json)"))
    else:
        config = json.loads(config_path.read_text())
        lines += _model_lines(config, folder, tokenizer)
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return 0


def _model_lines(
    config: dict[str, Any], folder: Path, tokenizer: Tokenizer | None
) -> list[tuple[str, str]]:
    arch = ", ".join(config.get("architectures") or []) or "unknown"
    positions = (
        f"learned, up to {config.get('max_position_embeddings')} tokens"
        if config.get("use_pos_embeddings", True)
        else "none (tokens are a set; no length limit from positions)"
    )
    lines = [
        ("model", f"{arch} (model_type {config.get('model_type')})"),
        ("hidden size", str(config.get("hidden_size"))),
        ("layers", str(config.get("num_hidden_layers"))),
        ("attention heads", str(config.get("num_attention_heads"))),
        ("intermediate size", str(config.get("intermediate_size"))),
        ("positions", positions),
    ]
    vocab = config.get("vocab_size")
    if tokenizer is not None:
        match = "matches" if vocab == tokenizer.vocab_size else "DOES NOT match"
        lines.append(("model vocabulary", f"{vocab:,} ids ({match} the tokenizer)"))
    else:
        lines.append(("model vocabulary", f"{vocab:,} ids"))
    weights = folder / "model.safetensors"
    if weights.is_file():
        n, size = _safetensors_parameters(weights)
        lines.append(("parameters", f"{n:,} ({size / 1e6:.1f} MB in model.safetensors)"))
    else:
        n = encoder_parameters(config)
        lines.append(("parameters", f"{n:,} in the encoder (from config.json; weights not here)"))
    return lines


def encoder_parameters(config: dict[str, Any]) -> int:
    """Parameters of ``AtacformerModel`` for a ``config.json``: token and position
    embeddings, then per layer the attention, the two feed-forward linears and two norms."""
    v, h = config["vocab_size"], config["hidden_size"]
    i, p = config["intermediate_size"], config["max_position_embeddings"]
    per_layer = (3 * h * h + 3 * h) + (h * h + h) + (i * h + i) + (h * i + h) + 4 * h
    return v * h + p * h + config["num_hidden_layers"] * per_layer


def _safetensors_parameters(path: Path) -> tuple[int, int]:
    """Number of parameters stored in a safetensors file (read from its header) and its size."""
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        if header_len <= 0 or header_len > 100_000_000:
            raise CLIError(f"{path}: not a safetensors file")
        try:
            header = json.loads(f.read(header_len))
        except ValueError as e:
            raise CLIError(f"{path}: not a safetensors file") from e
    total = sum(
        int(np.prod(v["shape"], dtype=np.int64)) for k, v in header.items() if k != "__metadata__"
    )
    return total, path.stat().st_size


DEMO_FRAGMENTS = "demo_fragments.tsv.gz"
DEMO_EMBEDDINGS = "demo_embeddings.h5ad"
DEMO_PLOT = "demo_cells.png"


class _Steps:
    """Times the demo's steps and prints one line per step as it ends."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """Yields a list to which the step appends its one-line result."""
        note: list[str] = []
        started = time.perf_counter()
        yield note
        self.seconds[name] = time.perf_counter() - started
        if not self.quiet:
            n = len(self.seconds)
            print(f"  {n}. {name:<9} {self.seconds[name]:6.2f} s  {' '.join(note)}", flush=True)


def _demo_record(folder: Path) -> dict[str, Any]:
    """The generator settings stored with a model trained on synthetic data."""
    path = folder / "synthetic.json"
    if not path.is_file():
        raise CLIError(
            f"{folder} has no synthetic.json: the demo needs a model trained on "
            "atacformer.synthetic data (such as the bundled 'demo')"
        )
    record = json.loads(path.read_text())
    if not {"design", "eval_cells", "train_cells"} <= record.keys():
        raise CLIError(f"{path}: expected design, train_cells and eval_cells")
    return record


def lsi_baseline(counts: Any, k: int, n_components: int = 30, seed: int = 0) -> np.ndarray:
    """KMeans labels from latent semantic indexing of a cells x peaks matrix: binarised
    TF-IDF, truncated SVD without its first (depth) component, unit-length rows."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    binary = (counts > 0).astype(np.float32)
    tf = normalize(binary, norm="l1", axis=1)
    idf = np.log1p(binary.shape[0] / (1.0 + np.asarray(binary.sum(axis=0)).ravel()))
    tfidf = tf.multiply(idf[None, :]).tocsr()
    tfidf.data = np.log1p(tfidf.data * 1e4)
    n_components = min(n_components, min(tfidf.shape) - 1)
    svd = TruncatedSVD(n_components=n_components, random_state=seed).fit_transform(tfidf)
    lsi = normalize(svd[:, 1:])
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(lsi)


def cmd_demo(args: argparse.Namespace) -> int:
    """``atacformer demo``: the whole pipeline offline on fresh synthetic cells."""
    started = time.perf_counter()
    if args.cells < 10:
        raise CLIError(f"--cells must be at least 10, got {args.cells}")
    _require("sklearn", "the demo's clustering", "scikit-learn")
    torch = _require("torch", "the demo", "atacformer[model]")
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _set_threads(args.threads, torch)
    from sklearn.metrics import adjusted_rand_score

    from atacformer import synthetic

    folder = resolve_pretrained(args.model)
    record = _demo_record(folder)
    design_spec = synthetic.DesignSpec(**record["design"])
    cell_spec = synthetic.CellSpec(
        **{**record["eval_cells"], "n_cells": args.cells, "seed": args.seed}
    )
    train_seed = record["train_cells"].get("seed")
    steps = _Steps(args.quiet)
    if not args.quiet:
        print(
            f"atacformer demo: {args.cells:,} held-out synthetic cells (seed {args.seed}; "
            f"the model was trained on seed {train_seed}), model {args.model}",
            flush=True,
        )
    if args.seed == train_seed:
        print("  note: --seed is the training seed, so these cells are not held out")

    with steps.step("generate") as note:
        design = synthetic.make_design(design_spec)
        sample = synthetic.sample_cells(design, cell_spec)
        note.append(
            f"{sample.n_cells:,} cells of {len(design.type_names)} types, "
            f"{len(sample.fragments):,} fragments over {design.n_peaks:,} hg38 peaks"
        )
    tokenizer = Tokenizer.from_pretrained(folder)
    universe = tokenizer.universe
    if not (
        np.array_equal(universe.starts, design.starts)
        and np.array_equal(universe.ends, design.ends)
    ):
        raise CLIError(f"{folder}: synthetic.json does not rebuild this model's universe")

    with steps.step("write") as note:
        fragments = sample.write_fragments(out / DEMO_FRAGMENTS, level=1)
        note.append(f"{fragments} ({fragments.stat().st_size / 1e6:.1f} MB, BGZF)")

    with steps.step("tokenize") as note:
        cells = tokenizer.tokenize_fragments(fragments)
        note.append(f"{len(cells):,} cells, {_summary(cells, tokenizer)}")

    with steps.step("embed") as note:
        load_started = time.perf_counter()
        model = load_model(folder, quiet=True)
        loaded_in = time.perf_counter() - load_started
        check_vocabulary(model, tokenizer, cells)
        embeddings = model.encode_tokenized_cells(cells, progress=_bars_enabled(args.quiet))
        note.append(
            f"{embeddings.shape[0]:,} x {embeddings.shape[1]} "
            f"(loading the model: {loaded_in:.2f} s; {torch.get_num_threads()} threads)"
        )

    row = {b: i for i, b in enumerate(sample.barcodes)}
    order = np.array([row[name] for name in cells.names])
    truth = sample.cell_type[order]
    k = len(design.type_names)
    with steps.step("cluster") as note:
        clusters = cluster(embeddings, k)
        ari = float(adjusted_rand_score(truth, clusters))
        note.append(f"KMeans, k = {k}")

    with steps.step("save") as note:
        obs = sample.to_anndata().obs.iloc[order][["cell_type", "n_fragments", "frip"]]
        uns = {"model": args.model, "cells": json.dumps(cell_spec.__dict__), "ari": ari}
        path = out / DEMO_EMBEDDINGS
        write_embeddings(path, embeddings, cells, obs, clusters, uns)
        note.append(str(path))

    written = [DEMO_FRAGMENTS, DEMO_EMBEDDINGS]
    plot = not args.no_plot
    if plot and not _importable("matplotlib"):
        plot = False
        print("  (no plot: matplotlib is not installed; pip install matplotlib)")
    if plot:
        with steps.step("plot") as note:
            labels = sample.type_labels[order]
            panels = [
                ("true cell type", labels),
                (f"KMeans cluster (ARI {ari:.3f})", clusters),
            ]
            method = plot_cells(out / DEMO_PLOT, embeddings, panels)
            note.append(f"{out / DEMO_PLOT} ({method})")
        written.append(DEMO_PLOT)

    total = time.perf_counter() - started
    baseline = float(adjusted_rand_score(truth, lsi_baseline(sample.count_matrix()[order], k)))
    print(f"adjusted Rand index (KMeans on the embeddings vs the true types): {ari:.3f}")
    if not args.quiet:
        print(f"for reference, LSI of the peak matrix + KMeans: {baseline:.3f}")
        print(
            f"total {total:.1f} s (importing torch included); wrote {', '.join(written)} "
            f"in {out.resolve()}"
        )
    return 0


# ---------------------------------------------------------------------------- utilities


def _require(module: str, purpose: str, install: str) -> Any:
    """Imports an optional dependency or fails with the command that installs it."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError as e:
        raise CLIError(f"{purpose} needs {module}: pip install '{install}'") from e


def _importable(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None


def _set_threads(threads: int | None, torch: Any = None) -> None:
    """Thread count of the tokenizer and, when given, of torch."""
    if threads is None:
        return
    if threads < 1:
        raise CLIError(f"--threads must be at least 1, got {threads}")
    atacformer.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)


def _parse_device(torch: Any, device: str | None) -> Any:
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise CLIError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, mps)") from e
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: CUDA is not available on this machine")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {device}: MPS is not available on this machine")
    return parsed


def _unk_only(cells: TokenizedCells, tokenizer: Tokenizer) -> int:
    """Number of cells whose only token is ``<unk>`` (they overlap nothing)."""
    single = np.flatnonzero(cells.lengths == 1)
    return int(np.sum(cells.ids[cells.offsets[single]] == tokenizer.unk_token_id))


def _summary(cells: TokenizedCells, tokenizer: Tokenizer) -> str:
    """'median N per cell, M with unk only'."""
    lengths = cells.lengths
    median = int(np.median(lengths)) if len(lengths) else 0
    return f"median {median} per cell, {_unk_only(cells, tokenizer)} with unk only"


def _bars_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message)


@contextlib.contextmanager
def _activity(description: str, quiet: bool) -> Iterator[None]:
    """An elapsed-time indicator for a step that reports no progress of its own (a call into
    the Rust core), refreshed from a thread while the step runs with the GIL released."""
    if not _bars_enabled(quiet):
        yield
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield
        return
    bar = tqdm(desc=description, bar_format="{desc}: {elapsed}", file=sys.stderr, leave=False)
    done = threading.Event()

    def tick() -> None:
        while not done.wait(0.2):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()


def _one_line(error: BaseException) -> str:
    """An error as one line: OS errors as 'problem: file', others by their message."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    text = " ".join(str(error).split())
    if not text:
        text = type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."


USER_ERRORS: tuple[type[BaseException], ...] = (
    CLIError,
    AtacformerError,
    OSError,
    ValueError,
    ImportError,
)


# -------------------------------------------------------------------------------- parser


def _common_hub(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Hugging Face Hub")
    g.add_argument("--revision", help="branch, tag or commit of a Hub repo (default: main)")
    g.add_argument("--cache-dir", help="Hub cache folder (default: HF_HUB_CACHE)")
    g.add_argument(
        "--local-files-only",
        action="store_true",
        help="never go online; use the cache only (like HF_HUB_OFFLINE=1)",
    )


def _common_input(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="a 10x fragment file (.tsv.gz, .bgz), a BED file, a directory or list of BED "
        "files (one cell or sample each), or an .h5ad (cells x peaks)",
    )
    g = p.add_argument_group("reading the input")
    g.add_argument(
        "--format",
        choices=["auto", "fragments", "bed", "h5ad", "atok"],
        default="auto",
        help="how to read INPUT (default: from its name)",
    )
    g.add_argument(
        "--barcodes",
        metavar="FILE",
        help="fragments: keep these barcodes (one per line), in this order",
    )
    g.add_argument(
        "--min-fragments",
        type=int,
        default=0,
        metavar="N",
        help="fragments: drop barcodes with fewer than N fragment lines (default 0)",
    )
    g.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="fragments: stop at a malformed line (default) or skip such lines",
    )
    g.add_argument("--layer", help=".h5ad: read this layer instead of X")
    g.add_argument(
        "--threads", type=int, metavar="N", help="threads for tokenizing (and the model)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def build_parser() -> argparse.ArgumentParser:
    """The ``atacformer`` argument parser with its four commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="atacformer",
        description="Tokenize single-cell ATAC-seq data and embed cells with Atacformer.",
        epilog="Start with `atacformer demo`: it runs offline in under a minute.\n"
        "Set ATACFORMER_DEBUG=1 to see tracebacks.",
        formatter_class=fmt,
    )
    parser.add_argument(
        "--version", action="version", version=f"atacformer {atacformer.__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "tokenize",
        help="turn fragments, peaks or BED files into token ids (.atok)",
        description="Tokenize INPUT against a universe and write a TokenizedCells file (.atok):\n"
        "one flat int32 id buffer plus per-cell offsets and names (barcodes, obs names or\n"
        "file names). Fragment files give one cell per barcode (unique ids, genomic order;\n"
        "cells with no overlap dropped); an .h5ad gives one cell per row (nonzero peaks);\n"
        "BED files give one cell each.",
        epilog="examples:\n"
        "  atacformer tokenize fragments.tsv.gz --tokenizer demo -o cells.atok\n"
        "  atacformer tokenize peaks/ --tokenizer universe.bed.gz -o samples.atok\n"
        "  atacformer tokenize pbmc.h5ad --tokenizer databio/atacformer-base-hg38 -o pbmc.atok",
        formatter_class=fmt,
    )
    _common_input(p)
    p.add_argument(
        "--tokenizer",
        required=True,
        metavar="NAME_OR_PATH",
        help="a universe BED file, a tokenizer or model folder, a Hub repo id, or 'demo'",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output .atok file")
    _common_hub(p)
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser(
        "embed",
        help="cell embeddings from an Atacformer model (.h5ad, .npy, .parquet)",
        description="Tokenize INPUT (or read an .atok) and embed every cell with an Atacformer\n"
        "model: the mean of the encoder's token outputs, [n_cells, hidden] float32.\n"
        "OUT is chosen by its suffix:\n"
        "  .h5ad     obsm['X_atacformer'], obs from an .h5ad input (else cell names),\n"
        "            plus obs['atacformer_n_tokens'] (and obs['atacformer_cluster'])\n"
        "  .npy      the matrix alone, rows in the input's cell order\n"
        "  .parquet  a 'cell' column, then atacformer_0 ... atacformer_{hidden-1}",
        epilog="examples:\n"
        "  atacformer embed fragments.tsv.gz --model demo -o cells.h5ad --plot cells.png\n"
        "  atacformer embed cells.atok --model databio/atacformer-base-hg38 -o emb.npy\n"
        "  atacformer embed pbmc.h5ad --model ./my_model --plot pbmc.png --color-by cell_type",
        formatter_class=fmt,
    )
    _common_input(p)
    p.add_argument(
        "--model",
        required=True,
        metavar="NAME_OR_PATH",
        help="a Hub repo id, a local model folder, or 'demo' (the bundled model)",
    )
    p.add_argument(
        "--tokenizer",
        metavar="NAME_OR_PATH",
        help="a tokenizer other than the model's own (it must have the same vocabulary)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help=".h5ad, .npy or .parquet")
    g = p.add_argument_group("the model")
    g.add_argument("--batch-size", type=int, default=64, help="cells per batch (default 64)")
    g.add_argument("--device", help="torch device: cpu, cuda, cuda:1, mps (default: the CPU)")
    g.add_argument("--dtype", choices=DTYPES, default="float32", help="compute dtype")
    g.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="keep a seeded random subset of N tokens of longer cells (default: the model's "
        "context when it uses positions, else no limit)",
    )
    g = p.add_argument_group("clusters and plot")
    g.add_argument(
        "--plot", metavar="FILE.png", help="draw a 2-D map (UMAP if installed, else PCA)"
    )
    g.add_argument("--color-by", metavar="COLUMN", help="colour the plot by this obs column")
    g.add_argument(
        "--n-clusters",
        type=int,
        metavar="K",
        help="KMeans clusters to store and to colour by (default 8 when plotting)",
    )
    _common_hub(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser(
        "info",
        help="summarise a model or tokenizer",
        description="Print a tokenizer and model summary: universe size, vocabulary, special\n"
        "tokens, hidden size, layers, heads and parameter count. NAME_OR_PATH is 'demo', a\n"
        "local folder or a Hub repo id.",
        epilog="examples:\n  atacformer info demo\n  atacformer info databio/atacformer-base-hg38",
        formatter_class=fmt,
    )
    p.add_argument("name", metavar="NAME_OR_PATH")
    _common_hub(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "demo",
        help="the whole pipeline offline on synthetic cells, with a score",
        description="Run everything offline with the bundled demo model: generate held-out\n"
        "synthetic cells (types with their own accessible peaks over hg38), write their 10x\n"
        "fragment file, tokenize it, embed the cells, cluster them with KMeans (k = number of\n"
        "types), print the adjusted Rand index against the true types and the time of each\n"
        "step, and draw a PNG. Files go into --out (default: the current directory):\n"
        "demo_fragments.tsv.gz, demo_embeddings.h5ad and demo_cells.png.",
        formatter_class=fmt,
    )
    p.add_argument("--out", default=".", metavar="DIR", help="output folder (default: .)")
    p.add_argument("--model", default=DEMO_NAME, help="a model trained on atacformer.synthetic")
    p.add_argument("--cells", type=int, default=600, help="number of cells (default 600)")
    p.add_argument("--seed", type=int, default=2024, help="seed of the held-out cells")
    p.add_argument("--threads", type=int, metavar="N", help="threads for tokenizing and the model")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the results")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0 ok, 1 error, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except USER_ERRORS as e:
        if os.environ.get("ATACFORMER_DEBUG"):
            raise
        print(f"atacformer {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("atacformer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
