"""One resolver for model names: ``"demo"``, a local folder, or a Hugging Face Hub repo id.

:func:`resolve_pretrained` turns any of the three into a local folder. The tokenizer
(``Tokenizer.from_pretrained``), every model class (``AtacformerModel.from_pretrained`` and
the heads) and the command line all go through it, so a name means the same thing
everywhere and fails with the same error.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Union

from .exceptions import (
    AtacformerIOError,
    AtacformerTypeError,
    InvalidInputError,
    MissingFileError,
    ParseError,
)

PathLike = Union[str, "os.PathLike[str]"]

NO_SUCH_PATH = "no such file or directory"

DEMO_NAME = "demo"
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"
"""The small model that ships inside the package (the name ``"demo"``)."""

TOKENIZER_PATTERNS = ("*.json", "*.toml", "*.bed", "*.bed.gz")
"""Files fetched from a Hub repo for its tokenizer and config."""
WEIGHT_PATTERNS = ("*.safetensors",)
"""Files fetched in addition for a model's weights."""


FILE_SUFFIXES = (
    ".bed",
    ".gz",
    ".bgz",
    ".toml",
    ".json",
    ".tsv",
    ".txt",
    ".csv",
    ".h5ad",
    ".atok",
    ".safetensors",
    ".zarr",
    ".npy",
    ".parquet",
)
"""Endings that make a name a file path rather than a Hub repo id."""


def _looks_like_path(name: str) -> bool:
    """True for names that can only be paths: ``./x``, ``/x``, ``~/x``, ``a/b/c``, a name
    without a ``/`` such as ``peaks.bedd`` (a Hub repo id is ``org/name``), and one ending
    like a file (``data/peaks.bed``)."""
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        return True
    if os.sep != "/" and os.sep in name:
        return True
    return name.lower().endswith(FILE_SUFFIXES)


def _offline(local_files_only: bool) -> bool:
    return local_files_only or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def resolve_pretrained(
    name: PathLike,
    *,
    revision: str | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    weights: bool = True,
) -> Path:
    """The local folder that ``name`` stands for.

    - ``"demo"``: the packaged demo model;
    - an existing folder: itself;
    - otherwise a Hub repo id, fetched with ``huggingface_hub.snapshot_download`` (config,
      tokenizer and universe files, and with ``weights`` the ``*.safetensors``). It honours
      ``HF_HUB_OFFLINE=1``, ``HF_HUB_CACHE``, ``cache_dir``, ``revision`` and
      ``local_files_only``, and returns the snapshot folder in the cache.

    A repo already in the local cache loads from it without touching the network (even
    when ``HF_HUB_OFFLINE`` is unset); ``hf download`` refreshes a cached repo.

    Raises :class:`~atacformer.MissingFileError` for a path that does not exist ("no such
    file or directory"; a name without exactly one ``/``, or ending like a file, is a
    path), a repo or revision the Hub does not have, or a repo not in the cache while
    offline; :class:`~atacformer.InvalidInputError` for a file; and
    :class:`~atacformer.AtacformerIOError` when the Hub cannot be reached and the repo is
    not cached (the message says how to bring it over), or answers with another HTTP
    error.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise AtacformerTypeError(
            f"a model name must be a string or a path, got {type(name).__name__}"
        )
    text = os.fspath(name)
    if not text:
        raise InvalidInputError("the model name is empty: give 'demo', a folder or a repo id")
    if text == DEMO_NAME:
        if not (DEMO_MODEL_DIR / "config.json").is_file():
            raise MissingFileError(
                errno.ENOENT,
                "the demo model is missing from this installation",
                str(DEMO_MODEL_DIR),
            )
        return DEMO_MODEL_DIR
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise InvalidInputError(
            f"{path} is a file; give a folder (config.json, model.safetensors, "
            "universe.bed.gz), a Hugging Face Hub repo id or 'demo'"
        )
    if _looks_like_path(text):
        raise MissingFileError(errno.ENOENT, NO_SUCH_PATH, str(path))
    return _snapshot(text, revision, cache_dir, local_files_only, token, weights)


def _cache_folder(cache_dir: PathLike | None) -> str:
    from huggingface_hub import constants

    return os.fspath(cache_dir) if cache_dir is not None else constants.HF_HUB_CACHE


HUB_TIMEOUT_S = 3.0
"""Seconds to wait for the Hub's first answer (``ATACFORMER_HUB_TIMEOUT`` overrides it)
before deciding it cannot be reached: a network that drops packets would otherwise hang
``huggingface_hub``'s calls, which have no timeout."""


def _hub_timeout() -> float:
    raw = os.environ.get("ATACFORMER_HUB_TIMEOUT", "")
    try:
        value = float(raw) if raw else HUB_TIMEOUT_S
    except ValueError:
        value = HUB_TIMEOUT_S
    return value if value > 0 else HUB_TIMEOUT_S


def _unreachable(repo_id: str, revision: str | None, token: str | bool | None) -> str | None:
    """Why the Hub cannot be reached (None when it answers, with any HTTP status): asks it
    for the repo's info on a daemon thread and waits at most :func:`_hub_timeout` s, so a
    dead DNS resolver or a dropped connection cannot hang the caller."""
    import threading

    from huggingface_hub import HfApi
    from huggingface_hub.utils import HfHubHTTPError

    outcome: list[BaseException | None] = []

    def ask() -> None:
        try:
            HfApi().repo_info(repo_id, revision=revision, token=token, timeout=_hub_timeout())
            outcome.append(None)
        except BaseException as e:  # reported to the caller, never raised on the thread
            outcome.append(e)

    thread = threading.Thread(target=ask, name="atacformer-hub-probe", daemon=True)
    thread.start()
    thread.join(_hub_timeout())
    if not outcome:
        return f"no answer within {_hub_timeout():g} s"
    error = outcome[0]
    if error is None or isinstance(error, HfHubHTTPError):  # an answer, if a refusal
        return None
    return type(error).__name__


def _offline_advice(repo_id: str, cache: str) -> str:
    return (
        f"to work offline, download it on a connected machine (`hf download {repo_id}`), "
        f"set HF_HUB_OFFLINE=1 and copy the Hugging Face cache to {cache} (HF_HUB_CACHE)"
    )


def _snapshot(
    repo_id: str,
    revision: str | None,
    cache_dir: PathLike | None,
    local_files_only: bool,
    token: str | bool | None,
    weights: bool,
) -> Path:
    """The snapshot folder of a Hub repo: from the local cache when it holds the files,
    without touching the network; otherwise downloaded. Cached repos are used as they are
    (``hf download`` refreshes them)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import (  # re-exported here by every supported version
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = list(TOKENIZER_PATTERNS + (WEIGHT_PATTERNS if weights else ()))
    options: dict[str, Any] = dict(
        revision=revision,
        cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        token=token,
        allow_patterns=patterns,
    )
    offline = _offline(local_files_only)
    cached: Path | None = None
    try:
        cached = Path(snapshot_download(repo_id, local_files_only=True, **options))
    except HFValidationError as e:
        raise MissingFileError(
            errno.ENOENT, f"{NO_SUCH_PATH}, nor a valid Hugging Face Hub repo id", repo_id
        ) from e
    except LocalEntryNotFoundError:  # not cached, or cached in part
        pass
    # A cache filled for a tokenizer alone lacks the weights a model needs: fetch them.
    if cached is not None and (offline or not weights or any(cached.glob("*.safetensors"))):
        return cached
    cache = _cache_folder(cache_dir)
    if offline:
        why = "local_files_only=True" if local_files_only else "HF_HUB_OFFLINE is set"
        raise MissingFileError(
            errno.ENOENT,
            f"not in the local Hugging Face cache, and offline mode is on ({why}); "
            + _offline_advice(repo_id, cache),
            repo_id,
        )
    why_not = _unreachable(repo_id, revision, token)
    if why_not is not None:
        if cached is not None:  # the weights cannot be fetched: load what there is
            return cached
        raise AtacformerIOError(
            f"{repo_id}: the Hugging Face Hub could not be reached ({why_not}) and the repo "
            "is not in the local cache; " + _offline_advice(repo_id, cache)
        )
    try:
        folder = snapshot_download(repo_id, **options)
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        what = f"revision {revision!r}" if isinstance(e, RevisionNotFoundError) else "model"
        raise MissingFileError(
            errno.ENOENT, f"no such {what} on the Hugging Face Hub", repo_id
        ) from e
    except LocalEntryNotFoundError as e:
        if cached is not None:  # the weights could not be fetched: load what there is
            return cached
        cause = e.__cause__ or e.__context__
        detail = f" ({type(cause).__name__})" if cause is not None else ""
        raise AtacformerIOError(
            f"{repo_id}: the Hugging Face Hub could not be reached{detail} and the repo is "
            "not in the local cache; " + _offline_advice(repo_id, cache)
        ) from e
    except HfHubHTTPError as e:
        raise AtacformerIOError(f"{repo_id}: the Hugging Face Hub answered: {e}") from e
    return Path(folder)


MAX_CONFIG_BYTES = 16 << 20
"""The largest ``config.json`` read (real ones are under a kilobyte)."""


def read_config(path: Path) -> dict[str, Any]:
    """A model's ``config.json`` as a dict; malformed JSON (or a list, null, a nesting too
    deep to parse, a file over :data:`MAX_CONFIG_BYTES`) is a :class:`ParseError` naming the
    file and line, and a file that cannot be read an :class:`AtacformerIOError`."""
    import json

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise AtacformerIOError(
            e.errno, f"cannot read the model config: {e.strerror}", str(path)
        ) from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ParseError(
            f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB, so not a model config",
            path=str(path),
        )
    try:
        config = json.loads(raw.decode("utf-8"))
    except RecursionError as e:
        raise ParseError(f"{path}: JSON nested too deeply", path=str(path)) from e
    except UnicodeDecodeError as e:
        raise ParseError(f"{path}: not UTF-8 text ({e.reason})", path=str(path)) from e
    except json.JSONDecodeError as e:
        message = f"{path}:{e.lineno}: not JSON: {e.msg}"
        raise ParseError(message, path=str(path), line=e.lineno) from e
    if not isinstance(config, dict):
        raise ParseError(f"{path}: expected a JSON object", path=str(path), line=1)
    return config


WEIGHTS_NAME = "model.safetensors"
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
"""The safetensors dtypes a model parameter may be stored in."""
_MAX_HEADER = 100_000_000  # safetensors' own limit on its JSON header


def check_weights_header(path: Path) -> None:
    """Refuses a ``model.safetensors`` whose tensors are not floating point (a parameter
    stored as integers would be cast silently). Other damage is left to safetensors, whose
    errors :func:`load_model` names the file for."""
    import json

    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return
            n = int.from_bytes(head, "little")
            if n > _MAX_HEADER or n > path.stat().st_size - 8:
                return
            header = json.loads(f.read(n))
    except (OSError, ValueError, RecursionError):
        return
    if not isinstance(header, dict):
        return
    for key, entry in header.items():
        if key == "__metadata__" or not isinstance(entry, dict):
            continue
        dtype = entry.get("dtype")
        if dtype not in FLOAT_DTYPES:
            raise ParseError(
                f"{path}: tensor {key} is stored as {dtype}, not as floating point "
                f"({', '.join(sorted(FLOAT_DTYPES))}): not Atacformer weights",
                path=str(path),
            )


def _load_encoder(cls: Any, folder: Path, weights: Path) -> Any:
    """``cls.from_pretrained(folder)`` with every failure of the files as one
    :class:`~atacformer.AtacformerError` that names the file."""
    from safetensors import SafetensorError

    from .exceptions import AtacformerError

    where = weights if weights.is_file() else folder
    try:
        return cls.from_pretrained(folder)
    except AtacformerError:
        raise
    except SafetensorError as e:
        raise ParseError(f"{where}: not a readable safetensors file ({e})", path=str(where)) from e
    except OSError as e:  # transformers' word for a folder without weights
        raise AtacformerIOError(f"{folder}: cannot load the model: {e}") from e
    except RuntimeError as e:
        if "mismatched" not in str(e) and "size mismatch" not in str(e):
            raise ParseError(f"{where}: cannot load the weights ({e})", path=str(where)) from e
        try:  # load again, tolerating the mismatch, to learn which tensors do not fit
            _, info = cls.from_pretrained(
                folder, ignore_mismatched_sizes=True, output_loading_info=True
            )
        except Exception:
            info = {}
        shown = "; ".join(
            f"{key}: {tuple(have)} in the file, {tuple(want)} for the config"
            for key, have, want in sorted(info.get("mismatched_keys", ()))[:4]
        )
        raise ParseError(
            f"{where}: tensor shapes do not fit config.json ({shown or e})", path=str(where)
        ) from e
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as e:
        raise ParseError(
            f"{where}: cannot load the model ({type(e).__name__}: {e})", path=str(where)
        ) from e


def load_model(
    name: PathLike,
    *,
    revision: str | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Any:
    """The encoder (:class:`~atacformer.AtacformerModel`) of the model ``name`` stands for.

    Any Atacformer checkpoint loads, whatever its head: the head's weights are left out
    without a warning. Everything else that can be wrong with the files is one
    :class:`~atacformer.AtacformerError` naming the file: a folder without ``config.json``
    (:class:`~atacformer.MissingFileError`), a ``config.json`` that is not a JSON object
    (:class:`~atacformer.ParseError`) or has bad sizes (:class:`~atacformer.ConfigError`), a
    model of another type, a damaged ``model.safetensors`` (a ``ParseError``: truncated, a
    bad header, non-float tensors, shapes that do not fit the config), and a checkpoint that
    lacks encoder weights (an :class:`~atacformer.InvalidInputError` naming them: embedding
    with randomly initialised weights would give noise).
    """
    from ._deps import require_all

    require_all(["torch", "transformers", "safetensors"], "loading a model", "atacformer[model]")
    folder = resolve_pretrained(
        name,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise MissingFileError(errno.ENOENT, "no config.json, so it holds no model", str(folder))
    model_type = read_config(config_path).get("model_type")
    if model_type != "atacformer":
        raise InvalidInputError(f"{config_path}: model_type is {model_type!r}, not 'atacformer'")
    weights = folder / WEIGHTS_NAME
    if weights.is_file():
        check_weights_header(weights)
    from transformers.utils import logging as hf_logging

    from .modeling_atacformer import AtacformerModel

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # head weights left out of the encoder are expected
    hf_logging.disable_progress_bar()
    try:
        model = _load_encoder(AtacformerModel, folder, weights)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    # Missing head weights are fine; missing encoder weights would embed noise.
    model.check_encoder_loaded(source=str(weights if weights.is_file() else folder))
    model.config._name_or_path = model.name_or_path = os.fspath(name)
    return model
