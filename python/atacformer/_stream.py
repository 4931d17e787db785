"""Tokenized atlases on disk, read in row blocks, and the resumable block store of embeddings.

An atlas is the ``.h5ad`` (or ``.zarr``) that ``atacformer tokenize --manifest`` writes: ``X``
is CSR cells x universe whose ``indices`` are the token ids, and ``uns["atacformer"]
["universe_id"]`` names the universe. :class:`Atlas` reads it without loading ``X``: ``indptr``
once (``n_cells + 1`` int64), then one slice of ``indices`` per block of rows.

Embedding an atlas (:func:`embed_atlas`, what :func:`atacformer.tl.embed` runs for one) works in
fixed blocks of cells, the unit of resuming and of distribution:

- each finished block's embeddings go to ``{out}.partial/block_{i:07d}.npy`` (written
  atomically), beside a ``fingerprint.json`` of the model (config and a hash of its weights),
  the universe, the settings and the atlas; a rerun with the same fingerprint skips the
  finished blocks, a different one starts over;
- a block is embedded on its own (its cells sorted by length inside it, truncation seeded by
  the cell's atlas row), so a block's result does not depend on which blocks ran before it or
  on which process ran it;
- under ``torch.distributed`` (an initialised process group, or the environment ``torchrun``
  and ``accelerate launch`` set) the unfinished blocks are spread over the ranks by their token
  counts (greedy longest-first), every rank writes its blocks to the shared store, and rank 0
  assembles the output in atlas order once all are there;
- the final ``.h5ad`` (atlas ``obs``, ``obsm["X_atacformer"]``, ``uns["atacformer"]``) is
  written atomically, then the store is removed.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import heapq
import json
import logging
import os
import shutil
import signal
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path
from .exceptions import AtacformerIOError, InvalidInputError, MissingFileError
from .tokenized_cells import TokenizedCells

__all__ = [
    "Atlas",
    "BlockStore",
    "DEFAULT_BLOCK_SIZE",
    "assign_blocks",
    "embed_atlas",
    "is_atlas",
]

PathLike = str | os.PathLike[str]

DEFAULT_BLOCK_SIZE = 4096
"""Cells per block: the resume unit; a killed run loses at most one block per process."""

STORE_SUFFIX = ".partial"
"""The block store of ``out`` is the folder ``{out}.partial`` beside it."""

_FINGERPRINT = "fingerprint.json"
_STORE_VERSION = 1
_KILL_HOOK = "ATACFORMER_TEST_KILL_AFTER_BLOCKS"
"""``RANK:K`` (or ``K`` for every rank): SIGKILL the process once it has written K blocks in
this run. For the tests of resuming; never set in normal use."""


# --------------------------------------------------------------------------- the atlas


def is_atlas(data: Any) -> bool:
    """True for a tokenized atlas: an ``.h5ad``/``.zarr`` path, or an ``AnnData`` backed by
    one, whose ``uns["atacformer"]`` names a ``universe_id`` and whose ``X`` is CSR."""
    path = _backing_path(data)
    if path is None:
        return False
    try:
        with _open_group(path) as root:
            return _universe_id_of(root) is not None and _csr_encoding(root) == "csr_matrix"
    except (OSError, KeyError, ValueError, TypeError):
        return False


def _backing_path(data: Any) -> Path | None:
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        return path if path.suffix.lower() in (".h5ad", ".zarr") and path.exists() else None
    if getattr(data, "isbacked", False) and getattr(data, "filename", None) is not None:
        return Path(data.filename)
    return None


@contextlib.contextmanager
def _open_group(path: Path) -> Iterator[Any]:
    """The root group of an ``.h5ad`` (h5py) or ``.zarr`` (zarr), read-only."""
    if path.suffix.lower() == ".zarr" or path.is_dir():
        import zarr

        yield zarr.open_group(str(path), mode="r")
        return
    import h5py

    with h5py.File(path, "r") as f:
        yield f


def _attr(node: Any, name: str) -> Any:
    value = node.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else value


def _csr_encoding(root: Any) -> Any:
    return _attr(root["X"], "encoding-type") if "X" in root else None


def _universe_id_of(root: Any) -> str | None:
    try:
        node = root["uns"]["atacformer"]["universe_id"]
    except KeyError:
        return None
    value = node[()]
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        value = value.item()
        value = value.decode() if isinstance(value, bytes) else value
    return str(value)


class Atlas:
    """A tokenized atlas opened read-only; rows are read in blocks, never all of ``X``.

    ``indptr`` (``[n_cells + 1]`` int64) is read at open; :meth:`block` reads one slice of
    ``indices``. A cell without tokens reads as ``[unk]``, as the tokenizer gives a cell that
    overlaps nothing. The file handle is opened per process (safe after ``fork``, as in
    ``DataLoader`` workers) and closed by :meth:`close` or ``with``.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise MissingFileError(2, "no such atlas", str(self.path))
        if not self.path.is_dir() and self.path.suffix.lower() not in (".h5ad", ".zarr"):
            import h5py

            if not h5py.is_hdf5(self.path):
                raise InvalidInputError(
                    f"{self.path}: not an .h5ad/.zarr atlas (a tokenized atlas is the .h5ad or "
                    ".zarr that atacformer tokenize --manifest -o writes; tokenize a manifest "
                    "or fragment files first)"
                )
        self._root: Any = None
        self._pid = -1
        self._handle: Any = None
        try:
            self._read_header()
        except (KeyError, ValueError, TypeError) as e:
            self.close()
            if isinstance(e, InvalidInputError):
                raise
            raise InvalidInputError(f"{self.path}: not a readable tokenized atlas ({e})") from e
        except OSError as e:
            self.close()
            raise AtacformerIOError(f"{self.path}: cannot read the atlas ({e})") from e

    def _read_header(self) -> None:
        root = self._group()
        if "X" not in root or _csr_encoding(root) != "csr_matrix":
            raise InvalidInputError(
                f"{self.path}: X is not a CSR matrix (encoding {_csr_encoding(root)!r}); a "
                "tokenized atlas has cells x universe CSR (atacformer tokenize --manifest)"
            )
        self.universe_id = _universe_id_of(root)
        if self.universe_id is None:
            raise InvalidInputError(
                f"{self.path}: uns['atacformer']['universe_id'] is missing: this is not a "
                "tokenized atlas (atacformer tokenize --manifest writes one)"
            )
        x = root["X"]
        shape = [int(v) for v in _attr(x, "shape")]
        self.n_cells, self.n_vars = shape
        self.indptr = np.asarray(x["indptr"][:], dtype=np.int64)
        if len(self.indptr) != self.n_cells + 1 or self.indptr[0] != 0:
            raise InvalidInputError(
                f"{self.path}: X/indptr has {len(self.indptr)} entries for {self.n_cells} rows"
            )
        if np.any(np.diff(self.indptr) < 0) or self.indptr[-1] != x["indices"].shape[0]:
            raise InvalidInputError(
                f"{self.path}: X/indptr does not describe X/indices (decreasing, or it does "
                "not end at the number of stored ids)"
            )
        uns = root["uns"]["atacformer"]
        self.vocab_size = int(uns["vocab_size"][()]) if "vocab_size" in uns else None

    def _group(self) -> Any:
        if self._root is None or self._pid != os.getpid():
            self._handle = _open_group(self.path)
            self._root = self._handle.__enter__()
            self._pid = os.getpid()
        return self._root

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.__exit__(None, None, None)
        self._root = self._handle = None

    def __enter__(self) -> Atlas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n_cells

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_root=None, _handle=None, _pid=-1)  # each process opens its own handle
        return state

    @property
    def lengths(self) -> np.ndarray:
        """Stored token ids per cell, ``[n_cells]`` int64."""
        return np.diff(self.indptr)

    def block(self, start: int, stop: int, unk_token_id: int | None = None) -> TokenizedCells:
        """Cells ``start:stop`` as ``TokenizedCells`` (ids int32, in stored order); a cell
        without ids gets ``[unk_token_id]`` when one is given."""
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        ids = np.asarray(self._group()["X"]["indices"][lo:hi])
        offsets = self.indptr[start : stop + 1] - lo
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self.n_vars):
            raise InvalidInputError(
                f"{self.path}: rows {start}..{stop} hold token ids outside 0..{self.n_vars - 1}"
            )
        lengths = np.diff(offsets)
        if unk_token_id is not None and (lengths == 0).any():
            ids, offsets = _fill_empty(ids, lengths, unk_token_id)
        return TokenizedCells(ids.astype(np.int32, copy=False), offsets)

    def obs(self) -> Any:
        """The atlas's ``obs`` table (a pandas ``DataFrame``)."""
        from anndata.io import read_elem

        return read_elem(self._group()["obs"])

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the atlas's contents for resuming."""
        stat = self.path.stat()
        return {
            "path": str(self.path.resolve()),
            "size": _tree_size(self.path),
            "mtime_ns": stat.st_mtime_ns,
            "n_cells": self.n_cells,
            "n_ids": int(self.indptr[-1]),
            "universe_id": self.universe_id,
        }


def _tree_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _fill_empty(
    ids: np.ndarray, lengths: np.ndarray, unk_token_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` with ``[unk]`` inserted for each empty cell, and the new offsets."""
    empty = lengths == 0
    new_lengths = np.where(empty, 1, lengths)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(new_lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.int32)
    keep = np.ones(len(out), dtype=bool)
    keep[offsets[:-1][empty]] = False
    out[keep] = ids
    out[~keep] = unk_token_id
    return out, offsets


def blocks_of(n_cells: int, block_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` rows of each block, in atlas order."""
    return [(lo, min(lo + block_size, n_cells)) for lo in range(0, n_cells, block_size)]


def assign_blocks(tokens: Sequence[int], world_size: int) -> list[list[int]]:
    """Block indices per rank, balanced by token count: greedy longest-processing-time (the
    largest block goes to the least loaded rank); each rank's list is in atlas order."""
    loads = [(0, rank) for rank in range(world_size)]
    heapq.heapify(loads)
    owned: list[list[int]] = [[] for _ in range(world_size)]
    for block in sorted(range(len(tokens)), key=lambda b: (-int(tokens[b]), b)):
        load, rank = heapq.heappop(loads)
        owned[rank].append(block)
        heapq.heappush(loads, (load + int(tokens[block]), rank))
    return [sorted(blocks) for blocks in owned]


# --------------------------------------------------------------------------- the block store


@dataclass
class BlockStore:
    """The folder of finished blocks, ``block_{i:07d}.npy`` (``[cells, hidden]`` float32),
    with the ``fingerprint.json`` of the run that wrote them."""

    folder: Path

    def block_path(self, index: int) -> Path:
        return self.folder / f"block_{index:07d}.npy"

    def fingerprint(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder / _FINGERPRINT).read_text())
        except (OSError, ValueError):
            return None

    def prepare(self, fingerprint: dict[str, Any]) -> str | None:
        """Makes the store ready for ``fingerprint``: kept when it matches, else emptied.
        Returns why it was emptied, or None."""
        fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))  # as it reads back
        why = None
        if self.folder.exists():
            old = self.fingerprint()
            if old == fingerprint:
                return None
            why = _what_changed(old, fingerprint)
            shutil.rmtree(self.folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.folder / _FINGERPRINT) as tmp:
                tmp.write_text(json.dumps(fingerprint, indent=1, sort_keys=True))
        except OSError as e:
            raise AtacformerIOError(
                e.errno, f"cannot write the block store: {e.strerror}", str(self.folder)
            ) from e
        return why

    def finished(self, n_blocks: int) -> set[int]:
        return {i for i in range(n_blocks) if self.block_path(i).exists()}

    def write(self, index: int, embeddings: np.ndarray) -> None:
        with atomic_path(self.block_path(index)) as tmp, open(tmp, "wb") as f:
            np.save(f, embeddings)

    def read(self, index: int, n_cells: int, hidden: int) -> np.ndarray:
        path = self.block_path(index)
        try:
            values = np.load(path)
        except (OSError, ValueError) as e:
            raise AtacformerIOError(f"{path}: unreadable block of embeddings ({e})") from e
        if values.shape != (n_cells, hidden) or values.dtype != np.float32:
            raise AtacformerIOError(
                f"{path}: a block of {values.shape} {values.dtype}, expected "
                f"({n_cells}, {hidden}) float32; delete {self.folder} and run again"
            )
        return values


def _what_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    if old is None:
        return "its fingerprint is missing or unreadable"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "changed: " + ", ".join(keys)


def model_fingerprint(model: Any) -> dict[str, Any]:
    """The model's config and a BLAKE2 hash of its weights (names, dtypes, shapes, bytes)."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().contiguous().cpu()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        digest.update(t.numpy().tobytes())
    config = model.config.to_dict()
    config.pop("transformers_version", None)
    return {"class": type(model).__name__, "config": config, "weights": digest.hexdigest()}


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Group:
    """This process's place among the processes embedding the atlas."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created: bool = False  # this module initialised the process group

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def join_group(device: Any) -> Group:
    """The running process group, or the one the ``torchrun`` environment describes
    (``WORLD_SIZE`` > 1; joined with NCCL for CUDA, else gloo); a single process otherwise."""
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Group()
    if not dist.is_available():
        raise InvalidInputError("WORLD_SIZE is set but this torch has no torch.distributed")
    local = _env_int("LOCAL_RANK", 0)
    cuda = device is not None and torch.device(device).type == "cuda"
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local)
    # Ranks meet only at the start and the end; the end waits for the slowest rank.
    dist.init_process_group(backend, timeout=datetime.timedelta(hours=6))
    return Group(dist.get_rank(), dist.get_world_size(), local, created=True)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidInputError(
            f"the environment variable {name}={value!r} is not an integer"
        ) from None


def rank_device(device: Any, group: Group) -> Any:
    """``cuda`` means ``cuda:LOCAL_RANK`` under several processes; other devices as given."""
    import torch

    if device is None or not group.distributed:
        return device
    parsed = torch.device(device)
    if parsed.type == "cuda" and parsed.index is None:
        return torch.device("cuda", group.local_rank)
    return parsed


def _broadcast(value: Any, group: Group) -> Any:
    if not group.distributed:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier(group: Group) -> None:
    if group.distributed:
        import torch.distributed as dist

        dist.barrier()


# --------------------------------------------------------------------------- embedding


@dataclass(frozen=True)
class Settings:
    """What changes the embeddings: part of the store's fingerprint."""

    batch_size: int
    dtype: str
    max_tokens_per_cell: int | None
    block_size: int
    device_type: str
    seed: int = 0


def embed_atlas(
    atlas: Atlas,
    model: Any,
    tokenizer: Any,
    settings: Settings,
    *,
    device: Any = None,
    out: Path | None = None,
    progress: bool = True,
    log: Any = None,
) -> tuple[np.ndarray | None, Group]:
    """Embeddings ``[n_cells, hidden]`` float32 of every atlas cell in atlas order (on rank
    0; None on the other ranks), and the process group it ran in.

    With ``out``, finished blocks go to the store ``{out}.partial`` and a rerun resumes from
    it; without, blocks are gathered in memory (through the process group when there is one).
    ``log`` takes the resume messages (default: the ``atacformer`` logger; rank 0 only).
    """
    group = join_group(device)
    try:
        return _embed_atlas(atlas, model, tokenizer, settings, group, device, out, progress, log)
    finally:
        if group.created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _embed_atlas(
    atlas: Atlas,
    model: Any,
    tokenizer: Any,
    settings: Settings,
    group: Group,
    device: Any,
    out: Path | None,
    progress: bool,
    log: Any,
) -> tuple[np.ndarray | None, Group]:
    say = _logger(log, group)
    device = rank_device(device, group)
    blocks = blocks_of(atlas.n_cells, settings.block_size)
    hidden = int(model.config.hidden_size)
    store = None if out is None else BlockStore(Path(f"{out}{STORE_SUFFIX}"))
    done: set[int] = set()
    if store is not None:
        fingerprint = {
            "version": _STORE_VERSION,
            "model": model_fingerprint(model),
            "universe_id": tokenizer.universe_id,
            "settings": settings.__dict__,
            "atlas": atlas.fingerprint(),
        }
        if group.rank == 0:
            why = store.prepare(fingerprint)
            if why is not None:
                say(f"the block store {store.folder} is from another run ({why}): starting over")
            done = store.finished(len(blocks))
            if done:
                say(f"resuming: skipping {len(done)} of {len(blocks)} finished blocks")
        done = _broadcast(done, group)
    todo = [b for b in range(len(blocks)) if b not in done]
    tokens = [int(atlas.indptr[blocks[b][1]] - atlas.indptr[blocks[b][0]]) for b in todo]
    mine = [todo[i] for i in assign_blocks(tokens, group.world_size)[group.rank]]
    kill_after = _kill_after(group.rank)
    results: dict[int, np.ndarray] = {}
    done_cells = sum(blocks[b][1] - blocks[b][0] for b in done)
    with _bar(atlas.n_cells, done_cells, progress and group.rank == 0) as bar:
        for count, b in enumerate(mine, 1):
            start, stop = blocks[b]
            emb = embed_block(atlas, model, tokenizer, start, stop, settings, device)
            if store is not None:
                store.write(b, emb)
            else:
                results[b] = emb
            if kill_after is not None and count >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            if store is not None and group.distributed:
                bar.n = atlas.n_cells - _cells_left(store, blocks)  # every rank's blocks
                bar.refresh()
            else:
                bar.update(stop - start)
        if store is not None and group.distributed and group.rank == 0:
            while (left := _cells_left(store, blocks)) > 0:  # the other ranks' last blocks
                bar.n = atlas.n_cells - left
                bar.refresh()
                time.sleep(0.2)
            bar.n = atlas.n_cells
            bar.refresh()
    if store is None and group.distributed:
        import torch.distributed as dist

        parts: list[Any] = [None] * group.world_size
        dist.all_gather_object(parts, results)
        results = {k: v for part in parts for k, v in part.items()}
    _barrier(group)
    if group.rank != 0:
        return None, group
    embeddings = np.empty((atlas.n_cells, hidden), dtype=np.float32)
    for b, (start, stop) in enumerate(blocks):
        if store is not None:
            embeddings[start:stop] = store.read(b, stop - start, hidden)
        else:
            embeddings[start:stop] = results.pop(b)
    return embeddings, group


def _cells_left(store: BlockStore, blocks: list[tuple[int, int]]) -> int:
    return sum(
        stop - start for i, (start, stop) in enumerate(blocks) if not store.block_path(i).exists()
    )


def embed_block(
    atlas: Atlas,
    model: Any,
    tokenizer: Any,
    start: int,
    stop: int,
    settings: Settings,
    device: Any,
) -> np.ndarray:
    """Embeddings ``[stop - start, hidden]`` of atlas rows ``start:stop``, computed from
    those rows alone: cells cut to ``max_tokens_per_cell`` keep the subset the in-memory
    path keeps for the same atlas row."""
    cells = atlas.block(start, stop, tokenizer.unk_token_id)
    limit = settings.max_tokens_per_cell
    if limit is not None and (cells.lengths > limit).any():
        cells = truncate_at(cells, limit, start, settings.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty cells: counted once, by the caller
        emb = model.encode_tokenized_cells(
            cells,
            batch_size=settings.batch_size,
            progress=False,
            device=device,
            dtype=None if settings.dtype == "float32" else settings.dtype,
        )
    return np.ascontiguousarray(emb, dtype=np.float32)


def truncate_at(
    cells: TokenizedCells, max_tokens: int, first_row: int, seed: int
) -> TokenizedCells:
    """``cells.truncate(max_tokens, "random", seed)`` as if ``cells`` began at row
    ``first_row`` of the whole set: the core seeds each cell's subset by its row, so the
    block is placed after ``first_row`` empty cells (which cost only their offsets)."""
    offsets = np.concatenate([np.zeros(first_row, dtype=np.int64), cells.offsets])
    cut = TokenizedCells(cells.ids, offsets).truncate(max_tokens, "random", seed)
    ends = cut.offsets[first_row:]
    return TokenizedCells(cut.ids, ends - ends[0], cells.names, cells.pad_token_id)


def _kill_after(rank: int) -> int | None:
    value = os.environ.get(_KILL_HOOK)
    if not value:
        return None
    who, _, count = value.rpartition(":")
    if who and int(who) != rank:
        return None
    return int(count)


LOGGER = logging.getLogger("atacformer")
"""Resume messages go here at WARNING level, so they show without any logging set up."""


def _logger(log: Any, group: Group) -> Any:
    if group.rank != 0:
        return lambda message: None
    return log if log is not None else LOGGER.warning


@contextlib.contextmanager
def _bar(total: int, initial: int, enabled: bool) -> Iterator[Any]:
    """One tqdm bar over the whole atlas (cells, cells/s, ETA), or a silent stand-in."""
    bar: Any = None
    if enabled:
        with contextlib.suppress(ImportError):
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=initial, unit="cell", desc="Embedding the atlas")
    if bar is None:
        bar = _Quiet(initial)
    try:
        yield bar
    finally:
        bar.close()


class _Quiet:
    def __init__(self, initial: int) -> None:
        self.n = initial

    def update(self, n: int) -> None:
        self.n += n

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def write_h5ad(path: Path, adata: Any) -> None:
    """``adata`` as ``.h5ad`` at ``path`` through ``atomic_path``: HDF5 builds the file in
    memory, and only plain writes touch the disk (HDF5 does not survive a full disk cleanly)."""
    import io

    import h5py
    from anndata.io import write_elem

    adata.strings_to_categoricals()
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        write_elem(f, "/", adata)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(image.getbuffer())


def remove_store(out: Path) -> None:
    """Deletes the block store of ``out`` (after the output is complete)."""
    shutil.rmtree(Path(f"{out}{STORE_SUFFIX}"), ignore_errors=True)
