//! The truncation rule and the padding of ragged token ids into fixed-width rows (used
//! through [`RaggedRef::truncate`] and [`RaggedRef::pad`]).
//!
//! Truncation is deterministic. `First` keeps the first `max_len` ids. `Random` keeps a
//! seeded random subset of `max_len` ids in their original order, drawn by selection
//! sampling (Knuth's algorithm S) from a generator seeded by `(seed, cell index)`.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::parallel;
use crate::ragged::RaggedRef;
use crate::rng::SplitMix64;

/// How to cut a cell longer than the maximum length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    First,
    Random { seed: u64 },
}

/// The generator of one cell: seeded by the call's seed and the cell's index.
fn cell_rng(seed: u64, cell_index: u64) -> SplitMix64 {
    let mut g = SplitMix64::new(seed ^ cell_index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    g.next_u64();
    g
}

/// Calls `keep(x)` for the ids of `cell` that survive truncation to `max_len`, in order.
pub fn for_each_kept<T: Copy>(
    cell: &[T],
    max_len: Option<usize>,
    how: Truncation,
    cell_index: u64,
    mut keep: impl FnMut(T),
) {
    let n = cell.len();
    let k = max_len.map_or(n, |m| m.min(n));
    if k == n {
        cell.iter().for_each(|&x| keep(x));
        return;
    }
    match how {
        Truncation::First => cell[..k].iter().for_each(|&x| keep(x)),
        Truncation::Random { seed } => {
            let mut rng = cell_rng(seed, cell_index);
            let mut need = k as u64;
            for (i, &x) in cell.iter().enumerate() {
                if need == 0 {
                    break;
                }
                if rng.below((n - i) as u64) < need {
                    keep(x);
                    need -= 1;
                }
            }
        }
    }
}

/// Rows of `width` ids (`[n_cells * width]`, row-major) and the matching attention mask
/// (1 for a real id, 0 for padding). Cells longer than `width` are truncated.
pub(crate) fn pad_rows(
    cells: RaggedRef<'_>,
    width: usize,
    how: Truncation,
    pad_id: i64,
) -> Result<(Vec<i64>, Vec<i64>)> {
    let n = cells.len();
    let too_large = || {
        Error::InvalidInput(format!(
            "a padded batch of {n} cells x {width} ids is too large to allocate"
        ))
    };
    let total = n.checked_mul(width).ok_or_else(too_large)?;
    // Ask first, so a batch the allocator refuses is an error rather than an abort.
    let mut probe: Vec<i64> = Vec::new();
    probe
        .try_reserve_exact(total.saturating_mul(2))
        .map_err(|_| too_large())?;
    drop(probe);
    // Zeroed memory comes from the system untouched; each row is then written once, by
    // the thread that fills it.
    let mut out = vec![0i64; total];
    let mut mask = vec![0i64; total];
    if width == 0 {
        return Ok((out, mask));
    }
    let fill = |(i, (row, mrow)): (usize, (&mut [i64], &mut [i64]))| {
        let mut j = 0;
        for_each_kept(cells.cell(i), Some(width), how, i as u64, |x| {
            row[j] = i64::from(x);
            mrow[j] = 1;
            j += 1;
        });
        if pad_id != 0 {
            row[j..].fill(pad_id);
        }
    };
    // A few rows are not worth a trip to the thread pool.
    if parallel::num_threads() > 1 && n > 64 {
        parallel::install(|| {
            out.par_chunks_mut(width)
                .zip(mask.par_chunks_mut(width))
                .enumerate()
                .with_min_len(64)
                .for_each(fill)
        });
    } else {
        // Serially on this thread: rayon iterators outside the pool would start rayon's
        // global pool (and hang in a forked child).
        out.chunks_mut(width)
            .zip(mask.chunks_mut(width))
            .enumerate()
            .for_each(fill);
    }
    Ok((out, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_random_truncation() {
        let ids: Vec<i32> = (0..10).collect();
        let cells = RaggedRef::new(&ids, &[0, 10]).expect("valid");
        let first = cells.truncate(4, Truncation::First);
        assert_eq!((first.ids, first.offsets), (vec![0, 1, 2, 3], vec![0, 4]));
        let how = Truncation::Random { seed: 7 };
        let a = cells.truncate(4, how).ids;
        let b = cells.truncate(4, how).ids;
        assert_eq!(a, b, "deterministic");
        assert_eq!(a.len(), 4);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "order preserved: {a:?}");
        let c = cells.truncate(4, Truncation::Random { seed: 8 }).ids;
        let d = cells.truncate(4, Truncation::Random { seed: 9 }).ids;
        assert!(a != c || a != d, "different seeds give different subsets");
    }

    #[test]
    fn random_subsets_are_uniform() {
        // Each of 10 positions should be kept 4/10 of the time.
        let cell: Vec<i32> = (0..10).collect();
        let mut counts = [0u32; 10];
        for seed in 0..20_000u64 {
            for_each_kept(&cell, Some(4), Truncation::Random { seed }, 0, |x| {
                counts[x as usize] += 1
            });
        }
        for c in counts {
            assert!((7_600..8_400).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn pads_rows_and_masks() {
        let ids = [5, 6, 7, 8, 9, 1];
        let cells = RaggedRef::new(&ids, &[0, 2, 2, 6]).expect("valid");
        let (out, mask) = cells.pad(3, -1, Truncation::First).expect("fits");
        assert_eq!(out, vec![5, 6, -1, -1, -1, -1, 7, 8, 9]);
        assert_eq!(mask, vec![1, 1, 0, 0, 0, 0, 1, 1, 1]);
        assert!(RaggedRef::new(&ids, &[0, 7]).is_err());
        assert!(RaggedRef::new(&ids, &[1, 6]).is_err());
        assert!(RaggedRef::new(&ids, &[0, 4, 2, 6]).is_err());
        assert!(
            cells.pad(usize::MAX, 0, Truncation::First).is_err(),
            "too large"
        );
    }
}
