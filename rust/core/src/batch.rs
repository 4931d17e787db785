//! Tokenizing many region sets at once, in parallel, into one ragged buffer.

use std::path::Path;

use crate::error::Result;
use crate::parallel;
use crate::ragged::Ragged;
use crate::region_set::RegionSet;
use crate::tokenizer::Tokenizer;

/// One cell of a batch: regions in memory or a BED file to stream.
pub enum Cell<'a> {
    Set(&'a RegionSet),
    Bed(&'a Path),
}

/// Token ids of every cell (each `[unk]` when nothing overlaps), unnamed, one cell per
/// input. Cells are tokenized in parallel; the first error in input order is returned.
pub fn tokenize_batch(tok: &Tokenizer, cells: &[Cell<'_>]) -> Result<Ragged> {
    let per_cell = parallel::map(cells, |cell| match cell {
        Cell::Set(set) => Ok(tok.tokenize_set::<i32>(set)),
        Cell::Bed(path) => tok.tokenize_bed::<i32>(path),
    });
    let mut offsets = Vec::with_capacity(cells.len() + 1);
    offsets.push(0i64);
    let total = per_cell.iter().flatten().map(Vec::len).sum();
    let mut ids = Vec::with_capacity(total);
    for r in per_cell {
        ids.extend_from_slice(&r?);
        offsets.push(ids.len() as i64);
    }
    Ok(Ragged::unnamed(ids, offsets))
}
