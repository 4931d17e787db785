"""`Coverage`: how well a tokenization's input fits the universe, and the warning when not.

Every tokenization counts, at the cost of a few additions per interval, the input
intervals per input chromosome, those overlapping at least one universe region, and those
starting more than 1 Mb past the universe's last region on their chromosome (``n_past_end``;
the core's ``PAST_END_MARGIN``: a comprehensive universe's last peak sits within a few
hundred kb of a chromosome's mappable end, while another build's longer chromosomes run Mb
past it, e.g. mm10's chrX 15 Mb past hg38's). Chromosome names are matched by the core's
one resolver: exactly, or with ``chrom_names="auto"`` (the default) under an alias (``chr``
added or removed; ``M``/``MT``/``chrMT`` <-> ``chrM``), and the aliases used are recorded.

When the coverage is low
------------------------
Random intervals of mean length ``L`` land on a universe of ``n`` regions covering ``B`` bp
of a genome it spans over ``S`` bp (the sum of its chromosomes' last region ends) with
probability about ``(B + n * L) / S``: :attr:`Coverage.expected_random`. For a ~890k-peak
universe of 500 bp peaks and 10x fragments (``L`` about 250 bp) that is about 0.2, and data
of another genome build behaves like random intervals, since liftover moves almost every
region by more than a peak's width. Data of the same build is enriched in peaks: against
such a universe 50-70 % of fragments overlap it (3x random), and against a small universe
of strong peaks the enrichment is larger still. So :attr:`Coverage.low` is true when the
fraction is below ``LOW_ENRICHMENT`` (1.5) times the random expectation, halfway (on a log
scale) between another build (about 1x) and same-build data (3x or more), or when no
interval overlaps at all; an input of fewer than ``MIN_INTERVALS`` (1,000) intervals is
judged by the second rule only. When random intervals would already cover half the universe's
span (a dense toy universe) the enrichment says nothing, and only "no overlap at all" counts.

Intervals past the universe's chromosome ends are a sign of another build of their own:
same-build data almost never starts more than 1 Mb past a universe's last peak (synthetic
demo data: about 0.01 %), while another build's shifted coordinates put a share of every
chromosome's last Mb there. Where a build agrees with the universe's in places, the
enrichment test can pass regardless; so the coverage is low too when at least
``PAST_END_SHARE`` (1 %) of at least ``MIN_INTERVALS`` intervals start past the ends and the
fraction is below ``SAME_BUILD_FRACTION`` (0.5, the bottom of the 50-70 % that same-build
fragments reach against a comprehensive universe).

A universe of fewer than ``SMALL_UNIVERSE`` (5,000) regions, such as the 1,000 peaks of a
small example, may end far from its chromosomes' ends, so same-build data starts past them
too: the past-end rule above is not applied to it. And when random intervals would give
fewer than ``MIN_RANDOM_HITS`` (20) overlaps (a small universe, or few intervals), a low
overlap cannot be told from random: same-build data can miss such a universe as readily as
another build's. The warning then names another genome build only on evidence (at least
``PAST_END_SHARE`` of the intervals past the ends, or chromosome names); otherwise it says
only the fraction and that few intervals overlap the universe.

Tokenizing calls then warn with :class:`CoverageWarning`, naming the likely cause and the
fix: chromosome names the universe lacks even after aliasing (when most intervals are on
such chromosomes), else another genome build (with the intervals found past the universe's
chromosome ends, when there are any). They warn too when no cell has a token.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LOW_ENRICHMENT",
    "MIN_INTERVALS",
    "MIN_RANDOM_HITS",
    "PAST_END_SHARE",
    "SAME_BUILD_FRACTION",
    "SMALL_UNIVERSE",
    "Coverage",
    "CoverageWarning",
    "expected_random",
    "genome_build",
    "is_low",
]

LOW_ENRICHMENT = 1.5
"""Coverage below this many times the random expectation is low (see the module docs)."""

MIN_INTERVALS = 1000
"""Fewer intervals than this are judged only by "no overlap at all": the fraction of a few
intervals says little (at 1,000 its standard error is at most 1.6 points), and a single
small call (``tokenizer(ten_regions)``) should not pay for a diagnosis."""

PAST_END_SHARE = 0.01
"""Share of intervals past the universe's chromosome ends that signals another build."""

SAME_BUILD_FRACTION = 0.5
"""Fraction below which many past-end intervals make a coverage low (see the module docs)."""

SMALL_UNIVERSE = 5000
"""Universes of fewer regions than this give no evidence of a build (see the module docs)."""

MIN_RANDOM_HITS = 20
"""Random overlaps below which a low coverage names no build (see the module docs)."""

_UNINFORMATIVE = 0.5
"""Random expectation above which the enrichment test is not made (a dense universe)."""

_NAMES_SHARE = 0.5
"""Share of intervals on chromosomes the universe lacks above which names are the cause."""

_BUILDS = re.compile(r"(hg38|hg19|hg18|mm39|mm10|mm9|grch38|grch37|chm13|t2t)", re.IGNORECASE)


class CoverageWarning(UserWarning):
    """A tokenization's input barely overlaps the universe, or no cell has a token; the
    message says the fraction, the likely cause and the fix."""


def genome_build(name: str | None) -> str | None:
    """The genome build a tokenizer's name or path names (``hg38``, ``mm10``, ...), if any."""
    if not name:
        return None
    m = _BUILDS.search(name)
    return m.group(1) if m else None


@dataclass(frozen=True)
class Coverage:
    """How well one tokenization's input covered the universe (see the module docs).

    ``per_chrom`` maps each input chromosome (first-seen order) to ``(intervals,
    overlapping)``; ``missing_chroms`` lists those the universe lacks even after aliasing;
    ``aliases`` maps input names to the universe names used for them; ``past_end`` maps
    chromosomes to their intervals starting past the universe's end on them.
    """

    n_intervals: int
    n_overlapping: int
    per_chrom: dict[str, tuple[int, int]]
    missing_chroms: list[str]
    aliases: dict[str, str]
    n_past_end: int
    past_end: dict[str, int] = field(default_factory=dict)
    input_bp: int = 0
    universe_span: int = 0
    universe_bp: int = 0
    universe_regions: int = 0

    @classmethod
    def _from_core(cls, raw: Mapping[str, Any]) -> Coverage:
        """From the dict the extension returns (``_core.Ragged.coverage``)."""
        per_chrom: dict[str, tuple[int, int]] = {}
        missing: list[str] = []
        aliases: dict[str, str] = {}
        past_end: dict[str, int] = {}
        for name, universe_name, n, hit, past in raw["chroms"]:
            per_chrom[name] = (int(n), int(hit))
            if universe_name is None:
                missing.append(name)
            elif universe_name != name:
                aliases[name] = universe_name
            if past:
                past_end[name] = int(past)
        return cls(
            n_intervals=sum(n for n, _ in per_chrom.values()),
            n_overlapping=sum(h for _, h in per_chrom.values()),
            per_chrom=per_chrom,
            missing_chroms=missing,
            aliases=aliases,
            n_past_end=sum(past_end.values()),
            past_end=past_end,
            input_bp=int(raw["input_bp"]),
            universe_span=int(raw["universe_span"]),
            universe_bp=int(raw["universe_bp"]),
            universe_regions=int(raw["universe_regions"]),
        )

    @classmethod
    def merge(cls, parts: Sequence[Coverage]) -> Coverage:
        """The coverage of several inputs tokenized against one universe, summed."""
        if not parts:
            raise ValueError("merge needs at least one Coverage")
        per_chrom: dict[str, tuple[int, int]] = {}
        aliases: dict[str, str] = {}
        past_end: dict[str, int] = {}
        missing: dict[str, None] = {}
        for p in parts:
            for name, (n, hit) in p.per_chrom.items():
                a, b = per_chrom.get(name, (0, 0))
                per_chrom[name] = (a + n, b + hit)
            aliases.update(p.aliases)
            missing.update(dict.fromkeys(p.missing_chroms))
            for name, n in p.past_end.items():
                past_end[name] = past_end.get(name, 0) + n
        first = parts[0]
        return cls(
            n_intervals=sum(p.n_intervals for p in parts),
            n_overlapping=sum(p.n_overlapping for p in parts),
            per_chrom=per_chrom,
            missing_chroms=list(missing),
            aliases=aliases,
            n_past_end=sum(p.n_past_end for p in parts),
            past_end=past_end,
            input_bp=sum(p.input_bp for p in parts),
            universe_span=first.universe_span,
            universe_bp=first.universe_bp,
            universe_regions=first.universe_regions,
        )

    @property
    def fraction(self) -> float:
        """Fraction of input intervals overlapping the universe (0 for no input)."""
        return self.n_overlapping / self.n_intervals if self.n_intervals else 0.0

    @property
    def expected_random(self) -> float:
        """About the fraction that random intervals of the input's mean length would
        overlap: ``(universe bp + regions * mean length) / universe span``, at most 1."""
        return expected_random(
            (self.universe_span, self.universe_bp, self.universe_regions),
            self.n_intervals,
            self.input_bp,
        )

    @property
    def low(self) -> bool:
        """True when the input looks unrelated to the universe (see the module docs)."""
        if _low(self.n_intervals, self.n_overlapping, self.expected_random):
            return True
        return (
            self.universe_regions >= SMALL_UNIVERSE
            and self.n_intervals >= MIN_INTERVALS
            and self.n_past_end >= PAST_END_SHARE * self.n_intervals
            and self.fraction < SAME_BUILD_FRACTION
        )

    @property
    def missing_share(self) -> float:
        """Fraction of intervals on chromosomes the universe lacks."""
        n = sum(self.per_chrom[c][0] for c in self.missing_chroms)
        return n / self.n_intervals if self.n_intervals else 0.0

    def summary(self) -> str:
        """One line: the fraction, the aliases used and the missing chromosomes."""
        line = (
            f"{self.fraction:.1%} of {self.n_intervals:,} intervals overlap the universe "
            f"(random intervals: about {self.expected_random:.1%})"
        )
        if self.aliases:
            shown = ", ".join(f"{a}->{b}" for a, b in list(self.aliases.items())[:4])
            more = ", ..." if len(self.aliases) > 4 else ""
            line += f"; renamed {len(self.aliases)} chromosome(s) ({shown}{more})"
        if self.missing_chroms:
            line += (
                f"; {len(self.missing_chroms)} chromosome(s) not in the universe "
                f"({_some(self.missing_chroms)}: {self.missing_share:.1%} of intervals)"
            )
        if self.n_past_end:
            line += f"; {self.n_past_end:,} past the universe's chromosome ends"
        return line

    def diagnosis(self, build: str | None = None, chrom_names: str = "auto") -> str:
        """The likely cause of a low coverage and its fix, as one sentence."""
        target = build or "the universe's genome build"
        # Names are the cause when most intervals are on chromosomes the universe lacks
        # while those on the others fit it; when those are off too, the coordinates are.
        known = [v for c, v in self.per_chrom.items() if c not in set(self.missing_chroms)]
        n_known = sum(n for n, _ in known)
        known_low = _low(n_known, sum(h for _, h in known), self.expected_random)
        if self.missing_share >= _NAMES_SHARE and not (n_known and known_low):
            fix = (
                "rename them to the universe's names"
                if chrom_names == "auto"
                else "pass chrom_names='auto' to match chr1/1 and chrM/MT, or rename them"
            )
            return (
                f"the input names chromosomes the universe lacks"
                f"{' even after aliasing' if chrom_names == 'auto' else ''} "
                f"({_some(self.missing_chroms)}: {self.missing_share:.1%} of intervals): {fix}"
            )
        past_share = self.n_past_end / self.n_intervals if self.n_intervals else 0.0
        random_hits = self.expected_random * self.n_intervals
        if random_hits < MIN_RANDOM_HITS and past_share < PAST_END_SHARE:
            return (
                f"few intervals overlap the universe; random intervals would give "
                f"{random_hits:.0f} overlaps here, too few to tell why"
            )
        evidence = (
            f"{self.n_past_end:,} intervals start past the universe's chromosome ends "
            f"({_some(list(self.past_end))})"
            if self.n_past_end
            else f"coverage is near what random intervals give ({self.expected_random:.1%})"
        )
        return (
            f"{evidence}: the data looks like another genome build (for example hg19 or "
            f"mm10): lift the data over to {target}"
        )


def expected_random(extent: tuple[int, int, int], n: int, input_bp: int) -> float:
    """The fraction of ``n`` random intervals of total length ``input_bp`` expected to
    overlap a universe of ``extent`` = (span, bp, regions): see the module docs."""
    span, bp, regions = extent
    if not n or not span:
        return 0.0
    return min(1.0, (bp + regions * input_bp / n) / span)


def is_low(extent: tuple[int, int, int], n: int, overlapping: int, input_bp: int) -> bool:
    """:attr:`Coverage.low` from the bare counts (for one cell, without a Coverage)."""
    return _low(n, overlapping, expected_random(extent, n, input_bp))


def _low(n: int, overlapping: int, expected: float) -> bool:
    """Whether ``overlapping`` of ``n`` intervals is a low coverage (see the module docs)."""
    if not n:
        return False
    if overlapping == 0:
        return True
    if n < MIN_INTERVALS:
        return False
    return expected <= _UNINFORMATIVE and overlapping / n < LOW_ENRICHMENT * expected


def _some(names: Iterable[str], n: int = 5) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def warn_if_poor(
    coverage: Coverage | None,
    n_tokens: Any,
    source: str,
    build: str | None,
    chrom_names: str = "auto",
    stacklevel: int = 3,
) -> None:
    """Warns with :class:`CoverageWarning` when the coverage is low or no cell has a
    token (``n_tokens``: the cells' universe ids)."""
    no_tokens = not len(n_tokens) or not any(int(n) > 0 for n in n_tokens)
    low = coverage is not None and coverage.low
    if not (no_tokens or low):
        return
    parts = []
    if no_tokens:
        parts.append("no cell has a token" if len(n_tokens) else "no cells")
    if coverage is not None and coverage.n_intervals:
        parts.append(
            f"only {coverage.fraction:.1%} of {coverage.n_intervals:,} intervals overlap "
            "the universe"
        )
    elif coverage is not None:
        parts.append("no intervals were read")
    message = f"{source}: {'; '.join(parts)}"
    if low and coverage is not None:
        message += f". Likely cause: {coverage.diagnosis(build, chrom_names)}"
    warnings.warn(message, CoverageWarning, stacklevel=stacklevel)
