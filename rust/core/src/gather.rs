//! Tokenization of a cells x peaks matrix (AnnData) by gathering: each peak is mapped to its
//! universe ids once (a [`PeakTable`], built once and reused for every chunk of rows), then
//! each cell takes the union of the ids of its accessible peaks. When the peaks are the
//! universe itself (same regions, same order, no two overlapping), the table is an identity
//! and no overlap is computed.
//!
//! The matrix comes as CSR arrays (`indptr`, `indices`, optional `data`), in any integer
//! type NumPy uses for them. An entry is accessible when it is stored and, if `data` is
//! given, nonzero; column indices need not be sorted and may repeat. A cell's ids are
//! unique and in ascending genomic order (see [`crate::GenomicOrder`]); a cell with none gets
//! `[unk]`. Special-token ids in the peak table are ignored.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::index::Scratch;
use crate::parallel;
use crate::ragged::{Ragged, RaggedRef};
use crate::region_set::RegionSet;
use crate::tokenizer::{Special, Tokenizer};
use crate::universe::GenomicOrder;

/// Integer types of CSR `indptr` and `indices`.
pub trait CsrIndex: Copy + Send + Sync {
    /// The value as an index, or `None` when negative or too large.
    fn to_index(self) -> Option<usize>;
}

macro_rules! csr_index {
    ($($t:ty),*) => {$(
        impl CsrIndex for $t {
            #[inline]
            fn to_index(self) -> Option<usize> {
                usize::try_from(self).ok()
            }
        }
    )*};
}
csr_index!(i32, i64, u32, u64, usize);

/// Element types of CSR `data`: which stored values count as accessible.
pub trait Stored: Copy + Send + Sync {
    fn is_nonzero(self) -> bool;
}

macro_rules! stored_num {
    ($($t:ty),*) => {$(
        impl Stored for $t {
            #[inline]
            fn is_nonzero(self) -> bool {
                self != (0 as $t)
            }
        }
    )*};
}
stored_num!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

impl Stored for bool {
    #[inline]
    fn is_nonzero(self) -> bool {
        self
    }
}

/// A CSR matrix of cells (rows) x peaks (columns), borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Csr<'a, P, I, D> {
    /// Row `r` holds entries `indptr[r]..indptr[r + 1]`; length `n_rows + 1`.
    pub indptr: &'a [P],
    /// Column (peak) index of each entry.
    pub indices: &'a [I],
    /// Stored values; `None` when every stored entry counts as accessible.
    pub data: Option<&'a [D]>,
}

/// The universe ids overlapping each peak (no `[unk]` for a peak that overlaps nothing),
/// one unnamed cell per peak.
pub fn peak_table(tok: &Tokenizer, peaks: &RegionSet) -> Ragged {
    let universe = tok.universe();
    let chrom_map = universe_chroms(tok, peaks);
    let queries = peaks
        .chrom_indices()
        .iter()
        .zip(peaks.starts())
        .zip(peaks.ends())
        .map(|((&c, &s), &e)| (chrom_map[c as usize], s, e));
    let mut ids = Vec::with_capacity(peaks.len());
    let mut counts = vec![0i64; peaks.len()];
    universe.overlaps_many(queries, &mut Scratch::default(), |q, id| {
        ids.push(id as i32);
        counts[q] += 1;
    });
    let mut offsets = Vec::with_capacity(peaks.len() + 1);
    offsets.push(0);
    for c in counts {
        offsets.push(offsets[offsets.len() - 1] + c);
    }
    Ragged::unnamed(ids, offsets)
}

/// Parses an AnnData peak name, `chr1:100-600` or `chr1-100-600`: the end follows the last
/// `-`, the start is the run of digits before it, after a `:` or `-`; the chromosome is
/// the rest (non-empty). Leading zeros are allowed, unlike in token strings.
pub fn parse_peak_name(name: &str) -> Option<(&str, u32, u32)> {
    let (head, end) = name.rsplit_once('-')?;
    let digits = head.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (chr_sep, start) = head.split_at(head.len() - digits);
    let chr = chr_sep
        .strip_suffix(':')
        .or_else(|| chr_sep.strip_suffix('-'))?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    if chr.is_empty() {
        return None;
    }
    Some((chr, number(start)?, number(end)?))
}

/// The universe chromosome of each chromosome of `peaks` (`u32::MAX` when unknown).
fn universe_chroms(tok: &Tokenizer, peaks: &RegionSet) -> Vec<u32> {
    peaks
        .chrom_names()
        .iter()
        .map(|n| tok.universe().chrom_id(n.as_bytes()).unwrap_or(u32::MAX))
        .collect()
}

/// True when `peaks` are the universe regions in universe order and every universe region
/// overlaps itself only (non-empty, no two overlapping): each peak's ids are then exactly
/// its own index. One pass over the columns, and one over the genomic order when they match.
fn is_universe(tok: &Tokenizer, peaks: &RegionSet) -> bool {
    let regions = tok.universe().regions();
    if peaks.len() != regions.len() {
        return false;
    }
    let chrom_map = universe_chroms(tok, peaks);
    let same = peaks
        .chrom_indices()
        .iter()
        .zip(regions.chrom_indices())
        .all(|(&p, &u)| chrom_map[p as usize] == u)
        && peaks.starts() == regions.starts()
        && peaks.ends() == regions.ends();
    if !same {
        return false;
    }
    let (chroms, starts, ends) = (regions.chrom_indices(), regions.starts(), regions.ends());
    let mut reach: Option<(u32, u32)> = None; // (chromosome, furthest end so far)
    for &id in tok.universe().genomic_order().ids() {
        let i = id as usize;
        if starts[i] >= ends[i] {
            return false;
        }
        match reach {
            Some((c, end)) if c == chroms[i] && end > starts[i] => return false,
            Some((c, end)) if c == chroms[i] => reach = Some((c, end.max(ends[i]))),
            _ => reach = Some((chroms[i], ends[i])),
        }
    }
    true
}

/// The peak table of a cells x peaks matrix, ready to gather rows: built once per set of
/// peaks (the sorting into genomic ranks happens here), then used for any number of row
/// chunks.
#[derive(Debug, Clone)]
pub struct PeakTable {
    local: LocalTable,
    n_peaks: usize,
    unk: i32,
    identity: bool,
}

impl PeakTable {
    /// The table of `peaks` against `tok`'s universe; an identity, without overlap queries,
    /// when the peaks are the universe itself.
    pub fn new(tok: &Tokenizer, peaks: &RegionSet) -> Result<Self> {
        if is_universe(tok, peaks) {
            return Ok(Self::identity(tok));
        }
        let table = peak_table(tok, peaks);
        Self::from_table(tok, table.view())
    }

    /// A table from explicit universe ids per peak (cell `p` of `table` is peak `p`).
    /// Special-token ids in it are ignored; ids outside the vocabulary are an error.
    pub fn from_table(tok: &Tokenizer, table: RaggedRef<'_>) -> Result<Self> {
        Ok(PeakTable {
            local: local_table(tok, table)?,
            n_peaks: table.len(),
            unk: tok.special_id(Special::Unk) as i32,
            identity: false,
        })
    }

    /// The table of the universe's own regions: peak `p` is universe id `p`.
    fn identity(tok: &Tokenizer) -> Self {
        let order = tok.universe().genomic_order();
        PeakTable {
            local: LocalTable {
                slots: order.ranks().to_vec(),
                many: Vec::new(),
                ids: order.ids().to_vec(),
            },
            n_peaks: order.ids().len(),
            unk: tok.special_id(Special::Unk) as i32,
            identity: true,
        }
    }

    /// Number of peaks (matrix columns).
    pub fn n_peaks(&self) -> usize {
        self.n_peaks
    }

    /// True when the peaks are the universe itself, so no overlap was computed.
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    /// See [`gather_csr`].
    pub fn gather<P: CsrIndex, I: CsrIndex, D: Stored>(
        &self,
        matrix: &Csr<'_, P, I, D>,
        names: Option<Vec<String>>,
    ) -> Result<Ragged> {
        gather_csr(self, matrix, names)
    }
}

/// Marks an empty slot of [`LocalTable::slots`].
const NO_ID: u32 = u32::MAX;
/// Flag of a slot that points into [`LocalTable::many`].
const MANY: u32 = 1 << 31;

/// True for a slot `MANY | i` (not [`NO_ID`]), in one comparison.
#[inline]
fn is_many(slot: u32) -> bool {
    slot.wrapping_sub(MANY) < NO_ID - MANY
}

/// Peak table translated to dense local ranks: only the universe regions some peak
/// touches, numbered in genomic order.
#[derive(Debug, Clone)]
struct LocalTable {
    /// Per peak, its local rank, [`NO_ID`] when it has none, or `MANY | i` when it has
    /// several: `many[i]` counts them and they follow. Most peaks overlap at most one
    /// region, so one 4-byte read serves them and the table stays small in cache.
    slots: Vec<u32>,
    many: Vec<u32>,
    /// Universe id of each local rank.
    ids: Vec<u32>,
}

fn local_table(tok: &Tokenizer, peaks: RaggedRef<'_>) -> Result<LocalTable> {
    let vocab = tok.vocab_size() as i64;
    let offsets = peaks.offsets();
    for (i, &id) in peaks.ids().iter().enumerate() {
        if !(0..vocab).contains(&i64::from(id)) {
            return Err(Error::InvalidInput(format!(
                "peak table id {id} at position {i} is not in the vocabulary (0..{vocab})"
            )));
        }
    }
    if u32::try_from(peaks.ids().len()).is_err() {
        return Err(Error::InvalidInput(
            "the peak table holds more than 2^32-1 ids".into(),
        ));
    }
    let (local_of, ids) = match tok.universe().genomic_order_if_made() {
        Some(order) => local_ranks_from_order(order, peaks.ids()),
        None => local_ranks_by_sorting(tok, peaks.ids()),
    };
    let n_peaks = offsets.len() - 1;
    let mut slots = Vec::with_capacity(n_peaks);
    let mut many = Vec::new();
    let mut mine = Vec::new();
    for w in offsets.windows(2) {
        mine.clear();
        mine.extend(
            local_of[w[0] as usize..w[1] as usize]
                .iter()
                .filter(|&&l| l != NO_ID),
        );
        mine.sort_unstable();
        mine.dedup();
        slots.push(match mine.as_slice() {
            [] => NO_ID,
            &[a] => a,
            all => {
                let at = u32::try_from(many.len())
                    .ok()
                    .filter(|&i| i < NO_ID - MANY)
                    .ok_or_else(|| Error::InvalidInput("peak table too large".into()))?;
                many.push(all.len() as u32);
                many.extend_from_slice(all);
                MANY | at
            }
        });
    }
    Ok(LocalTable { slots, many, ids })
}

/// Local ranks of the table's entries ([`NO_ID`] for special ids) and the universe id of
/// each local rank, by sorting the entries by (chromosome name, start, end) without
/// touching the rest of the universe. Peaks usually come in genomic order, so the entries
/// are nearly sorted already.
fn local_ranks_by_sorting(tok: &Tokenizer, table_ids: &[i32]) -> (Vec<u32>, Vec<u32>) {
    let n = tok.universe().len();
    let regions = tok.universe().regions();
    let chrom_rank = regions.chrom_name_ranks();
    let (chroms, starts, ends) = (regions.chrom_indices(), regions.starts(), regions.ends());
    let mut keyed: Vec<(u32, u32, u32, u32, u32)> = table_ids
        .iter()
        .enumerate()
        .filter(|&(_, &id)| (id as usize) < n)
        .map(|(i, &id)| {
            let u = id as usize;
            (
                chrom_rank[chroms[u] as usize],
                starts[u],
                ends[u],
                id as u32,
                i as u32,
            )
        })
        .collect();
    if !insertion_sort_bounded(&mut keyed) {
        keyed.sort_unstable();
    }
    // Local rank of each entry of the peak table (special ids keep NO_ID).
    let mut local_of = vec![NO_ID; table_ids.len()];
    let mut ids: Vec<u32> = Vec::new();
    for &(_, _, _, id, i) in &keyed {
        if ids.last() != Some(&id) {
            ids.push(id);
        }
        local_of[i as usize] = (ids.len() - 1) as u32;
    }
    (local_of, ids)
}

/// As [`local_ranks_by_sorting`], from the universe's genomic order when something has
/// already made it (the fragment reader does): the used ranks are marked in a bitmap and
/// numbered densely, with no sort.
fn local_ranks_from_order(order: &GenomicOrder, table_ids: &[i32]) -> (Vec<u32>, Vec<u32>) {
    let rank = order.ranks();
    let mut used = vec![0u64; rank.len().div_ceil(64)];
    for &id in table_ids {
        if let Some(&r) = rank.get(id as usize) {
            used[(r / 64) as usize] |= 1 << (r % 64);
        }
    }
    // The local rank of the first used rank of each word, and the id of each local rank.
    let mut first = Vec::with_capacity(used.len());
    let mut ids = Vec::new();
    for (w, &word) in used.iter().enumerate() {
        first.push(ids.len() as u32);
        let mut x = word;
        while x != 0 {
            ids.push(order.ids()[w * 64 + x.trailing_zeros() as usize]);
            x &= x - 1;
        }
    }
    let local_of = table_ids
        .iter()
        .map(|&id| match rank.get(id as usize) {
            Some(&r) => {
                let (w, b) = ((r / 64) as usize, r % 64);
                first[w] + (used[w] & ((1u64 << b) - 1)).count_ones()
            }
            None => NO_ID,
        })
        .collect();
    (local_of, ids)
}

/// For each row of a CSR matrix, the union of the universe ids of its accessible peaks,
/// unique, in ascending genomic order; `[unk]` for a row with none. Rows are named by
/// `names` (e.g. `obs_names`) or, when `None`, left unnamed.
pub fn gather_csr<P: CsrIndex, I: CsrIndex, D: Stored>(
    peaks: &PeakTable,
    matrix: &Csr<'_, P, I, D>,
    names: Option<Vec<String>>,
) -> Result<Ragged> {
    let Some(n_rows) = matrix.indptr.len().checked_sub(1) else {
        return Err(Error::InvalidInput(
            "indptr is empty (it has n_rows + 1 entries)".into(),
        ));
    };
    let n_peaks = peaks.n_peaks;
    if let Some(data) = matrix.data {
        if data.len() != matrix.indices.len() {
            return Err(Error::InvalidInput(format!(
                "data has {} entries but indices has {}",
                data.len(),
                matrix.indices.len()
            )));
        }
    }
    let mut bounds = Vec::with_capacity(matrix.indptr.len());
    for (r, &p) in matrix.indptr.iter().enumerate() {
        let p = p
            .to_index()
            .filter(|&p| p <= matrix.indices.len())
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "indptr[{r}] is out of range 0..={}",
                    matrix.indices.len()
                ))
            })?;
        if bounds.last().is_some_and(|&last| p < last) {
            return Err(Error::InvalidInput(format!(
                "indptr decreases at row {}",
                r - 1
            )));
        }
        bounds.push(p);
    }
    let names = match names {
        Some(n) if n.len() != n_rows => {
            return Err(Error::InvalidInput(format!(
                "{} names for {n_rows} rows",
                n.len()
            )))
        }
        Some(n) => n,
        None => Vec::new(),
    };
    let table = &peaks.local;
    let unk = peaks.unk;
    let jobs: Vec<std::ops::Range<usize>> = (0..n_rows)
        .step_by(ROWS_PER_JOB)
        .map(|a| a..(a + ROWS_PER_JOB).min(n_rows))
        .collect();
    // Each job gathers its rows into its own buffer in one pass; the buffers are then
    // copied into the output in parallel, so the output's pages are first touched by
    // several threads (slow in virtual machines).
    let gather = |rows: &std::ops::Range<usize>| {
        // Room for one id per entry, the usual most, so the buffer rarely grows; pages
        // never written cost nothing.
        let entries = bounds[rows.end] - bounds[rows.start];
        let mut part = Gathered {
            ids: Vec::with_capacity(entries + rows.len()),
            lens: Vec::with_capacity(rows.len()),
        };
        gather_rows(
            matrix,
            &bounds,
            table,
            n_peaks,
            unk,
            rows.clone(),
            &mut part,
        )?;
        Ok(part)
    };
    let parts: Vec<Gathered> = if parallel::num_threads() > 1 {
        parallel::install(|| jobs.par_iter().map(gather).collect::<Result<_>>())?
    } else {
        jobs.iter().map(gather).collect::<Result<_>>()?
    };
    let mut offsets = Vec::with_capacity(n_rows + 1);
    offsets.push(0i64);
    let mut end = 0i64;
    for len in parts.iter().flat_map(|p| &p.lens) {
        end += i64::from(*len);
        offsets.push(end);
    }
    let mut ids = vec![0i32; end as usize];
    let mut dest: Vec<&mut [i32]> = Vec::with_capacity(parts.len());
    let mut rest = ids.as_mut_slice();
    for part in &parts {
        let (head, tail) = rest.split_at_mut(part.ids.len());
        dest.push(head);
        rest = tail;
    }
    let copy = |(d, p): (&mut &mut [i32], &Gathered)| d.copy_from_slice(&p.ids);
    if parallel::num_threads() > 1 {
        parallel::install(|| dest.par_iter_mut().zip(parts.par_iter()).for_each(copy));
    } else {
        dest.iter_mut().zip(parts.iter()).for_each(copy);
    }
    let mut out = Ragged::unnamed(ids, offsets);
    out.names = names;
    Ok(out)
}

/// The peak of CSR entry `k` of row `r`, or `None` when its stored value is zero.
#[inline]
fn peak_of<P: CsrIndex, I: CsrIndex, D: Stored>(
    matrix: &Csr<'_, P, I, D>,
    k: usize,
    r: usize,
    n_peaks: usize,
) -> Result<Option<usize>> {
    if let Some(data) = matrix.data {
        if !data[k].is_nonzero() {
            return Ok(None);
        }
    }
    match matrix.indices[k].to_index() {
        Some(p) if p < n_peaks => Ok(Some(p)),
        _ => Err(Error::InvalidInput(format!(
            "column index of entry {k} (row {r}) is out of range 0..{n_peaks}"
        ))),
    }
}

/// The slots of the accessible peaks of row `r`, in entry order. Loading them in a loop
/// with no branch on their values keeps many cache misses in flight at once.
fn row_slots<P: CsrIndex, I: CsrIndex, D: Stored>(
    matrix: &Csr<'_, P, I, D>,
    table: &LocalTable,
    n_peaks: usize,
    r: usize,
    entries: std::ops::Range<usize>,
    out: &mut Vec<u32>,
) -> Result<()> {
    out.clear();
    for k in entries {
        if let Some(p) = peak_of(matrix, k, r, n_peaks)? {
            out.push(table.slots[p]);
        }
    }
    Ok(())
}

/// Writes the local ranks of `slots` to the front of `buf` (growing it as needed) and
/// returns how many. A slot is written unconditionally and the count advanced when it is
/// real, so the loop has no branch on the data except for the rare peak with several ranks.
fn expand(table: &LocalTable, slots: &[u32], buf: &mut Vec<u32>) -> usize {
    if buf.len() < slots.len() + 1 {
        buf.resize(slots.len() + 1, 0);
    }
    let mut n = 0;
    for (k, &s) in slots.iter().enumerate() {
        if is_many(s) {
            let i = (s & !MANY) as usize;
            let all = &table.many[i + 1..i + 1 + table.many[i] as usize];
            let need = n + all.len() + (slots.len() - k) + 1;
            if buf.len() < need {
                buf.resize(need, 0);
            }
            buf[n..n + all.len()].copy_from_slice(all);
            n += all.len();
            continue;
        }
        buf[n] = s;
        n += usize::from(s != NO_ID);
    }
    n
}

/// Sorts a nearly sorted slice by insertion, the cheapest sort when each value is at most a
/// few places from home (peaks in genomic order with sorted column indices, the usual
/// AnnData layout, give ranks out of order only where peaks overlap). Gives up, returning
/// false, once the work exceeds a few moves per value; the slice is then a permutation of
/// the input.
fn insertion_sort_bounded<T: Copy + Ord>(v: &mut [T]) -> bool {
    let mut budget = 4 * v.len() + 64;
    for i in 1..v.len() {
        let x = v[i];
        if x >= v[i - 1] {
            continue;
        }
        let mut j = i;
        while j > 0 && v[j - 1] > x {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
        budget = match budget.checked_sub(i - j) {
            Some(b) => b,
            None => return false,
        };
    }
    true
}

/// Sorts the local ranks of one row (duplicates may remain): in place when nearly sorted,
/// else with a bitmap for dense rows or a general sort.
fn sort_row(v: &mut [u32], words: usize, bits: &mut Vec<u64>) {
    // Try insertion only when few neighbours are out of order (one pass to count them).
    let descents = v.windows(2).filter(|w| w[1] < w[0]).count();
    if descents * 16 <= v.len() && insertion_sort_bounded(v) {
        return;
    }
    if v.len() * 4 < words {
        v.sort_unstable();
        return;
    }
    bits.resize(words, 0);
    let (mut lo, mut hi) = (usize::MAX, 0usize);
    for &l in v.iter() {
        let w = (l / 64) as usize;
        bits[w] |= 1 << (l % 64);
        lo = lo.min(w);
        hi = hi.max(w);
    }
    let mut n = 0;
    if lo <= hi {
        for (w, word) in bits[lo..=hi].iter_mut().enumerate() {
            let mut x = std::mem::take(word);
            while x != 0 {
                v[n] = ((lo + w) * 64) as u32 + x.trailing_zeros();
                n += 1;
                x &= x - 1;
            }
        }
    }
    // The bitmap removed duplicates; repeat the last rank to keep the length.
    if let Some(&last) = v[..n].last() {
        v[n..].fill(last);
    }
}

/// Rows per parallel job.
const ROWS_PER_JOB: usize = 32;

/// The rows of one job: their ids, one row after another, and each row's length.
#[derive(Default)]
struct Gathered {
    ids: Vec<i32>,
    lens: Vec<u32>,
}

/// Gathers rows `rows` into `out`.
fn gather_rows<P: CsrIndex, I: CsrIndex, D: Stored>(
    matrix: &Csr<'_, P, I, D>,
    bounds: &[usize],
    table: &LocalTable,
    n_peaks: usize,
    unk: i32,
    rows: std::ops::Range<usize>,
    out: &mut Gathered,
) -> Result<()> {
    let words = table.ids.len().div_ceil(64);
    // The bitmap has one word more than the ranks need: empty slots set a bit there
    // instead of branching on every entry.
    let trash = (words * 64) as u32;
    let mut slots = Vec::new();
    let mut locals = Vec::new();
    let mut bits: Vec<u64> = Vec::new();
    for r in rows {
        let entries = bounds[r]..bounds[r + 1];
        let before = out.ids.len();
        if entries.len() * 4 >= words {
            // A dense row: mark each rank in the bitmap straight from its slot, then read
            // the ranks out in ascending order (unique by construction).
            bits.resize(words + 1, 0);
            for k in entries {
                let Some(p) = peak_of(matrix, k, r, n_peaks)? else {
                    continue;
                };
                let s = table.slots[p];
                if is_many(s) {
                    let i = (s & !MANY) as usize;
                    for &l in &table.many[i + 1..i + 1 + table.many[i] as usize] {
                        bits[(l / 64) as usize] |= 1 << (l % 64);
                    }
                }
                let l = if s & MANY != 0 { trash } else { s };
                bits[(l / 64) as usize] |= 1 << (l % 64);
            }
            bits[words] = 0;
            // Count first, so the ids are written into place with no capacity checks.
            let count: usize = bits[..words].iter().map(|w| w.count_ones() as usize).sum();
            out.ids.resize(before + count, 0);
            let dest = &mut out.ids[before..];
            let mut j = 0;
            for (w, word) in bits[..words].iter_mut().enumerate() {
                let mut x = std::mem::take(word);
                while x != 0 {
                    dest[j] = table.ids[w * 64 + x.trailing_zeros() as usize] as i32;
                    j += 1;
                    x &= x - 1;
                }
            }
        } else {
            row_slots(matrix, table, n_peaks, r, entries, &mut slots)?;
            let n = expand(table, &slots, &mut locals);
            let v = &mut locals[..n];
            sort_row(v, words, &mut bits);
            let mut prev = NO_ID;
            for &l in v.iter() {
                if l != prev {
                    out.ids.push(table.ids[l as usize] as i32);
                    prev = l;
                }
            }
        }
        if out.ids.len() == before {
            out.ids.push(unk);
        }
        // A row holds at most one id per universe region, so its length fits in u32.
        out.lens.push((out.ids.len() - before) as u32);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{tokenizer, Rng};

    fn csr<'a>(
        indptr: &'a [i64],
        indices: &'a [i32],
        data: Option<&'a [f32]>,
    ) -> Csr<'a, i64, i32, f32> {
        Csr {
            indptr,
            indices,
            data,
        }
    }

    fn rows(r: &Ragged) -> Vec<Vec<i32>> {
        (0..r.len()).map(|i| r.cell(i).to_vec()).collect()
    }

    /// A table from explicit ids and offsets.
    fn explicit(tok: &Tokenizer, ids: &[i32], offsets: &[i64]) -> Result<PeakTable> {
        PeakTable::from_table(tok, RaggedRef::new(ids, offsets)?)
    }

    #[test]
    fn hand_checked_rows() {
        // Genomic order: chr1:0-100 (0), chr1:50-150 (1), chr10:0-100 (3), chr2:0-100 (2).
        let tok = tokenizer(&[
            ("chr1", 0, 100),
            ("chr1", 50, 150),
            ("chr2", 0, 100),
            ("chr10", 0, 100),
        ]);
        let peaks = RegionSet::from_columns(
            &["chr2", "chr1", "chrX", "chr10", "chr1"],
            &[10, 60, 0, 0, 120],
            &[20, 70, 10, 5, 130],
        )
        .expect("valid");
        let overlaps = peak_table(&tok, &peaks);
        assert_eq!(overlaps.ids, vec![2, 0, 1, 3, 1]);
        assert_eq!(overlaps.offsets, vec![0, 1, 3, 3, 4, 5]);
        let table = PeakTable::new(&tok, &peaks).expect("valid");
        assert!(!table.is_identity());
        let indptr = [0, 3, 4, 7, 7];
        let indices = [4, 0, 1, 2, 3, 0, 1];
        let data = [1.0, 2.0, 1.0, 1.0, 1.0, 5.0, 0.0];
        let unk = tok.special_id(Special::Unk) as i32;
        let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let got = table
            .gather(&csr(&indptr, &indices, Some(&data)), Some(names.clone()))
            .expect("valid");
        // Row 1 has only a peak that overlaps nothing; row 2's last entry is an explicit
        // zero; row 3 is empty.
        assert_eq!(
            rows(&got),
            vec![vec![0, 1, 2], vec![unk], vec![3, 2], vec![unk]]
        );
        assert_eq!(got.names, names);
        // Without data every stored entry counts; without names the rows are unnamed.
        let got = table
            .gather(&csr(&indptr, &indices, None), None)
            .expect("valid");
        assert_eq!(rows(&got)[2], vec![0, 1, 3, 2]);
        assert!(got.names.is_empty());
        // Special ids in the peak table (such as unk) are ignored.
        let with_unk = explicit(&tok, &[unk, 2], &[0, 2]).expect("valid");
        let got = with_unk
            .gather(&csr(&[0, 1], &[0], None), None)
            .expect("valid");
        assert_eq!(rows(&got), vec![vec![2]]);
    }

    #[test]
    fn matches_brute_force_on_random_matrices() {
        let names = ["chr1", "chr2", "chr10", "chrY"];
        for seed in 0..4u64 {
            let mut rng = Rng::new(100 + seed);
            let mut regions: Vec<(&str, u32, u32)> = Vec::new();
            while regions.len() < 2000 {
                let s = rng.below(100_000);
                let r = (names[rng.below(4) as usize], s, s + 20 + rng.below(500));
                if !regions.contains(&r) {
                    regions.push(r);
                }
            }
            let tok = tokenizer(&regions);
            let n_peaks = 700;
            let (mut pc, (mut ps, mut pe)): (Vec<&str>, (Vec<u32>, Vec<u32>)) = (0..n_peaks - 1)
                .map(|_| {
                    let s = rng.below(100_000);
                    (names[rng.below(4) as usize], (s, s + rng.below(1500)))
                })
                .unzip();
            // One peak overlapping hundreds of regions (more than 255).
            pc.push("chr1");
            ps.push(0);
            pe.push(100_000);
            let mut peaks = RegionSet::from_columns(&pc, &ps, &pe).expect("valid");
            // Half the seeds use the usual AnnData layout: peaks in genomic order and
            // sorted column indices, the nearly sorted fast path.
            let ordered = seed % 2 == 1;
            if ordered {
                peaks.sort();
            }
            let Ragged { ids, offsets, .. } = peak_table(&tok, &peaks);
            assert!(offsets.windows(2).any(|w| w[1] - w[0] > 255));
            let mut indptr = vec![0i64];
            let (mut indices, mut data) = (Vec::new(), Vec::new());
            let n_rows = 150;
            for r in 0..n_rows {
                // Sparse rows, dense rows (bitmap path) and empty rows.
                let nnz = match r % 3 {
                    0 => rng.below(5),
                    1 => rng.below(60),
                    _ => 300 + rng.below(400),
                };
                let mut row: Vec<u32> = (0..nnz).map(|_| rng.below(n_peaks as u64)).collect();
                if ordered {
                    row.sort_unstable();
                }
                for p in row {
                    indices.push(p);
                    data.push(if rng.below(6) == 0 {
                        0.0
                    } else {
                        1.0 + rng.below(3) as f64
                    });
                }
                indptr.push(indices.len() as i64);
            }
            let matrix = Csr {
                indptr: &indptr,
                indices: &indices,
                data: Some(&data),
            };
            // Ranked by sorting the table, then from the universe's genomic order once made.
            assert!(tok.universe().genomic_order_if_made().is_none());
            let sorted = PeakTable::new(&tok, &peaks).expect("valid");
            tok.universe().genomic_order();
            let ranked = PeakTable::new(&tok, &peaks).expect("valid");
            let got = sorted.gather(&matrix, None).expect("valid");
            assert_eq!(ranked.gather(&matrix, None).expect("valid"), got);
            let unk = tok.special_id(Special::Unk) as i32;
            for r in 0..n_rows {
                let mut want: Vec<i32> = Vec::new();
                for k in indptr[r] as usize..indptr[r + 1] as usize {
                    if data[k] != 0.0 {
                        let p = indices[k] as usize;
                        want.extend_from_slice(&ids[offsets[p] as usize..offsets[p + 1] as usize]);
                    }
                }
                want.sort_by_key(|&id| regions[id as usize]);
                want.dedup();
                if want.is_empty() {
                    want.push(unk);
                }
                assert_eq!(got.cell(r), want.as_slice(), "seed {seed} row {r}");
            }
        }
    }

    #[test]
    fn row_sorting_paths_agree_with_sort() {
        let mut rng = Rng::new(9);
        let mut bits = Vec::new();
        for case in 0..60 {
            let len = rng.below(400) as usize;
            let mut v: Vec<u32> = (0..len).map(|_| rng.below(1000)).collect();
            if case % 3 == 0 {
                v.sort_unstable();
                // A few local swaps: nearly sorted, few enough to take the insertion path.
                for _ in 0..len / 32 {
                    let i = rng.below(len as u64) as usize;
                    if i + 1 < len {
                        v.swap(i, i + 1);
                    }
                }
            }
            let mut want = v.clone();
            want.sort_unstable();
            let mut got = v.clone();
            sort_row(&mut got, 1000usize.div_ceil(64), &mut bits);
            got.dedup();
            want.dedup();
            assert_eq!(got, want, "case {case}");
            assert!(bits.iter().all(|&w| w == 0), "the bitmap is left clear");
            let mut near = v.clone();
            if insertion_sort_bounded(&mut near) {
                assert!(near.is_sorted());
            } else {
                near.sort_unstable();
            }
            let mut all = v;
            all.sort_unstable();
            assert_eq!(near, all, "a permutation either way");
        }
    }

    #[test]
    fn rejects_malformed_input() {
        let tok = tokenizer(&[("chr1", 0, 100)]);
        let ok_peaks = explicit(&tok, &[0], &[0, 1]).expect("valid");
        let bad = |indptr: &[i64], indices: &[i32], data: Option<&[f32]>, peaks: &PeakTable| {
            matches!(
                peaks.gather(&csr(indptr, indices, data), None),
                Err(Error::InvalidInput(_))
            )
        };
        assert!(bad(&[], &[], None, &ok_peaks), "empty indptr");
        assert!(
            bad(&[0, 2, 1], &[0, 0], None, &ok_peaks),
            "decreasing indptr"
        );
        assert!(
            bad(&[0, 3], &[0, 0], None, &ok_peaks),
            "indptr past the end"
        );
        assert!(bad(&[-1, 1], &[0], None, &ok_peaks), "negative indptr");
        assert!(
            bad(&[0, 1], &[1], None, &ok_peaks),
            "column index too large"
        );
        assert!(
            bad(&[0, 1], &[-1], None, &ok_peaks),
            "negative column index"
        );
        assert!(
            bad(&[0, 1], &[0], Some(&[1.0, 2.0]), &ok_peaks),
            "data length"
        );
        assert!(
            matches!(explicit(&tok, &[100], &[0, 1]), Err(Error::InvalidInput(_))),
            "peak id out of vocabulary"
        );
        assert!(
            matches!(explicit(&tok, &[0], &[0, 2]), Err(Error::InvalidInput(_))),
            "peak offsets past the end"
        );
        let names = Some(vec!["a".to_string(), "b".to_string()]);
        assert!(matches!(
            ok_peaks.gather(&csr(&[0, 1], &[0], None), names),
            Err(Error::InvalidInput(_))
        ));
        // Zero rows is fine.
        let empty = ok_peaks.gather(&csr(&[0], &[], None), None).expect("valid");
        assert!(empty.is_empty() && empty.offsets == vec![0]);
    }

    #[test]
    fn identity_table_matches_the_general_path() {
        let mut rng = Rng::new(77);
        let names = ["chr2", "chr1", "chr10"];
        // Disjoint regions, not in genomic order in the file.
        let mut regions: Vec<(&str, u32, u32)> = Vec::new();
        for (c, name) in names.iter().enumerate() {
            for i in 0..300u32 {
                let s = i * 1000 + (c as u32) * 7;
                regions.push((name, s, s + 100 + rng.below(800)));
            }
        }
        for i in (1..regions.len()).rev() {
            regions.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let tok = tokenizer(&regions);
        let peaks = tok.universe().regions().clone();
        let identity = PeakTable::new(&tok, &peaks).expect("valid");
        assert!(identity.is_identity());
        let overlaps = peak_table(&tok, &peaks);
        let general = PeakTable::from_table(&tok, overlaps.view()).expect("valid");
        assert!(!general.is_identity());
        let n = regions.len() as u64;
        let mut indptr = vec![0i64];
        let (mut indices, mut data) = (Vec::new(), Vec::new());
        for r in 0..60 {
            let nnz = [0, 3, 40, 700][r % 4];
            for _ in 0..nnz {
                indices.push(rng.below(n) as i64);
                data.push(rng.below(4) as u8);
            }
            indptr.push(indices.len() as i64);
        }
        let m = Csr {
            indptr: &indptr,
            indices: &indices,
            data: Some(&data),
        };
        let a = identity.gather(&m, None).expect("valid");
        let b = general.gather(&m, None).expect("valid");
        assert_eq!(a, b);
        // Overlapping universe regions, or peaks in another order, are not an identity.
        let mut shuffled = peaks.clone();
        shuffled.sort();
        assert!(!PeakTable::new(&tok, &shuffled)
            .expect("valid")
            .is_identity());
        let tok = tokenizer(&[("chr1", 0, 100), ("chr1", 50, 150)]);
        let own = tok.universe().regions().clone();
        assert!(!PeakTable::new(&tok, &own).expect("valid").is_identity());
    }

    #[test]
    fn peak_names_as_anndata_writes_them() {
        assert_eq!(parse_peak_name("chr1:100-600"), Some(("chr1", 100, 600)));
        assert_eq!(parse_peak_name("chr1-100-600"), Some(("chr1", 100, 600)));
        assert_eq!(
            parse_peak_name("chr1-5-100-200"),
            Some(("chr1-5", 100, 200))
        );
        assert_eq!(parse_peak_name("HLA-A:01-20"), Some(("HLA-A", 1, 20)));
        assert_eq!(parse_peak_name("a:b:1-2"), Some(("a:b", 1, 2)));
        for bad in [
            "chr1",
            "chr1:100",
            ":1-2",
            "-1-2",
            "chr1:1-",
            "chr1:-2",
            "chr1:1-2x",
            "chr1_1-2",
            "chr1:1-99999999999",
            "chr1:+1-2",
        ] {
            assert_eq!(parse_peak_name(bad), None, "{bad}");
        }
    }
}
