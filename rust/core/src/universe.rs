//! The vocabulary of a model: a fixed set of regions, each with an id (its file order).
//!
//! Regions are kept as columns (about 12 bytes each) plus the overlap index (about 12
//! bytes each). Token strings are formatted on demand rather than stored.

use std::hash::Hasher;
use std::path::Path;
use std::sync::OnceLock;

use crate::bed;
use crate::error::{Error, LineProblem, Result};
use crate::hash::{FastHasher, FastMap};
use crate::index::{OverlapIndex, QueryStream, Scratch};
use crate::prefetch::prefetch;
use crate::region_set::RegionSet;

/// Universe regions with ids `0..len()` in file order, and their overlap index.
#[derive(Debug, Clone)]
pub struct Universe {
    regions: RegionSet,
    index: OverlapIndex,
    /// Made on first use (by cells that keep unique ids in genomic order).
    order: OnceLock<GenomicOrder>,
    /// Per chromosome, the end of its last region, and the regions' total length (bp);
    /// made on first use (by coverage counts).
    chrom_ends: OnceLock<(Vec<u32>, u64)>,
}

impl PartialEq for Universe {
    fn eq(&self, other: &Self) -> bool {
        self.regions.same_regions(&other.regions)
    }
}

impl Universe {
    /// Reads a BED file (plain or gzip); columns after the third are ignored (they must be
    /// UTF-8). A region seen twice is an [`Error::DuplicateRegion`] as soon as its second
    /// line is read, so a huge file with an early duplicate is not read to its end.
    pub fn from_bed(path: &Path) -> Result<Self> {
        let not_utf8 = |line| Error::Parse {
            path: path.to_path_buf(),
            line,
            problem: LineProblem::NotUtf8,
        };
        let mut names: Vec<String> = Vec::new();
        let mut lookup: FastMap<Box<[u8]>, u32> = FastMap::default();
        // Universe files are usually sorted: one chromosome after another.
        let mut last_chrom: Option<u32> = None;
        let mut columns = Columns::default();
        let mut seen = SeenRegions::default();
        let duplicate = |(first, second): (u32, u32), names: &[String], columns: &Columns| {
            let (c, s, e) = columns.key(second as usize);
            Error::DuplicateRegion {
                path: path.to_path_buf(),
                region: format!("{}:{s}-{e}", names[c as usize]),
                first_line: columns.lines[first as usize],
                second_line: columns.lines[second as usize],
            }
        };
        bed::for_each_record(path, |line, rec| {
            std::str::from_utf8(rec.rest).map_err(|_| not_utf8(line))?;
            let chrom = match last_chrom {
                Some(c) if names[c as usize].as_bytes() == rec.chrom => c,
                _ => match lookup.get(rec.chrom) {
                    Some(&c) => c,
                    None => {
                        let name = std::str::from_utf8(rec.chrom).map_err(|_| not_utf8(line))?;
                        let c = u32::try_from(names.len()).map_err(|_| {
                            Error::InvalidInput(format!("{}: too many chromosomes", path.display()))
                        })?;
                        names.push(name.to_owned());
                        lookup.insert(rec.chrom.into(), c);
                        seen.add_chrom();
                        c
                    }
                },
            };
            last_chrom = Some(chrom);
            if columns.chroms.len() >= SeenRegions::EMPTY as usize {
                return Err(Error::InvalidInput(format!(
                    "{}: a universe holds at most 2^32-1 regions",
                    path.display()
                )));
            }
            columns.push(chrom, rec.start, rec.end, line);
            match seen.add(&columns) {
                Some(d) => Err(duplicate(d, &names, &columns)),
                None => Ok(()),
            }
        })?;
        if let Some(d) = seen.finish(&columns) {
            return Err(duplicate(d, &names, &columns));
        }
        // The duplicate index and the line numbers are not needed past here.
        drop(seen);
        let Columns {
            chroms,
            starts,
            ends,
            lines,
        } = columns;
        drop(lines);
        let regions = RegionSet::from_interned(names, chroms, starts, ends)?;
        Self::build(regions, path, None)
    }

    /// Builds a universe from regions held in memory; errors name regions by 1-based index.
    pub fn from_regions(mut regions: RegionSet) -> Result<Self> {
        regions.drop_rest();
        Self::build(regions, Path::new("<regions>"), None)
    }

    fn build(mut regions: RegionSet, path: &Path, lines: Option<&[u64]>) -> Result<Self> {
        regions.shrink_to_fit();
        if regions.is_empty() {
            return Err(Error::EmptyUniverse {
                path: path.to_path_buf(),
            });
        }
        if u32::try_from(regions.len()).is_err() {
            return Err(Error::InvalidInput(format!(
                "{}: a universe holds at most 2^32-1 regions",
                path.display()
            )));
        }
        let index = OverlapIndex::build(
            regions.chrom_names().len(),
            regions.chrom_indices(),
            regions.starts(),
            regions.ends(),
        )
        .map_err(|d| {
            let line = |id: u32| lines.map_or(u64::from(id) + 1, |l| l[id as usize]);
            Error::DuplicateRegion {
                path: path.to_path_buf(),
                region: region_token(&regions, d.second as usize),
                first_line: line(d.first),
                second_line: line(d.second),
            }
        })?;
        Ok(Universe {
            regions,
            index,
            order: OnceLock::new(),
            chrom_ends: OnceLock::new(),
        })
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    pub fn regions(&self) -> &RegionSet {
        &self.regions
    }

    /// Chromosome number of `name`, if the universe has any region on it.
    #[inline]
    pub fn chrom_id(&self, name: &[u8]) -> Option<u32> {
        self.regions.chrom_index(name)
    }

    /// Ids of regions on `chrom` overlapping `[start, end)`, in (start, end) order.
    #[inline]
    pub fn overlaps(
        &self,
        chrom: u32,
        start: u32,
        end: u32,
        scratch: &mut Scratch,
        emit: impl FnMut(u32),
    ) {
        self.index.query(chrom, start, end, scratch, emit);
    }

    /// Ids overlapping each of many `(chrom, start, end)` queries, as `emit(query number,
    /// id)` in query order; an unknown chromosome is `u32::MAX`.
    #[inline]
    pub fn overlaps_many(
        &self,
        queries: impl Iterator<Item = (u32, u32, u32)>,
        scratch: &mut Scratch,
        emit: impl FnMut(usize, u32),
    ) {
        self.index.query_many(queries, scratch, emit);
    }

    /// A stream that answers queries pushed one at a time, like [`Universe::overlaps_many`].
    #[inline]
    pub fn stream<'a, F: FnMut(usize, u32)>(
        &'a self,
        scratch: &'a mut Scratch,
        emit: F,
    ) -> QueryStream<'a, F> {
        self.index.stream(scratch, emit)
    }

    /// The end of the last region on chromosome `c` (the largest end, bp); 0 for a
    /// chromosome number out of range.
    pub fn chrom_end(&self, c: u32) -> u32 {
        self.chrom_ends().0.get(c as usize).copied().unwrap_or(0)
    }

    /// `(span, bp)`: the sum over chromosomes of their last region's end, and the total
    /// length of the regions (bp).
    pub fn extent(&self) -> (u64, u64) {
        let (ends, bp) = self.chrom_ends();
        (ends.iter().map(|&e| u64::from(e)).sum(), *bp)
    }

    fn chrom_ends(&self) -> &(Vec<u32>, u64) {
        self.chrom_ends.get_or_init(|| {
            let mut ends = vec![0u32; self.regions.chrom_names().len()];
            let mut bp = 0u64;
            let r = &self.regions;
            for ((&c, &s), &e) in r.chrom_indices().iter().zip(r.starts()).zip(r.ends()) {
                ends[c as usize] = ends[c as usize].max(e);
                bp += u64::from(e.saturating_sub(s));
            }
            (ends, bp)
        })
    }

    /// The regions in genomic order, computed once and kept.
    pub fn genomic_order(&self) -> &GenomicOrder {
        self.order.get_or_init(|| GenomicOrder::new(self))
    }

    /// The genomic order if something has already made it (never computes it).
    pub fn genomic_order_if_made(&self) -> Option<&GenomicOrder> {
        self.order.get()
    }

    /// Id of the region with exactly these coordinates.
    pub fn find(&self, chrom: &str, start: u32, end: u32) -> Option<u32> {
        let c = self.chrom_id(chrom.as_bytes())?;
        self.index.find_exact(c, start, end)
    }

    /// Token string `chr:start-end` of region `id`.
    pub fn token(&self, id: u32) -> Option<String> {
        ((id as usize) < self.len()).then(|| region_token(&self.regions, id as usize))
    }

    /// Bytes held by the universe's columns, index and (once made) genomic order, excluding
    /// the small name table.
    pub fn heap_bytes(&self) -> usize {
        let order = self
            .order
            .get()
            .map_or(0, |o| 4 * (o.ranks().len() + o.ids().len()));
        self.regions.heap_bytes() + self.index.heap_bytes() + order
    }
}

/// The universe in genomic order: sorted by (chromosome name as bytes, start, end), the
/// order of [`crate::RegionSet::sort`]. Ranks are `0..len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenomicOrder {
    /// Rank of each id.
    rank: Vec<u32>,
    /// Id at each rank.
    order: Vec<u32>,
}

impl GenomicOrder {
    /// Computes the order in one pass when each chromosome's regions already appear in
    /// (start, end) order in the universe file (chromosomes in any order), else by sorting.
    pub fn new(universe: &Universe) -> Self {
        let regions = universe.regions();
        let names = regions.chrom_names();
        let chroms = regions.chrom_indices();
        let (starts, ends) = (regions.starts(), regions.ends());
        let chrom_rank = regions.chrom_name_ranks();
        let mut by_name = vec![0usize; names.len()];
        for (c, &r) in chrom_rank.iter().enumerate() {
            by_name[r as usize] = c;
        }
        let mut count = vec![0u32; names.len()];
        for &c in chroms {
            count[c as usize] += 1;
        }
        let mut next = vec![0u32; names.len()];
        let mut acc = 0u32;
        for &c in &by_name {
            next[c] = acc;
            acc += count[c];
        }
        let n = chroms.len();
        let mut rank = vec![0u32; n];
        let mut last: Vec<Option<(u32, u32)>> = vec![None; names.len()];
        let mut in_order = true;
        for id in 0..n {
            let c = chroms[id] as usize;
            let key = (starts[id], ends[id]);
            if last[c].is_some_and(|l| l > key) {
                in_order = false;
                break;
            }
            last[c] = Some(key);
            rank[id] = next[c];
            next[c] += 1;
        }
        let mut order = vec![0u32; n];
        if in_order {
            for (id, &r) in rank.iter().enumerate() {
                order[r as usize] = id as u32;
            }
        } else {
            // Sort the keys themselves, not ids that point at them: no scattered reads.
            let mut keyed: Vec<(u32, u32, u32, u32)> = (0..n)
                .map(|i| (chrom_rank[chroms[i] as usize], starts[i], ends[i], i as u32))
                .collect();
            keyed.sort_unstable();
            for (r, &(_, _, _, id)) in keyed.iter().enumerate() {
                order[r] = id;
                rank[id as usize] = r as u32;
            }
        }
        GenomicOrder { rank, order }
    }

    /// Rank of each universe id.
    pub fn ranks(&self) -> &[u32] {
        &self.rank
    }

    /// Universe id at each rank.
    pub fn ids(&self) -> &[u32] {
        &self.order
    }
}

/// The columns of a universe being read, with the 1-based line of each region.
#[derive(Default)]
struct Columns {
    chroms: Vec<u32>,
    starts: Vec<u32>,
    ends: Vec<u32>,
    lines: Vec<u64>,
}

impl Columns {
    fn push(&mut self, chrom: u32, start: u32, end: u32, line: u64) {
        self.chroms.push(chrom);
        self.starts.push(start);
        self.ends.push(end);
        self.lines.push(line);
    }

    fn key(&self, id: usize) -> (u32, u32, u32) {
        (self.chroms[id], self.starts[id], self.ends[id])
    }
}

/// Finds a universe region seen before, as the regions are read. While each chromosome's
/// regions come in (start, end) order a duplicate can only repeat the chromosome's last
/// region, so one comparison a region is enough; from the first region out of order on, a
/// hash index answers instead: 8-byte slots (32 bits of the region's hash and its id), at
/// most half full, so a lookup reads the regions' columns only when the hash bits match.
/// The index takes regions in batches of [`SeenRegions::BATCH`] whose slots are loaded
/// ahead, so a duplicate is found at most that many regions after it is read.
#[derive(Default)]
struct SeenRegions {
    /// Id of the last region of each chromosome.
    last: Vec<Option<u32>>,
    /// The hash index, once the order is broken.
    slots: Option<Vec<u64>>,
    /// Regions `0..indexed` are in the index.
    indexed: usize,
}

impl SeenRegions {
    /// Region ids are below this (the universe's limit).
    const EMPTY: u32 = u32::MAX;
    const EMPTY_SLOT: u64 = u64::MAX;
    const BATCH: usize = 16;

    fn add_chrom(&mut self) {
        self.last.push(None);
    }

    /// 32 bits of the hash of a region: where its search starts, and what a slot holds.
    fn tag(key: (u32, u32, u32)) -> u32 {
        let mut h = FastHasher::default();
        h.add(u64::from(key.0) << 32 | u64::from(key.1));
        h.add(u64::from(key.2));
        (h.finish() >> 32) as u32
    }

    /// Takes the region just pushed; returns `(first, second)` ids of a duplicate found.
    fn add(&mut self, columns: &Columns) -> Option<(u32, u32)> {
        let id = columns.chroms.len() - 1;
        if self.slots.is_none() {
            let key = columns.key(id);
            let last = &mut self.last[key.0 as usize];
            match *last {
                Some(l) if columns.key(l as usize) == key => return Some((l, id as u32)),
                Some(l) if columns.key(l as usize) > key => {
                    // Out of order: index every earlier region, then go on by batches.
                    self.slots = Some(vec![Self::EMPTY_SLOT; 16]);
                    self.indexed = 0;
                    return self.index(columns, id + 1);
                }
                _ => {
                    *last = Some(id as u32);
                    return None;
                }
            }
        }
        if id + 1 - self.indexed >= Self::BATCH {
            return self.index(columns, id + 1);
        }
        None
    }

    /// Indexes the regions not yet in the index; returns a duplicate found.
    fn finish(&mut self, columns: &Columns) -> Option<(u32, u32)> {
        if self.slots.is_some() {
            return self.index(columns, columns.chroms.len());
        }
        None
    }

    /// Puts regions `indexed..upto` into the index, in order, stopping at a duplicate.
    fn index(&mut self, columns: &Columns, upto: usize) -> Option<(u32, u32)> {
        let slots = self.slots.as_mut()?;
        if 2 * upto > slots.len() {
            let size = (2 * upto).next_power_of_two();
            // More room, placed from the slots alone: old slot i goes to i or i + old size,
            // so this pass is sequential.
            let old = std::mem::replace(slots, vec![Self::EMPTY_SLOT; size]);
            for slot in old.into_iter().filter(|&s| s != Self::EMPTY_SLOT) {
                let mask = slots.len() - 1;
                let mut i = (slot >> 32) as usize & mask;
                while slots[i] != Self::EMPTY_SLOT {
                    i = (i + 1) & mask;
                }
                slots[i] = slot;
            }
        }
        let mask = slots.len() - 1;
        let mut at = self.indexed;
        while at < upto {
            let end = upto.min(at + Self::BATCH);
            let mut tags = [0u32; Self::BATCH];
            for (t, id) in tags.iter_mut().zip(at..end) {
                *t = Self::tag(columns.key(id));
                prefetch(&slots[*t as usize & mask]);
            }
            for (&tag, id) in tags.iter().zip(at..end) {
                let key = columns.key(id);
                let mut i = tag as usize & mask;
                loop {
                    let slot = slots[i];
                    if slot == Self::EMPTY_SLOT {
                        slots[i] = u64::from(tag) << 32 | id as u64;
                        break;
                    }
                    let other = slot as u32;
                    if (slot >> 32) as u32 == tag && columns.key(other as usize) == key {
                        self.indexed = id;
                        return Some((other, id as u32));
                    }
                    i = (i + 1) & mask;
                }
            }
            at = end;
        }
        self.indexed = upto;
        None
    }
}

fn region_token(regions: &RegionSet, i: usize) -> String {
    format!(
        "{}:{}-{}",
        regions.chrom(i),
        regions.starts()[i],
        regions.ends()[i]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{temp_file, Rng};

    fn duplicate(text: &str) -> Option<(u64, u64, String)> {
        let f = temp_file("universe.bed", text.as_bytes());
        match Universe::from_bed(&f.0) {
            Ok(_) => None,
            Err(Error::DuplicateRegion {
                region,
                first_line,
                second_line,
                ..
            }) => Some((first_line, second_line, region)),
            Err(other) => panic!("expected a duplicate, got {other:?}"),
        }
    }

    #[test]
    fn duplicates_are_found_in_sorted_and_unsorted_files() {
        assert_eq!(duplicate("chr1\t1\t2\nchr1\t3\t4\nchr2\t1\t2\n"), None);
        let dup = |a, b, r: &str| Some((a, b, r.to_string()));
        assert_eq!(
            duplicate("# c\nchr1\t1\t2\nchr1\t1\t2\n"),
            dup(2, 3, "chr1:1-2")
        );
        // Out of order, and a chromosome that comes back later.
        assert_eq!(
            duplicate("chr1\t5\t6\nchr1\t1\t2\nchr2\t0\t1\nchr1\t5\t6\n"),
            dup(1, 4, "chr1:5-6")
        );
        assert_eq!(
            duplicate("chr1\t1\t2\nchr2\t0\t1\nchr1\t3\t4\nchr2\t0\t1\n"),
            dup(2, 4, "chr2:0-1")
        );
        assert_eq!(duplicate("chr1\t1\t5\nchr1\t1\t4\nchr1\t1\t3\n"), None);
    }

    #[test]
    fn matches_a_set_on_random_universes() {
        let mut rng = Rng::new(7);
        for round in 0..200 {
            let n = 1 + rng.below(300) as usize;
            let sorted = round % 2 == 0;
            let mut regions: Vec<(u32, u32, u32)> = (0..n)
                .map(|_| {
                    let (c, s) = (rng.below(3), rng.below(40));
                    (c, s, s + 1 + rng.below(3))
                })
                .collect();
            if sorted {
                regions.sort_unstable();
            }
            let mut seen = std::collections::HashMap::new();
            let mut want = None;
            for (i, r) in regions.iter().enumerate() {
                if let Some(&first) = seen.get(r) {
                    want = Some((first as u64 + 1, i as u64 + 1));
                    break;
                }
                seen.insert(*r, i);
            }
            let text: String = regions
                .iter()
                .map(|(c, s, e)| format!("chr{c}\t{s}\t{e}\n"))
                .collect();
            assert_eq!(
                duplicate(&text).map(|(a, b, _)| (a, b)),
                want,
                "round {round}"
            );
        }
    }
}
