//! Truncating and padding ragged token ids into fixed-width rows.
//!
//! Truncation is deterministic. `First` keeps the first `max_len` ids. `Random` keeps a
//! seeded random subset of `max_len` ids in their original order, drawn by selection
//! sampling (Knuth's algorithm S) from a generator seeded by `(seed, cell index)`.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::parallel;
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

/// Checks that `offsets` start at 0, never decrease and end at `n_ids`.
pub fn check_offsets(offsets: &[i64], n_ids: usize) -> Result<()> {
    let ok = offsets.first() == Some(&0)
        && offsets.windows(2).all(|w| w[0] <= w[1])
        && offsets
            .last()
            .is_some_and(|&l| l as usize == n_ids && l >= 0);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "offsets must start at 0, never decrease and end at the number of ids ({n_ids})"
        )))
    }
}

fn cell<'a, T>(ids: &'a [T], offsets: &[i64], i: usize) -> &'a [T] {
    &ids[offsets[i] as usize..offsets[i + 1] as usize]
}

/// Truncates every cell to at most `max_len` ids; returns new `(ids, offsets)`.
pub fn truncate<T: Copy + Send + Sync>(
    ids: &[T],
    offsets: &[i64],
    max_len: usize,
    how: Truncation,
) -> Result<(Vec<T>, Vec<i64>)> {
    check_offsets(offsets, ids.len())?;
    let n = offsets.len() - 1;
    let mut new_offsets = Vec::with_capacity(n + 1);
    new_offsets.push(0i64);
    for i in 0..n {
        let len = (offsets[i + 1] - offsets[i]) as usize;
        new_offsets.push(new_offsets[i] + len.min(max_len) as i64);
    }
    let mut out = Vec::with_capacity(new_offsets[n] as usize);
    for i in 0..n {
        for_each_kept(cell(ids, offsets, i), Some(max_len), how, i as u64, |x| {
            out.push(x)
        });
    }
    Ok((out, new_offsets))
}

/// Rows of `width` ids (`[n_cells * width]`, row-major) and the matching attention mask
/// (1 for a real id, 0 for padding). Cells longer than `width` are truncated.
pub fn pad(
    ids: &[i32],
    offsets: &[i64],
    width: usize,
    how: Truncation,
    pad_id: i64,
) -> Result<(Vec<i64>, Vec<i64>)> {
    check_offsets(offsets, ids.len())?;
    let n = offsets.len() - 1;
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
        for_each_kept(cell(ids, offsets, i), Some(width), how, i as u64, |x| {
            row[j] = i64::from(x);
            mrow[j] = 1;
            j += 1;
        });
        if pad_id != 0 {
            row[j..].fill(pad_id);
        }
    };
    if parallel::num_threads() > 1 {
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
        let offsets = [0, 10];
        let (first, o) = truncate(&ids, &offsets, 4, Truncation::First).expect("valid");
        assert_eq!((first, o), (vec![0, 1, 2, 3], vec![0, 4]));
        let how = Truncation::Random { seed: 7 };
        let (a, _) = truncate(&ids, &offsets, 4, how).expect("valid");
        let (b, _) = truncate(&ids, &offsets, 4, how).expect("valid");
        assert_eq!(a, b, "deterministic");
        assert_eq!(a.len(), 4);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "order preserved: {a:?}");
        let (c, _) = truncate(&ids, &offsets, 4, Truncation::Random { seed: 8 }).expect("valid");
        let (d, _) = truncate(&ids, &offsets, 4, Truncation::Random { seed: 9 }).expect("valid");
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
        let offsets = [0, 2, 2, 6];
        let (out, mask) = pad(&ids, &offsets, 3, Truncation::First, -1).expect("valid");
        assert_eq!(out, vec![5, 6, -1, -1, -1, -1, 7, 8, 9]);
        assert_eq!(mask, vec![1, 1, 0, 0, 0, 0, 1, 1, 1]);
        assert!(pad(&ids, &[0, 7], 3, Truncation::First, 0).is_err());
        assert!(pad(&ids, &[1, 6], 3, Truncation::First, 0).is_err());
        assert!(pad(&ids, &[0, 4, 2, 6], 3, Truncation::First, 0).is_err());
    }
}
