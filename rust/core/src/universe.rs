//! The vocabulary of a model: a fixed set of regions, each with an id (its file order).
//!
//! Regions are kept as columns (about 12 bytes each) plus the overlap index (about 12
//! bytes each). Token strings are formatted on demand rather than stored.

use std::path::Path;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::index::{OverlapIndex, QueryStream, Scratch};
use crate::region_set::RegionSet;

/// Universe regions with ids `0..len()` in file order, and their overlap index.
#[derive(Debug, Clone)]
pub struct Universe {
    regions: RegionSet,
    index: OverlapIndex,
    /// Made on first use (by cells that keep unique ids in genomic order).
    order: OnceLock<GenomicOrder>,
}

impl PartialEq for Universe {
    fn eq(&self, other: &Self) -> bool {
        self.regions.same_regions(&other.regions)
    }
}

impl Universe {
    /// Reads a BED file (plain or gzip); columns after the third are ignored.
    pub fn from_bed(path: &Path) -> Result<Self> {
        let (mut regions, lines) = RegionSet::from_bed_with_lines(path)?;
        regions.drop_rest();
        Self::build(regions, path, Some(&lines))
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

fn region_token(regions: &RegionSet, i: usize) -> String {
    format!(
        "{}:{}-{}",
        regions.chrom(i),
        regions.starts()[i],
        regions.ends()[i]
    )
}
