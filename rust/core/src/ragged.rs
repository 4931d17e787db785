//! Token ids of many cells in one flat buffer: the crate's one "many cells" type.
//!
//! Cell `i` owns `ids[offsets[i]..offsets[i + 1]]`. Ids are `i32` (vocabularies are checked
//! to fit), offsets are `i64` with `offsets[0] == 0`, never decreasing, and
//! `offsets.len() == n_cells + 1`. The same two arrays are a CSR matrix over the universe:
//! `indptr = offsets`, `indices = ids`.
//!
//! [`Ragged`] owns its buffers (every core function that yields cells returns one);
//! [`RaggedRef`] borrows them, checked once by [`RaggedRef::new`], and carries the
//! operations: [`take`](RaggedRef::take), [`concat`], [`truncate`](RaggedRef::truncate) and
//! [`pad`](RaggedRef::pad).
//!
//! Beside the ids a result may carry `counts` (one `u32` per id, aligned with `ids`: for
//! fragment files, how many of the cell's fragments overlap that region; the CSR matrix's
//! `data`), which `take`, `concat` and `truncate` carry along, and `qc` ([`CellQc`], one
//! value per cell: what the tokenization read of each cell), which the tokenizing
//! functions fill and the operations leave to their caller (the Python layer selects it
//! with the cells).

use rayon::prelude::*;

use crate::coverage::Coverage;
use crate::error::{Error, Result};
use crate::pad::{for_each_kept, Truncation};
use crate::parallel;

/// What a tokenization read of each cell, one value per cell (all three the same length).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellQc {
    /// Input intervals of the cell (for fragment files, its well-formed fragment lines).
    pub n_fragments: Vec<u64>,
    /// Those that overlap at least one universe region.
    pub n_in_universe: Vec<u64>,
    /// Universe ids the cell got (0 for a cell given only the `[unk]` placeholder).
    pub n_tokens: Vec<u64>,
}

impl CellQc {
    /// Appends one cell's numbers.
    pub fn push(&mut self, n_fragments: u64, n_in_universe: u64, n_tokens: u64) {
        self.n_fragments.push(n_fragments);
        self.n_in_universe.push(n_in_universe);
        self.n_tokens.push(n_tokens);
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.n_tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ragged token ids with, optionally, one name (barcode, file or cell id) per cell, one
/// count per id and the cells' QC numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ragged {
    pub ids: Vec<i32>,
    pub offsets: Vec<i64>,
    /// Empty (unnamed cells) or one name per cell.
    pub names: Vec<String>,
    /// `None`, or one count per id (aligned with `ids`).
    pub counts: Option<Vec<u32>>,
    /// `None`, or what the tokenization read of each cell.
    pub qc: Option<CellQc>,
    /// `None`, or how well the tokenization's input covered the universe.
    pub coverage: Option<Coverage>,
}

impl Default for Ragged {
    fn default() -> Self {
        Ragged::unnamed(Vec::new(), vec![0])
    }
}

impl Ragged {
    /// Unnamed cells from buffers already known to be valid (made by this crate).
    pub(crate) fn unnamed(ids: Vec<i32>, offsets: Vec<i64>) -> Self {
        Ragged {
            ids,
            offsets,
            names: Vec::new(),
            counts: None,
            qc: None,
            coverage: None,
        }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one named cell.
    pub fn push(&mut self, name: String, ids: &[i32]) {
        self.ids.extend_from_slice(ids);
        self.offsets.push(self.ids.len() as i64);
        self.names.push(name);
    }

    /// Ids of cell `i`.
    pub fn cell(&self, i: usize) -> &[i32] {
        &self.ids[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Counts of cell `i`, when the cells have counts.
    pub fn cell_counts(&self, i: usize) -> Option<&[u32]> {
        let range = self.offsets[i] as usize..self.offsets[i + 1] as usize;
        self.counts.as_ref().map(|c| &c[range])
    }

    /// A borrowed view (the buffers are valid by construction).
    pub fn view(&self) -> RaggedRef<'_> {
        RaggedRef {
            ids: &self.ids,
            offsets: &self.offsets,
            counts: self.counts.as_deref(),
        }
    }

    /// Joins per-cell id vectors into one buffer.
    pub fn from_cells(names: Vec<String>, cells: Vec<Vec<i32>>) -> Self {
        let total = cells.iter().map(Vec::len).sum();
        let mut out = Ragged::unnamed(
            Vec::with_capacity(total),
            Vec::with_capacity(cells.len() + 1),
        );
        out.offsets.push(0);
        for c in &cells {
            out.ids.extend_from_slice(c);
            out.offsets.push(out.ids.len() as i64);
        }
        out.names = names;
        out
    }
}

/// Borrowed ragged ids whose offsets have been checked: they start at 0, never decrease
/// and end at `ids.len()`, so every cell's range is in bounds; counts, when present, are
/// as many as the ids.
#[derive(Debug, Clone, Copy)]
pub struct RaggedRef<'a> {
    ids: &'a [i32],
    offsets: &'a [i64],
    counts: Option<&'a [u32]>,
}

/// Cells per parallel job when copying ids.
const CELLS_PER_JOB: usize = 256;

impl<'a> RaggedRef<'a> {
    /// Checks `offsets` against `ids` (one pass, no arithmetic that can overflow).
    pub fn new(ids: &'a [i32], offsets: &'a [i64]) -> Result<Self> {
        let bad = |what: String| {
            Err(Error::InvalidInput(format!(
                "offsets must start at 0, never decrease and end at the number of ids ({}): {what}",
                ids.len()
            )))
        };
        match offsets.first() {
            None => return bad("offsets is empty (it has n_cells + 1 entries)".into()),
            Some(&first) if first != 0 => return bad(format!("offsets[0] is {first}")),
            Some(_) => {}
        }
        if let Some(i) = offsets.windows(2).position(|w| w[0] > w[1]) {
            return bad(format!(
                "offsets[{}] = {} > offsets[{}] = {}",
                i,
                offsets[i],
                i + 1,
                offsets[i + 1]
            ));
        }
        let last = offsets[offsets.len() - 1];
        if usize::try_from(last).ok() != Some(ids.len()) {
            return bad(format!("the last offset is {last}"));
        }
        Ok(RaggedRef {
            ids,
            offsets,
            counts: None,
        })
    }

    /// The same cells with one count per id.
    pub fn with_counts(self, counts: &'a [u32]) -> Result<Self> {
        if counts.len() != self.ids.len() {
            return Err(Error::InvalidInput(format!(
                "{} counts for {} ids: counts must be aligned with ids",
                counts.len(),
                self.ids.len()
            )));
        }
        Ok(RaggedRef {
            counts: Some(counts),
            ..self
        })
    }

    pub fn ids(&self) -> &'a [i32] {
        self.ids
    }

    /// One count per id, when the cells have counts.
    pub fn counts(&self) -> Option<&'a [u32]> {
        self.counts
    }

    pub fn offsets(&self) -> &'a [i64] {
        self.offsets
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Range of cell `i` in `ids` (in bounds: the offsets were checked).
    #[inline]
    fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i] as usize..self.offsets[i + 1] as usize
    }

    /// Ids of cell `i`.
    #[inline]
    pub fn cell(&self, i: usize) -> &'a [i32] {
        &self.ids[self.range(i)]
    }

    /// Number of ids of each cell.
    pub fn lengths(&self) -> Vec<i64> {
        self.offsets.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// The cells at `indices`, in that order (repeats allowed). A negative index counts
    /// from the end, as in Python.
    pub fn take(&self, indices: &[i64]) -> Result<Ragged> {
        let n = self.len();
        let cells: Vec<usize> = indices
            .iter()
            .map(|&i| {
                let j = if i < 0 {
                    i.checked_add(n as i64)
                } else {
                    Some(i)
                };
                j.and_then(|j| usize::try_from(j).ok())
                    .filter(|&j| j < n)
                    .ok_or_else(|| {
                        Error::InvalidInput(format!("cell index {i} out of range for {n} cells"))
                    })
            })
            .collect::<Result<_>>()?;
        let mut offsets = Vec::with_capacity(cells.len() + 1);
        offsets.push(0i64);
        let mut end = 0i64;
        for &c in &cells {
            // Each selected range is in bounds, but repeats can sum past i64.
            end = end
                .checked_add(self.offsets[c + 1] - self.offsets[c])
                .ok_or_else(|| Error::InvalidInput("the selection is too large".into()))?;
            offsets.push(end);
        }
        let ids = gather(&cells, &offsets, |i| self.cell(i))?;
        let counts = match self.counts {
            Some(c) => Some(gather(&cells, &offsets, |i| &c[self.range(i)])?),
            None => None,
        };
        let mut out = Ragged::unnamed(ids, offsets);
        out.counts = counts;
        Ok(out)
    }
}

/// Fills a buffer laid out by `offsets`, cell `k` from `source(cells[k])`, in parallel for
/// large outputs.
fn gather<'s, T: Copy + Default + Send + Sync + 's>(
    cells: &[usize],
    offsets: &[i64],
    source: impl Fn(usize) -> &'s [T] + Sync,
) -> Result<Vec<T>> {
    let total = usize::try_from(offsets[offsets.len() - 1])
        .map_err(|_| Error::InvalidInput("the selection is too large".into()))?;
    let mut ids = Vec::new();
    ids.try_reserve_exact(total)
        .map_err(|_| Error::InvalidInput(format!("{total} ids are too many to allocate")))?;
    if parallel::num_threads() <= 1 || total < 1 << 16 {
        for &c in cells {
            ids.extend_from_slice(source(c));
        }
        return Ok(ids);
    }
    ids.resize(total, T::default());
    let mut jobs: Vec<(&[usize], &mut [T])> = Vec::new();
    let mut rest = ids.as_mut_slice();
    for (k, chunk) in cells.chunks(CELLS_PER_JOB).enumerate() {
        let lo = offsets[k * CELLS_PER_JOB];
        let hi = offsets[k * CELLS_PER_JOB + chunk.len()];
        let (head, tail) = rest.split_at_mut((hi - lo) as usize);
        jobs.push((chunk, head));
        rest = tail;
    }
    parallel::install(|| {
        jobs.par_iter_mut().for_each(|(chunk, out)| {
            let mut at = 0;
            for &c in chunk.iter() {
                let src = source(c);
                out[at..at + src.len()].copy_from_slice(src);
                at += src.len();
            }
        })
    });
    Ok(ids)
}

impl<'a> RaggedRef<'a> {
    /// Every cell cut to at most `max_len` ids (see [`crate::pad`] for the rules); counts
    /// are cut with their ids (the rule picks positions, whatever the values).
    pub fn truncate(&self, max_len: usize, how: Truncation) -> Ragged {
        let n = self.len();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0i64);
        let mut end = 0i64;
        for i in 0..n {
            let len = self.range(i).len().min(max_len);
            end += len as i64;
            offsets.push(end);
        }
        let mut ids = Vec::with_capacity(end as usize);
        for i in 0..n {
            for_each_kept(self.cell(i), Some(max_len), how, i as u64, |x| ids.push(x));
        }
        let counts = self.counts.map(|c| {
            let mut kept = Vec::with_capacity(end as usize);
            for i in 0..n {
                for_each_kept(&c[self.range(i)], Some(max_len), how, i as u64, |x| {
                    kept.push(x)
                });
            }
            kept
        });
        let mut out = Ragged::unnamed(ids, offsets);
        out.counts = counts;
        out
    }

    /// Rows of `width` ids (`[n_cells * width]`, row-major, as `i64`) and the matching
    /// attention mask (1 for a real id, 0 for padding). Longer cells are truncated.
    pub fn pad(&self, width: usize, pad_id: i64, how: Truncation) -> Result<(Vec<i64>, Vec<i64>)> {
        crate::pad::pad_rows(*self, width, how, pad_id)
    }
}

/// The cells of `parts`, one part after another; with counts when every part has them.
pub fn concat(parts: &[RaggedRef<'_>]) -> Result<Ragged> {
    let too_large = || Error::InvalidInput("the concatenated cells are too large".into());
    let n_cells: usize = parts.iter().map(RaggedRef::len).sum();
    let n_ids = parts
        .iter()
        .try_fold(0usize, |acc, p| acc.checked_add(p.ids.len()))
        .filter(|&n| i64::try_from(n).is_ok())
        .ok_or_else(too_large)?;
    let mut offsets = Vec::with_capacity(n_cells + 1);
    offsets.push(0i64);
    let mut ids = Vec::new();
    ids.try_reserve_exact(n_ids).map_err(|_| too_large())?;
    for p in parts {
        let base = ids.len() as i64;
        offsets.extend(p.offsets[1..].iter().map(|&o| base + o));
        ids.extend_from_slice(p.ids);
    }
    let counts = if !parts.is_empty() && parts.iter().all(|p| p.counts.is_some()) {
        let mut counts = Vec::new();
        counts.try_reserve_exact(n_ids).map_err(|_| too_large())?;
        for c in parts.iter().filter_map(|p| p.counts) {
            counts.extend_from_slice(c);
        }
        Some(counts)
    } else {
        None
    };
    let mut out = Ragged::unnamed(ids, offsets);
    out.counts = counts;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(r: &Ragged) -> Vec<Vec<i32>> {
        (0..r.len()).map(|i| r.cell(i).to_vec()).collect()
    }

    #[test]
    fn rejects_bad_offsets_without_overflow() {
        let ids = [1, 2, 3, 4];
        for offsets in [
            &[][..],
            &[1, 4],
            &[0, 5],
            &[0, 3, 2, 4],
            &[0, i64::MAX, -2, 4],
            &[0, -1],
            &[0, i64::MAX],
        ] {
            assert!(
                matches!(RaggedRef::new(&ids, offsets), Err(Error::InvalidInput(_))),
                "{offsets:?}"
            );
        }
        assert_eq!(RaggedRef::new(&ids, &[0, 0, 4]).expect("valid").len(), 2);
        assert!(RaggedRef::new(&[], &[0]).expect("valid").is_empty());
    }

    #[test]
    fn take_concat_truncate_by_hand() {
        let ids = [5, 6, 7, 8, 9, 1];
        let r = RaggedRef::new(&ids, &[0, 2, 2, 6]).expect("valid");
        let t = r.take(&[2, 0, -3, 0]).expect("in range");
        assert_eq!(
            cells(&t),
            vec![vec![7, 8, 9, 1], vec![5, 6], vec![5, 6], vec![5, 6]]
        );
        assert!(r.take(&[3]).is_err() && r.take(&[-4]).is_err() && r.take(&[i64::MIN]).is_err());
        let c = concat(&[r, t.view(), RaggedRef::new(&[], &[0]).expect("valid")]).expect("fits");
        assert_eq!(c.len(), 7);
        assert_eq!(c.cell(3), &[7, 8, 9, 1]);
        assert_eq!(c.offsets.last(), Some(&(c.ids.len() as i64)));
        let cut = r.truncate(3, Truncation::First);
        assert_eq!(cells(&cut), vec![vec![5, 6], vec![], vec![7, 8, 9]]);
    }

    #[test]
    fn large_take_matches_cells() {
        let n = 3000usize;
        let mut offsets = vec![0i64];
        for i in 0..n {
            offsets.push(offsets[i] + (i % 97) as i64);
        }
        let ids: Vec<i32> = (0..offsets[n] as i32).collect();
        let r = RaggedRef::new(&ids, &offsets).expect("valid");
        let pick: Vec<i64> = (0..n as i64).rev().step_by(2).collect();
        // Large enough for the parallel copy when more than one thread is allowed.
        let got = r.take(&pick).expect("in range");
        assert_eq!(got.len(), pick.len());
        for (k, &i) in pick.iter().enumerate() {
            assert_eq!(got.cell(k), r.cell(i as usize), "cell {k}");
        }
    }
}
