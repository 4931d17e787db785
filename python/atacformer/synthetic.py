"""Synthetic single-cell ATAC-seq data over the hg38 chromosomes, for demos, tests and training.

The generator has two seeded halves, so that a universe can be rebuilt without its cells:

- :func:`make_design` draws the fixed part from a :class:`DesignSpec`: a universe of peaks
  (sorted, non-overlapping, 0-based half-open, placed over hg38 chr1-22 and chrX in proportion
  to their length) and the accessibility profile of every cell type. Each type opens its own
  peaks, shares lineage peaks with its sister types, and opens the shared background peaks like
  every other type.
- :func:`sample_cells` draws cells from a design with a :class:`CellSpec`: a type per cell,
  a log-normal number of fragments, a per-cell fraction of fragments in peaks, fragments placed
  around the peaks they come from (nucleosome-free, mono- and di-nucleosome lengths), uniform
  off-peak noise, and occasional PCR duplicates (the count column).

The result writes a real 10x fragment file (:meth:`SyntheticCells.write_fragments`:
tab-separated chrom, start, end, barcode, count; position-sorted; BGZF) and a cells x peaks
AnnData (:meth:`SyntheticCells.to_anndata`) whose counts are computed from the fragments by
interval overlap. Everything is a deterministic function of the two seeds.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path

__all__ = [
    "CellSpec",
    "DesignSpec",
    "SyntheticCells",
    "SyntheticDesign",
    "load_chrom_sizes",
    "make_design",
    "sample_cells",
    "write_bgzf",
]

PathLike = str | os.PathLike[str]

MAIN_CHROMS = tuple(f"chr{i}" for i in range(1, 23)) + ("chrX",)
"""Chromosomes that receive peaks and reads: the autosomes and chrX (no chrY, no chrM)."""

_SLOT_BP = 4_000
"""Each peak sits alone in a slot of this many bp, so peaks never overlap or touch."""
_MAX_PEAK_BP = 2_000
_MAX_FRAGMENT_BP = 1_000
_BGZF_BLOCK = 65_280  # uncompressed bytes per BGZF block, as htslib writes them
_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def load_chrom_sizes(path: PathLike | None = None) -> dict[str, int]:
    """Chromosome name -> length in bp, in file order; the packaged hg38 sizes by default."""
    if path is None:
        text = resources.files("atacformer").joinpath("data/hg38.chrom.sizes").read_text()
    else:
        text = Path(path).read_text()
    sizes: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            raise ValueError(f"{path or 'hg38.chrom.sizes'}, line {number}: expected 'name size'")
        sizes[parts[0]] = int(parts[1])
    return sizes


# --------------------------------------------------------------------------------- the design


@dataclass(frozen=True)
class DesignSpec:
    """Parameters of a synthetic universe and its cell types (JSON-serialisable).

    ``n_types`` types are split into ``n_lineages`` lineages of sister types. Each type opens
    ``peaks_per_type`` peaks of its own and each lineage ``peaks_per_lineage``; the remaining
    peaks are background, open in every type. A type reaches its own and its lineage's peaks
    ``specific_fold`` times as often as a background peak of equal strength, and other types'
    peaks ``leak_fold`` times as often. Peak strengths are log-normal (``strength_sigma``).
    """

    n_peaks: int = 10_000
    n_types: int = 6
    n_lineages: int = 3
    peaks_per_type: int = 400
    peaks_per_lineage: int = 800
    specific_fold: float = 3.0
    leak_fold: float = 0.25
    strength_sigma: float = 0.7
    median_peak_bp: int = 500
    type_fraction_concentration: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        specific = self.n_types * self.peaks_per_type + self.n_lineages * self.peaks_per_lineage
        if not 1 <= self.n_lineages <= self.n_types:
            raise ValueError("n_lineages must be between 1 and n_types")
        if specific > self.n_peaks:
            raise ValueError(f"{specific} type and lineage peaks exceed n_peaks={self.n_peaks}")
        if not 50 <= self.median_peak_bp <= _MAX_PEAK_BP // 2:
            raise ValueError(f"median_peak_bp must be in [50, {_MAX_PEAK_BP // 2}]")


@dataclass(frozen=True)
class SyntheticDesign:
    """A universe of ``n_peaks`` sorted peaks and the fragment rates of each cell type.

    ``chrom_index``, ``starts`` and ``ends`` are ``[n_peaks]`` (0-based, half-open, bp) in
    genomic order, chromosomes in ``chrom_names`` order. ``rates`` is ``[n_types, n_peaks]``:
    row ``t`` is the probability that an in-peak fragment of a type-``t`` cell comes from each
    peak. ``program`` names each peak's program (``"type:NAME"``, ``"lineage:K"`` or
    ``"background"``).
    """

    spec: DesignSpec
    chrom_names: tuple[str, ...]
    chrom_sizes: np.ndarray
    chrom_index: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    program: np.ndarray
    rates: np.ndarray
    type_names: tuple[str, ...]
    type_fractions: np.ndarray

    @property
    def n_peaks(self) -> int:
        return len(self.starts)

    @property
    def chroms(self) -> np.ndarray:
        """Chromosome name of each peak, ``[n_peaks]``."""
        return np.asarray(self.chrom_names, dtype=object)[self.chrom_index]

    def write_universe(self, path: PathLike) -> Path:
        """Writes the peaks as BED (gzip when the name ends in ``.gz``), one per line."""
        text = "".join(
            f"{c}\t{s}\t{e}\n" for c, s, e in zip(self.chroms, self.starts, self.ends, strict=True)
        )
        path = Path(path)
        data = text.encode()
        path.write_bytes(zlib_gzip(data) if path.name.endswith(".gz") else data)
        return path


def make_design(
    spec: DesignSpec | None = None, chrom_sizes: dict[str, int] | None = None
) -> SyntheticDesign:
    """Draws the universe and the cell-type profiles of ``spec`` (its ``seed`` only)."""
    spec = spec or DesignSpec()
    sizes = chrom_sizes or load_chrom_sizes()
    names = tuple(c for c in MAIN_CHROMS if c in sizes) or tuple(sizes)
    lengths = np.array([sizes[c] for c in names], dtype=np.int64)
    rng = np.random.default_rng([spec.seed, 1])

    # One peak per slot: slots tile each chromosome, so peaks never cross a chromosome end.
    slots = lengths // _SLOT_BP
    if spec.n_peaks > slots.sum():
        raise ValueError(f"n_peaks={spec.n_peaks} does not fit on the chromosomes")
    chosen = np.sort(rng.choice(int(slots.sum()), size=spec.n_peaks, replace=False))
    first_slot = np.concatenate([[0], np.cumsum(slots)])
    chrom_index = np.searchsorted(first_slot, chosen, side="right") - 1
    slot_start = (chosen - first_slot[chrom_index]) * _SLOT_BP
    width = np.exp(rng.normal(np.log(spec.median_peak_bp), 0.25, spec.n_peaks))
    width = np.clip(np.round(width / 10) * 10, 100, _MAX_PEAK_BP).astype(np.int64)
    # Centred in the slot with jitter, leaving room for fragments that spill over the peak.
    room = _SLOT_BP - width
    starts = slot_start + room // 2 + rng.integers(-(room // 4), room // 4 + 1)
    ends = starts + width

    n_types, n_lin = spec.n_types, spec.n_lineages
    type_names = tuple(
        f"type_{chr(ord('A') + t)}" if t < 26 else f"type_{t}" for t in range(n_types)
    )
    lineage_of = np.arange(n_types) * n_lin // n_types  # sister types are neighbours
    order = rng.permutation(spec.n_peaks)
    owner_type = np.full(spec.n_peaks, -1)
    owner_lineage = np.full(spec.n_peaks, -1)
    n_typed = n_types * spec.peaks_per_type
    owner_type[order[:n_typed]] = np.repeat(np.arange(n_types), spec.peaks_per_type)
    lineage_peaks = order[n_typed : n_typed + n_lin * spec.peaks_per_lineage]
    owner_lineage[lineage_peaks] = np.repeat(np.arange(n_lin), spec.peaks_per_lineage)

    strength = np.exp(rng.normal(0.0, spec.strength_sigma, spec.n_peaks))
    fold = np.ones((n_types, spec.n_peaks))
    for t in range(n_types):
        typed, lineage = owner_type >= 0, owner_lineage >= 0
        fold[t, typed] = np.where(owner_type[typed] == t, spec.specific_fold, spec.leak_fold)
        fold[t, lineage] = np.where(
            owner_lineage[lineage] == lineage_of[t], spec.specific_fold, spec.leak_fold
        )
    rates = strength * fold
    rates /= rates.sum(axis=1, keepdims=True)

    program = np.full(spec.n_peaks, "background", dtype=object)
    for t in range(n_types):
        program[owner_type == t] = f"type:{type_names[t]}"
    for k in range(n_lin):
        program[owner_lineage == k] = f"lineage:{k}"
    fractions = rng.dirichlet(np.full(n_types, spec.type_fraction_concentration))
    return SyntheticDesign(
        spec=spec,
        chrom_names=names,
        chrom_sizes=lengths,
        chrom_index=chrom_index,
        starts=starts,
        ends=ends,
        program=program,
        rates=rates,
        type_names=type_names,
        type_fractions=fractions,
    )


# ---------------------------------------------------------------------------------- the cells


@dataclass(frozen=True)
class CellSpec:
    """Parameters of a sample of cells (JSON-serialisable).

    Fragments per cell are log-normal with median ``median_fragments`` and log-sd
    ``fragments_sigma`` (at least ``min_fragments``). The fraction of a cell's fragments in
    peaks is Beta-distributed with mean ``frip`` and concentration ``frip_concentration``;
    the rest land uniformly on the genome. ``duplicate_rate`` is the Poisson mean of extra
    PCR copies per fragment (the count column is one plus that).

    The default depth is shallow next to real 10x data (5,000-20,000 fragments per cell) in
    proportion to the small default universe: a cell opens about 4 % of the peaks, as a real
    cell does of a 100,000-peak universe.
    """

    n_cells: int = 600
    median_fragments: int = 1_000
    fragments_sigma: float = 0.5
    min_fragments: int = 200
    frip: float = 0.5
    frip_concentration: float = 20.0
    duplicate_rate: float = 0.15
    seed: int = 1


@dataclass
class SyntheticCells:
    """Fragments of a sample of cells, sorted by position, with each cell's true type.

    ``fragments`` is a structured array with fields ``chrom`` (index into
    ``design.chrom_names``), ``start``, ``end`` (0-based, half-open, bp), ``cell`` (index into
    ``barcodes``) and ``count``, sorted by (chrom, start, end, cell).
    """

    design: SyntheticDesign
    spec: CellSpec
    barcodes: list[str]
    cell_type: np.ndarray
    fragments: np.ndarray
    frip: np.ndarray = field(repr=False)

    @property
    def n_cells(self) -> int:
        return len(self.barcodes)

    @property
    def type_labels(self) -> np.ndarray:
        """Type name of each cell, ``[n_cells]``."""
        return np.asarray(self.design.type_names, dtype=object)[self.cell_type]

    def fragments_per_cell(self) -> np.ndarray:
        """Number of distinct fragments (lines) of each cell, ``[n_cells]``."""
        return np.bincount(self.fragments["cell"], minlength=self.n_cells)

    def fragments_text(self) -> bytes:
        """The fragment file's content: a ``#`` header, then one tab-separated line each."""
        d, f = self.design, self.fragments
        header = (
            "# atacformer synthetic scATAC-seq fragments (10x format)\n"
            f"# design={_json(dataclasses.asdict(d.spec))}\n"
            f"# cells={_json(dataclasses.asdict(self.spec))}\n"
        )
        chrom = np.asarray(d.chrom_names, dtype=object)[f["chrom"]]
        barcode = np.asarray(self.barcodes, dtype=object)[f["cell"]]
        buf = io.StringIO()
        buf.write(header)
        buf.writelines(
            f"{c}\t{s}\t{e}\t{b}\t{n}\n"
            for c, s, e, b, n in zip(
                chrom,
                f["start"].tolist(),
                f["end"].tolist(),
                barcode,
                f["count"].tolist(),
                strict=True,
            )
        )
        return buf.getvalue().encode()

    def write_fragments(self, path: PathLike, bgzf: bool = True, level: int = 6) -> Path:
        """Writes the 10x fragment file: BGZF at zlib ``level`` (``bgzf=True``), else plain."""
        path = Path(path)
        data = self.fragments_text()
        if bgzf:
            write_bgzf(path, data, level)
        else:
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        return path

    def count_matrix(self) -> Any:
        """Cells x peaks CSR matrix (int32): fragments overlapping each peak.

        A fragment counts once for every peak it overlaps, whatever its count column, by the
        same rule as the tokenizer: ``start < peak_end`` and ``peak_start < end``.
        """
        from scipy import sparse

        d, f = self.design, self.fragments
        offset = np.concatenate([[0], np.cumsum(d.chrom_sizes)])
        peak_lo = offset[d.chrom_index] + d.starts  # global coordinates, sorted
        peak_hi = offset[d.chrom_index] + d.ends
        lo = offset[f["chrom"]] + f["start"]
        hi = offset[f["chrom"]] + f["end"]
        first = np.searchsorted(peak_hi, lo, side="right")  # first peak ending after start
        stop = np.searchsorted(peak_lo, hi, side="left")  # peaks starting before end
        hits = np.maximum(stop - first, 0)
        rows = np.repeat(f["cell"], hits)
        cols = np.repeat(first - np.concatenate([[0], np.cumsum(hits)[:-1]]), hits) + np.arange(
            hits.sum()
        )
        data = np.ones(len(rows), dtype=np.int32)
        shape = (self.n_cells, d.n_peaks)
        matrix = sparse.csr_matrix((data, (rows, cols)), shape=shape, dtype=np.int32)
        matrix.sum_duplicates()
        return matrix

    def to_anndata(self) -> Any:
        """An AnnData of fragment counts: cells x peaks, with the truth in ``obs``.

        ``obs`` (indexed by barcode) holds ``cell_type``, ``n_fragments`` and ``frip``;
        ``var`` (indexed ``chr:start-end``) holds ``chr``, ``start``, ``end`` and ``program``.
        """
        import anndata as ad
        import pandas as pd

        d = self.design
        obs = pd.DataFrame(
            {
                "cell_type": pd.Categorical(self.type_labels, categories=list(d.type_names)),
                "n_fragments": self.fragments_per_cell(),
                "frip": self.frip,
            },
            index=pd.Index(self.barcodes, name="barcode"),
        )
        chroms = d.chroms
        var = pd.DataFrame(
            {
                "chr": pd.Categorical(chroms, categories=list(d.chrom_names)),
                "start": d.starts,
                "end": d.ends,
                "program": d.program.astype(str),
            },
            index=pd.Index(
                [f"{c}:{s}-{e}" for c, s, e in zip(chroms, d.starts, d.ends, strict=True)],
                name="peak",
            ),
        )
        uns = {
            "synthetic": {
                "design": _json(dataclasses.asdict(d.spec)),
                "cells": _json(dataclasses.asdict(self.spec)),
            }
        }
        return ad.AnnData(X=self.count_matrix(), obs=obs, var=var, uns=uns)

    def write_h5ad(self, path: PathLike) -> Path:
        """Writes :meth:`to_anndata` to ``path``."""
        path = Path(path)
        self.to_anndata().write_h5ad(path)
        return path


def sample_cells(design: SyntheticDesign, spec: CellSpec | None = None) -> SyntheticCells:
    """Draws ``spec.n_cells`` cells from ``design`` (uses ``spec.seed`` only)."""
    spec = spec or CellSpec()
    rng = np.random.default_rng([spec.seed, 2])
    n = spec.n_cells
    cell_type = rng.choice(len(design.type_names), size=n, p=design.type_fractions)
    depth = np.exp(rng.normal(np.log(spec.median_fragments), spec.fragments_sigma, n))
    depth = np.maximum(np.round(depth), spec.min_fragments).astype(np.int64)
    a = spec.frip * spec.frip_concentration
    frip = rng.beta(a, spec.frip_concentration - a, n)
    in_peak = rng.binomial(depth, frip)

    # In-peak fragments: peaks drawn from the cell type's rates, all cells of a type at once.
    cells_in, peaks = [], []
    for t in range(len(design.type_names)):
        members = np.flatnonzero(cell_type == t)
        total = int(in_peak[members].sum())
        cells_in.append(np.repeat(members, in_peak[members]))
        peaks.append(rng.choice(design.n_peaks, size=total, p=design.rates[t]))
    cell_in = np.concatenate(cells_in)
    peak = np.concatenate(peaks)
    length = _fragment_lengths(rng, len(peak))
    width = design.ends[peak] - design.starts[peak]
    centre = (design.starts[peak] + design.ends[peak]) // 2
    centre = centre + np.round(rng.normal(0, width / 5)).astype(np.int64)
    chrom_in = design.chrom_index[peak]
    start_in = centre - length // 2

    # Off-peak noise: uniform over the chromosomes, in proportion to their length.
    cell_off = np.repeat(np.arange(n), depth - in_peak)
    genome = np.concatenate([[0], np.cumsum(design.chrom_sizes)])
    where = rng.integers(0, genome[-1], size=len(cell_off))
    chrom_off = np.searchsorted(genome, where, side="right") - 1
    start_off = where - genome[chrom_off]
    length_off = _fragment_lengths(rng, len(cell_off))

    chrom = np.concatenate([chrom_in, chrom_off])
    start = np.concatenate([start_in, start_off])
    end = start + np.concatenate([length, length_off])
    size = design.chrom_sizes[chrom]
    start = np.clip(start, 0, size - 1)
    end = np.clip(end, start + 1, size)
    cell = np.concatenate([cell_in, cell_off])
    count = 1 + rng.poisson(spec.duplicate_rate, len(cell))
    fragments = _merge_duplicates(chrom, start, end, cell, count)
    barcodes = _barcodes(rng, n)
    return SyntheticCells(design, spec, barcodes, cell_type, fragments, frip)


def _fragment_lengths(rng: np.random.Generator, n: int) -> np.ndarray:
    """Fragment lengths in bp: nucleosome-free, mono- and di-nucleosome modes."""
    mode = rng.choice(3, size=n, p=[0.55, 0.33, 0.12])
    lengths = np.where(
        mode == 0,
        np.exp(rng.normal(np.log(85), 0.35, n)),
        np.where(mode == 1, rng.normal(200, 25, n), rng.normal(390, 35, n)),
    )
    return np.clip(np.round(lengths), 20, _MAX_FRAGMENT_BP).astype(np.int64)


def _merge_duplicates(
    chrom: np.ndarray, start: np.ndarray, end: np.ndarray, cell: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """Sorts by (chrom, start, end, cell) and merges identical fragments, adding counts."""
    order = np.lexsort((cell, end, start, chrom))
    chrom, start, end, cell, count = (x[order] for x in (chrom, start, end, cell, count))
    same = (
        (chrom[1:] == chrom[:-1])
        & (start[1:] == start[:-1])
        & (end[1:] == end[:-1])
        & (cell[1:] == cell[:-1])
    )
    first = np.concatenate([[True], ~same])
    group = np.cumsum(first) - 1
    out = np.zeros(
        int(first.sum()),
        dtype=[
            ("chrom", np.int32),
            ("start", np.int64),
            ("end", np.int64),
            ("cell", np.int64),
            ("count", np.int64),
        ],
    )
    out["chrom"], out["start"], out["end"], out["cell"] = (
        chrom[first],
        start[first],
        end[first],
        cell[first],
    )
    out["count"] = np.bincount(group, weights=count).astype(np.int64)
    return out


def _barcodes(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct 16-nt barcodes with the 10x ``-1`` suffix."""
    codes = np.unique(rng.integers(0, 4**16, size=n, dtype=np.int64))
    while len(codes) < n:  # collisions are astronomically rare; top up deterministically
        codes = np.unique(np.concatenate([codes, rng.integers(0, 4**16, size=n - len(codes))]))
    codes = rng.permutation(codes)
    digits = (codes[:, None] >> (2 * np.arange(15, -1, -1))) & 3
    letters = np.frombuffer(b"ACGT", dtype="S1")[digits]
    return [row.tobytes().decode() + "-1" for row in letters]


# ------------------------------------------------------------------------------------- files


def write_bgzf(path: PathLike, data: bytes, level: int = 6) -> None:
    """Writes ``data`` as BGZF: gzip members of at most 64 KiB with the ``BC`` extra field,
    then the standard empty end-of-file block. Any gzip reader reads it as one stream.
    Written atomically (see :func:`atacformer._atomic.atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        for at in range(0, len(data), _BGZF_BLOCK):
            chunk = data[at : at + _BGZF_BLOCK]
            comp = zlib.compressobj(level, zlib.DEFLATED, -15)
            deflated = comp.compress(chunk) + comp.flush()
            # header (18 bytes: magic, FEXTRA, XLEN 6, 'BC' subfield with BSIZE - 1)
            bsize = 18 + len(deflated) + 8
            out.write(struct.pack("<4BI2BH2BHH", 31, 139, 8, 4, 0, 0, 255, 6, 66, 67, 2, bsize - 1))
            out.write(deflated)
            out.write(struct.pack("<II", zlib.crc32(chunk), len(chunk)))
        out.write(_BGZF_EOF)


def zlib_gzip(data: bytes, level: int = 6) -> bytes:
    """Plain gzip bytes (mtime 0, so the output depends on ``data`` alone)."""
    import gzip

    return gzip.compress(data, compresslevel=level, mtime=0)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, separators=(",", ":"))
