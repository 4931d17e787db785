//! The overlap index over a universe.
//!
//! Per chromosome, regions are split into groups of similar width (a group's widest region
//! is at most 16 times, or 4 kb more than, its narrowest), and each group is one flat array
//! sorted by (start, end). A region `[s, e)`
//! of a group whose widest region is `w` bp can overlap `[qs, qe)` only if
//! `qs - w < s < qe`, so the first candidate is found and a forward scan stops at the first
//! start `>= qe`. A bin table (one entry per `2^shift` bp, about one bin per region) turns
//! the search for the first candidate into one lookup and a short scan. Grouping by width
//! keeps the scan short when a few long regions sit among short peaks, and the results stay
//! exact for nested and overlapping universes.

use crate::prefetch::prefetch;

/// One universe region in an index group: 12 bytes, read together during a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    start: u32,
    end: u32,
    id: u32,
}

/// Regions of similar width on one chromosome, sorted by (start, end).
#[derive(Debug, Clone, Default)]
struct Group {
    min_width: u32,
    max_width: u32,
    /// `bins[b]` is the index of the first entry with `start >= b << shift`.
    shift: u32,
    bins: Vec<u32>,
    entries: Vec<Entry>,
}

impl Group {
    fn finish(&mut self) {
        self.entries.shrink_to_fit();
        let n = self.entries.len().max(1) as u64;
        let last = self.entries.last().map_or(0, |e| u64::from(e.start));
        // About one bin per region: the smallest shift with (last >> shift) < n.
        self.shift = (0..32).find(|&s| (last >> s) < n).unwrap_or(32);
        let n_bins = (last >> self.shift) as usize + 2;
        let mut bins = Vec::with_capacity(n_bins);
        let mut i = 0usize;
        for b in 0..n_bins as u64 {
            let edge = b << self.shift;
            while i < self.entries.len() && u64::from(self.entries[i].start) < edge {
                i += 1;
            }
            bins.push(i as u32);
        }
        self.bins = bins;
    }

    /// The lowest start a region overlapping a query that starts at `qs` can have.
    #[inline]
    fn lowest_start(&self, qs: u32) -> u64 {
        // start + w > qs  <=>  start >= qs + 1 - w
        (u64::from(qs) + 1).saturating_sub(u64::from(self.max_width))
    }

    /// The bin holding [`Group::lowest_start`] of `qs`.
    #[inline]
    fn bin_of(&self, qs: u32) -> usize {
        (self.lowest_start(qs) >> self.shift) as usize
    }

    /// Index of the first entry with `start + max_width > qs`.
    #[inline]
    fn first_candidate(&self, qs: u32) -> usize {
        let t = self.lowest_start(qs);
        let b = (t >> self.shift) as usize;
        if b + 1 >= self.bins.len() {
            return self.entries.len();
        }
        let (lo, hi) = (self.bins[b] as usize, self.bins[b + 1] as usize);
        lo + self.entries[lo..hi].partition_point(|e| u64::from(e.start) < t)
    }

    /// Calls `emit` for entries overlapping `[qs, qe)`, from the first candidate on.
    #[inline]
    fn scan(&self, qs: u32, qe: u32, mut emit: impl FnMut(&Entry)) {
        for e in &self.entries[self.first_candidate(qs)..] {
            if e.start >= qe {
                break;
            }
            if e.end > qs {
                emit(e);
            }
        }
    }
}

/// Sorted, width-grouped intervals of one chromosome.
#[derive(Debug, Clone, Default)]
struct ChromIndex {
    groups: Vec<Group>,
}

/// Overlap index: chromosome number -> grouped sorted intervals.
#[derive(Debug, Clone, Default)]
pub struct OverlapIndex {
    chroms: Vec<ChromIndex>,
}

/// Distance, in queries, between the stages of a [`QueryStream`].
const LAG: usize = 8;
const RING: usize = 2 * LAG;

/// A query waiting in a [`QueryStream`].
#[derive(Debug, Clone, Copy, Default)]
struct Pending<'a> {
    /// The chromosome's only width group, when it has exactly one.
    group: Option<&'a Group>,
    chrom: u32,
    start: u32,
    end: u32,
}

/// Answers queries pushed one by one, in order, `2 * LAG` queries behind.
///
/// A lookup in a large universe is two dependent cache misses (the bin, then the first
/// entry). The stream prefetches a query's bin when it is pushed, its first entry `LAG`
/// queries later, and scans it `LAG` queries after that, so the misses of many queries are
/// in flight together and overlap with whatever work the caller does between pushes
/// (parsing the next line, say).
pub struct QueryStream<'a, F: FnMut(usize, u32)> {
    index: &'a OverlapIndex,
    scratch: &'a mut Scratch,
    emit: F,
    ring: [Pending<'a>; RING],
    pushed: usize,
    answered: usize,
}

impl<'a, F: FnMut(usize, u32)> QueryStream<'a, F> {
    /// Queues the query `[start, end)` on chromosome `chrom` (`u32::MAX` if unknown).
    #[inline]
    pub fn push(&mut self, chrom: u32, start: u32, end: u32) {
        if self.pushed - self.answered == RING {
            self.answer_next();
        }
        let group = match self
            .index
            .chroms
            .get(chrom as usize)
            .map(|c| c.groups.as_slice())
        {
            Some([g]) => {
                prefetch(g.bins.as_ptr().wrapping_add(g.bin_of(start)));
                Some(g)
            }
            _ => None,
        };
        self.ring[self.pushed % RING] = Pending {
            group,
            chrom,
            start,
            end,
        };
        self.pushed += 1;
        if self.pushed > LAG {
            let p = &self.ring[(self.pushed - 1 - LAG) % RING];
            if let Some(g) = p.group {
                if let Some(&lo) = g.bins.get(g.bin_of(p.start)) {
                    prefetch(g.entries.as_ptr().wrapping_add(lo as usize));
                }
            }
        }
    }

    /// Scans the oldest waiting query and emits its overlaps.
    #[inline]
    fn answer_next(&mut self) {
        let q = self.answered;
        let p = self.ring[q % RING];
        let emit = &mut self.emit;
        match p.group {
            Some(g) => g.scan(p.start, p.end, |e| emit(q, e.id)),
            None => self
                .index
                .query(p.chrom, p.start, p.end, self.scratch, |id| emit(q, id)),
        }
        self.answered += 1;
    }

    /// Answers every query still waiting; returns the number of queries pushed.
    pub fn finish(mut self) -> usize {
        while self.answered < self.pushed {
            self.answer_next();
        }
        self.pushed
    }
}

/// Reusable space for queries that touch several width groups.
#[derive(Debug, Default)]
pub struct Scratch {
    hits: Vec<Entry>,
}

/// Widest region, in bp, that shares a group whose narrowest region is `w` bp: 16 times as
/// wide, and never less than 4 kb wider, so one scan wastes at most a few entries.
fn group_limit(w: u32) -> u32 {
    w.saturating_mul(16).max(w.saturating_add(4096))
}

/// Splits one chromosome's regions into groups of similar width, narrowest first.
fn split_by_width(entries: Vec<Entry>) -> Vec<Group> {
    let mut widths: Vec<u32> = entries.iter().map(|e| e.end - e.start).collect();
    widths.sort_unstable();
    let mut mins: Vec<u32> = Vec::new();
    for w in widths {
        if mins.last().is_none_or(|&m| w > group_limit(m)) {
            mins.push(w);
        }
    }
    let mut groups: Vec<Group> = mins
        .iter()
        .map(|&m| Group {
            min_width: m,
            ..Group::default()
        })
        .collect();
    for e in entries {
        let w = e.end - e.start;
        let g = &mut groups[mins.partition_point(|&m| m <= w) - 1];
        g.max_width = g.max_width.max(w);
        g.entries.push(e);
    }
    groups
}

/// Two regions with the same chromosome, start and end (ids in file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate {
    pub first: u32,
    pub second: u32,
}

impl OverlapIndex {
    /// Builds the index; `chroms[i]`, `starts[i]`, `ends[i]` describe region id `i`.
    /// Fails on the duplicated region whose later copy comes first in file order.
    pub fn build(
        n_chroms: usize,
        chroms: &[u32],
        starts: &[u32],
        ends: &[u32],
    ) -> Result<Self, Duplicate> {
        let mut per_chrom: Vec<Vec<Entry>> = vec![Vec::new(); n_chroms];
        for (id, &c) in chroms.iter().enumerate() {
            per_chrom[c as usize].push(Entry {
                start: starts[id],
                end: ends[id],
                id: id as u32,
            });
        }
        let groups = per_chrom.into_iter().map(split_by_width);
        let mut duplicate: Option<Duplicate> = None;
        let mut index = OverlapIndex {
            chroms: Vec::with_capacity(n_chroms),
        };
        for chrom_groups in groups {
            let mut kept = Vec::new();
            for mut g in chrom_groups {
                g.entries.sort_unstable();
                for pair in g.entries.windows(2) {
                    if (pair[0].start, pair[0].end) == (pair[1].start, pair[1].end) {
                        let d = Duplicate {
                            first: pair[0].id,
                            second: pair[1].id,
                        };
                        if duplicate.is_none_or(|old| d.second < old.second) {
                            duplicate = Some(d);
                        }
                    }
                }
                g.finish();
                kept.push(g);
            }
            index.chroms.push(ChromIndex { groups: kept });
        }
        match duplicate {
            Some(d) => Err(d),
            None => Ok(index),
        }
    }

    /// Calls `emit(id)` for every region on `chrom` that overlaps `[qs, qe)`, in
    /// (start, end) order. Overlap means `start < qe && qs < end`.
    #[inline]
    pub fn query(
        &self,
        chrom: u32,
        qs: u32,
        qe: u32,
        scratch: &mut Scratch,
        mut emit: impl FnMut(u32),
    ) {
        let Some(ci) = self.chroms.get(chrom as usize) else {
            return;
        };
        match ci.groups.as_slice() {
            [g] => g.scan(qs, qe, |e| emit(e.id)),
            groups => {
                scratch.hits.clear();
                for g in groups {
                    g.scan(qs, qe, |e| scratch.hits.push(*e));
                }
                scratch.hits.sort_unstable();
                for e in &scratch.hits {
                    emit(e.id);
                }
            }
        }
    }

    /// Like [`OverlapIndex::query`] for many queries `(chrom, start, end)` in order, calling
    /// `emit(query number, id)`. Unknown chromosomes are `u32::MAX`.
    pub fn query_many(
        &self,
        queries: impl Iterator<Item = (u32, u32, u32)>,
        scratch: &mut Scratch,
        emit: impl FnMut(usize, u32),
    ) {
        let mut stream = self.stream(scratch, emit);
        for (c, qs, qe) in queries {
            stream.push(c, qs, qe);
        }
        stream.finish();
    }

    /// A [`QueryStream`] that answers queries pushed one at a time.
    pub fn stream<'a, F: FnMut(usize, u32)>(
        &'a self,
        scratch: &'a mut Scratch,
        emit: F,
    ) -> QueryStream<'a, F> {
        QueryStream {
            index: self,
            scratch,
            emit,
            ring: [Pending::default(); RING],
            pushed: 0,
            answered: 0,
        }
    }

    /// The id of the region exactly `[start, end)` on `chrom`, if there is one.
    pub fn find_exact(&self, chrom: u32, start: u32, end: u32) -> Option<u32> {
        if start > end {
            return None;
        }
        let ci = self.chroms.get(chrom as usize)?;
        let w = end - start;
        let g = &ci.groups[ci
            .groups
            .partition_point(|g| g.min_width <= w)
            .checked_sub(1)?];
        let i = g
            .entries
            .partition_point(|e| (e.start, e.end) < (start, end));
        g.entries
            .get(i)
            .filter(|e| (e.start, e.end) == (start, end))
            .map(|e| e.id)
    }

    /// Bytes held by the index arrays.
    pub fn heap_bytes(&self) -> usize {
        self.chroms
            .iter()
            .flat_map(|c| &c.groups)
            .map(|g| g.entries.capacity() * std::mem::size_of::<Entry>() + g.bins.capacity() * 4)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    fn collect(ix: &OverlapIndex, c: u32, s: u32, e: u32) -> Vec<u32> {
        let mut out = Vec::new();
        ix.query(c, s, e, &mut Scratch::default(), |id| out.push(id));
        out
    }

    #[test]
    fn matches_brute_force_on_nested_and_overlapping_intervals() {
        let mut rng = Rng::new(7);
        let (mut chroms, mut starts, mut ends) = (vec![], vec![], vec![]);
        let mut seen = std::collections::HashSet::new();
        while starts.len() < 3000 {
            let c = rng.below(3);
            let s = rng.below(100_000);
            // Mostly peaks, some long regions that nest many others, some zero-width.
            let w = match rng.below(10) {
                0 => rng.below(50_000),
                1 => 0,
                _ => 50 + rng.below(1000),
            };
            if seen.insert((c, s, s + w)) {
                chroms.push(c);
                starts.push(s);
                ends.push(s + w);
            }
        }
        let ix = OverlapIndex::build(3, &chroms, &starts, &ends).expect("no duplicates");
        for _ in 0..3000 {
            let c = rng.below(4); // chromosome 3 is absent from the index
            let qs = rng.below(110_000);
            let qe = qs
                + if rng.below(5) == 0 {
                    0
                } else {
                    rng.below(3000)
                };
            let mut want: Vec<u32> = (0..starts.len() as u32)
                .filter(|&i| {
                    let i = i as usize;
                    chroms[i] == c && starts[i] < qe && qs < ends[i]
                })
                .collect();
            want.sort_by_key(|&i| (starts[i as usize], ends[i as usize]));
            assert_eq!(collect(&ix, c, qs, qe), want, "query {c}:{qs}-{qe}");
        }
    }

    #[test]
    fn streamed_queries_match_one_by_one_queries() {
        let mut rng = Rng::new(11);
        let (mut chroms, mut starts, mut ends) = (vec![], vec![], vec![]);
        let mut seen = std::collections::HashSet::new();
        while starts.len() < 2000 {
            // Chromosome 0 has one width group; chromosome 1 several (long regions too).
            let c = rng.below(2);
            let s = rng.below(50_000);
            let w = if c == 1 && rng.below(4) == 0 {
                rng.below(40_000)
            } else {
                100 + rng.below(400)
            };
            if seen.insert((c, s, s + w)) {
                chroms.push(c);
                starts.push(s);
                ends.push(s + w);
            }
        }
        let ix = OverlapIndex::build(2, &chroms, &starts, &ends).expect("no duplicates");
        // Counts below, at and above the stream's depth, so every drain path runs.
        for n in [0, 1, LAG - 1, LAG, RING, RING + 1, 5000] {
            let queries: Vec<(u32, u32, u32)> = (0..n)
                .map(|_| {
                    let c = [0, 1, u32::MAX, 7][rng.below(4) as usize];
                    let qs = rng.below(60_000);
                    (c, qs, qs + rng.below(2000))
                })
                .collect();
            let mut want = Vec::new();
            for (q, &(c, qs, qe)) in queries.iter().enumerate() {
                ix.query(c, qs, qe, &mut Scratch::default(), |id| want.push((q, id)));
            }
            let mut got = Vec::new();
            let mut scratch = Scratch::default();
            let mut stream = ix.stream(&mut scratch, |q, id| got.push((q, id)));
            for &(c, qs, qe) in &queries {
                stream.push(c, qs, qe);
            }
            assert_eq!(stream.finish(), n);
            assert_eq!(got, want, "{n} queries");
        }
    }

    #[test]
    fn half_open_boundaries() {
        let ix = OverlapIndex::build(1, &[0, 0], &[10, 20], &[20, 30]).expect("valid");
        assert_eq!(collect(&ix, 0, 0, 10), Vec::<u32>::new()); // touches start only
        assert_eq!(collect(&ix, 0, 19, 20), vec![0]);
        assert_eq!(collect(&ix, 0, 20, 21), vec![1]);
        assert_eq!(collect(&ix, 0, 19, 21), vec![0, 1]);
        assert_eq!(collect(&ix, 0, 15, 15), vec![0]); // zero-width query inside
        assert_eq!(collect(&ix, 0, 20, 20), Vec::<u32>::new()); // point on a boundary
        assert_eq!(collect(&ix, 0, 30, 40), Vec::<u32>::new());
    }

    #[test]
    fn finds_exact_regions_and_duplicates() {
        let ix = OverlapIndex::build(2, &[0, 1, 0], &[10, 10, 5], &[20, 20, 500]).expect("valid");
        assert_eq!(ix.find_exact(0, 10, 20), Some(0));
        assert_eq!(ix.find_exact(1, 10, 20), Some(1));
        assert_eq!(ix.find_exact(0, 5, 500), Some(2));
        assert_eq!(ix.find_exact(0, 10, 21), None);
        let dup = OverlapIndex::build(1, &[0, 0, 0], &[1, 5, 1], &[2, 6, 2]).err();
        assert_eq!(
            dup,
            Some(Duplicate {
                first: 0,
                second: 2
            })
        );
    }
}
