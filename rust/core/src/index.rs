//! The overlap index over a universe.
//!
//! Per chromosome, regions are split into groups by width class (widths in `(2^(k-1), 2^k]`),
//! and each group is a flat array sorted by (start, end). A region `[s, e)` of a group with
//! largest width `w` can overlap `[qs, qe)` only if `qs - w < s < qe`, so one binary search
//! finds the first candidate and a forward scan ends at the first start `>= qe`. Grouping by
//! width keeps that scan short even when a few very long regions sit among short peaks, and
//! the results stay exact for nested and overlapping universes.

/// Regions of one width class on one chromosome, sorted by (start, end).
#[derive(Debug, Clone, Default)]
struct Group {
    class: usize,
    max_width: u32,
    starts: Vec<u32>,
    ends: Vec<u32>,
    ids: Vec<u32>,
}

impl Group {
    #[inline]
    fn first_candidate(&self, qs: u32) -> usize {
        let w = u64::from(self.max_width);
        let qs = u64::from(qs);
        self.starts.partition_point(|&s| u64::from(s) + w <= qs)
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

/// Reusable space for queries that touch several width groups.
#[derive(Debug, Default)]
pub struct Scratch {
    hits: Vec<(u32, u32, u32)>,
}

fn width_class(start: u32, end: u32) -> usize {
    (u32::BITS - (end - start).leading_zeros()) as usize
}

/// Two regions with the same chromosome, start and end (ids in file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate {
    pub first: u32,
    pub second: u32,
}

impl OverlapIndex {
    /// Builds the index; `chroms[i]`, `starts[i]`, `ends[i]` describe region id `i`.
    /// Fails on the first duplicated region (by the order of the later copy's id).
    pub fn build(
        n_chroms: usize,
        chroms: &[u32],
        starts: &[u32],
        ends: &[u32],
    ) -> Result<Self, Duplicate> {
        let mut per_chrom: Vec<Vec<u32>> = vec![Vec::new(); n_chroms];
        for (id, &c) in chroms.iter().enumerate() {
            per_chrom[c as usize].push(id as u32);
        }
        let mut duplicate: Option<Duplicate> = None;
        let mut index = OverlapIndex {
            chroms: Vec::with_capacity(n_chroms),
        };
        for mut ids in per_chrom {
            ids.sort_unstable_by_key(|&id| (starts[id as usize], ends[id as usize], id));
            for pair in ids.windows(2) {
                let (a, b) = (pair[0] as usize, pair[1] as usize);
                if starts[a] == starts[b] && ends[a] == ends[b] {
                    let d = Duplicate {
                        first: a as u32,
                        second: b as u32,
                    };
                    if duplicate.is_none_or(|old| d.second < old.second) {
                        duplicate = Some(d);
                    }
                }
            }
            let mut by_class: Vec<Group> = vec![Group::default(); u32::BITS as usize + 1];
            for id in ids {
                let (s, e) = (starts[id as usize], ends[id as usize]);
                let class = width_class(s, e);
                let g = &mut by_class[class];
                g.class = class;
                g.max_width = g.max_width.max(e - s);
                g.starts.push(s);
                g.ends.push(e);
                g.ids.push(id);
            }
            let groups = by_class
                .into_iter()
                .filter(|g| !g.ids.is_empty())
                .map(|mut g| {
                    g.starts.shrink_to_fit();
                    g.ends.shrink_to_fit();
                    g.ids.shrink_to_fit();
                    g
                })
                .collect();
            index.chroms.push(ChromIndex { groups });
        }
        match duplicate {
            Some(d) => Err(d),
            None => Ok(index),
        }
    }

    /// Calls `emit(id)` for every region on `chrom` that overlaps `[qs, qe)`, in
    /// (start, end) order. Overlap means `start < qe && qs < end`.
    #[inline]
    pub fn query(&self, chrom: u32, qs: u32, qe: u32, scratch: &mut Scratch, mut emit: impl FnMut(u32)) {
        let Some(ci) = self.chroms.get(chrom as usize) else {
            return;
        };
        match ci.groups.as_slice() {
            [g] => {
                let mut i = g.first_candidate(qs);
                while i < g.starts.len() && g.starts[i] < qe {
                    if g.ends[i] > qs {
                        emit(g.ids[i]);
                    }
                    i += 1;
                }
            }
            groups => {
                scratch.hits.clear();
                for g in groups {
                    let mut i = g.first_candidate(qs);
                    while i < g.starts.len() && g.starts[i] < qe {
                        if g.ends[i] > qs {
                            scratch.hits.push((g.starts[i], g.ends[i], g.ids[i]));
                        }
                        i += 1;
                    }
                }
                scratch.hits.sort_unstable();
                for &(_, _, id) in &scratch.hits {
                    emit(id);
                }
            }
        }
    }

    /// The id of the region exactly `[start, end)` on `chrom`, if there is one.
    pub fn find_exact(&self, chrom: u32, start: u32, end: u32) -> Option<u32> {
        let ci = self.chroms.get(chrom as usize)?;
        if start > end {
            return None;
        }
        let class = width_class(start, end);
        let g = ci.groups.iter().find(|g| g.class == class)?;
        let mut i = g.starts.partition_point(|&s| s < start);
        while i < g.starts.len() && g.starts[i] == start {
            if g.ends[i] == end {
                return Some(g.ids[i]);
            }
            i += 1;
        }
        None
    }

    /// Bytes held by the index arrays.
    pub fn heap_bytes(&self) -> usize {
        self.chroms
            .iter()
            .flat_map(|c| &c.groups)
            .map(|g| 4 * (g.starts.capacity() + g.ends.capacity() + g.ids.capacity()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers (SplitMix64) for the oracle test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u32 {
            (self.next() % n) as u32
        }
    }

    fn collect(ix: &OverlapIndex, c: u32, s: u32, e: u32) -> Vec<u32> {
        let mut out = Vec::new();
        ix.query(c, s, e, &mut Scratch::default(), |id| out.push(id));
        out
    }

    #[test]
    fn matches_brute_force_on_nested_and_overlapping_intervals() {
        let mut rng = Rng(7);
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
            let qe = qs + if rng.below(5) == 0 { 0 } else { rng.below(3000) };
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
        assert_eq!(dup, Some(Duplicate { first: 0, second: 2 }));
    }
}
