//! Tokenizing many region sets at once, in parallel, into one ragged buffer.

use std::path::Path;

use crate::coverage::{CellCount, ChromNames, Coverage};
use crate::error::Result;
use crate::parallel;
use crate::ragged::{CellQc, Ragged};
use crate::region_set::RegionSet;
use crate::tokenizer::Tokenizer;

/// One cell of a batch: regions in memory or a BED file to stream.
pub enum Cell<'a> {
    Set(&'a RegionSet),
    Bed(&'a Path),
}

/// Token ids of every cell (each `[unk]` when nothing overlaps), unnamed, one cell per
/// input, with chromosome names matched with [`ChromNames::Auto`].
pub fn tokenize_batch(tok: &Tokenizer, cells: &[Cell<'_>]) -> Result<Ragged> {
    tokenize_batch_with(tok, cells, ChromNames::Auto)
}

/// [`tokenize_batch`] with the names matched by `names`. The result carries per cell its
/// intervals, those overlapping the universe and its universe ids ([`Ragged::qc`]), and
/// the coverage of all the cells together. Cells are tokenized in parallel; the first
/// error in input order is returned.
pub fn tokenize_batch_with(
    tok: &Tokenizer,
    cells: &[Cell<'_>],
    names: ChromNames,
) -> Result<Ragged> {
    let per_cell = parallel::map(cells, |cell| {
        let mut ids = Vec::new();
        let (count, coverage) = match cell {
            Cell::Set(set) => {
                ids.reserve(set.len() + 1);
                tok.tokenize_set_counted::<i32>(set, names, &mut ids)
            }
            Cell::Bed(path) => tok.tokenize_bed_counted::<i32>(path, names, &mut ids)?,
        };
        Ok::<(Vec<i32>, CellCount, Coverage), crate::Error>((ids, count, coverage))
    });
    let mut offsets = Vec::with_capacity(cells.len() + 1);
    offsets.push(0i64);
    let total = per_cell.iter().flatten().map(|(ids, _, _)| ids.len()).sum();
    let mut ids = Vec::with_capacity(total);
    let mut qc = CellQc::default();
    let mut coverage = Coverage::new(tok.universe());
    for r in per_cell {
        let (cell, count, cov) = r?;
        ids.extend_from_slice(&cell);
        offsets.push(ids.len() as i64);
        // The [unk] of a cell that overlaps nothing is no universe id.
        let n_tokens = if count.in_universe == 0 {
            0
        } else {
            cell.len()
        };
        qc.push(count.intervals, count.in_universe, n_tokens as u64);
        coverage.merge(&cov);
    }
    let mut out = Ragged::unnamed(ids, offsets);
    out.qc = Some(qc);
    out.coverage = Some(coverage);
    Ok(out)
}
