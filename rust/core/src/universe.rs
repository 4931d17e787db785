//! The vocabulary of a model: a fixed set of regions, each with an id (its file order).
//!
//! Regions are kept as columns (about 12 bytes each) plus the overlap index (about 12
//! bytes each). Token strings are formatted on demand rather than stored.

use std::path::Path;

use crate::error::{Error, Result};
use crate::index::{OverlapIndex, QueryStream, Scratch};
use crate::region_set::RegionSet;

/// Universe regions with ids `0..len()` in file order, and their overlap index.
#[derive(Debug, Clone)]
pub struct Universe {
    regions: RegionSet,
    index: OverlapIndex,
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
        Ok(Universe { regions, index })
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

    /// Id of the region with exactly these coordinates.
    pub fn find(&self, chrom: &str, start: u32, end: u32) -> Option<u32> {
        let c = self.chrom_id(chrom.as_bytes())?;
        self.index.find_exact(c, start, end)
    }

    /// Token string `chr:start-end` of region `id`.
    pub fn token(&self, id: u32) -> Option<String> {
        ((id as usize) < self.len()).then(|| region_token(&self.regions, id as usize))
    }

    /// Bytes held by the universe's columns and index (excluding the small name table).
    pub fn heap_bytes(&self) -> usize {
        self.regions.heap_bytes() + self.index.heap_bytes()
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
