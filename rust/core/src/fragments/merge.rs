//! Merging the workers' results, serially and in file order, into cells: new barcodes
//! get cell numbers in first-seen order, lines cut across chunks are parsed here, and the
//! cells are filtered, sorted and joined into one [`Ragged`] at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use std::hash::Hasher;

use super::barcodes::BarcodeMap;
use super::chunks::ReadFailure;
use super::worker::{
    cut_by_lost_block, parse_lines, ChunkOutput, ParsedLines, WorkerContext, IGNORE, LOCAL,
};
use super::{FragmentOptions, FragmentStats};
use crate::bed::{is_comment, too_long};

/// A UTF-8 byte-order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
use crate::coverage::Coverage;
use crate::error::{Error, Result};
use crate::hash::FastHasher;
use crate::io::MAX_LINE_BYTES;
use crate::prefetch::prefetch;
use crate::ragged::{CellQc, Ragged};
use crate::tokenizer::{Special, Tokenizer};
use crate::universe::GenomicOrder;

/// What one barcode gathered so far: 32 bytes (half a cache line, so that the merge's
/// scattered updates touch one line per cell), and no heap memory while it has no ids.
#[derive(Debug, Default)]
struct Cell {
    /// With unique ids, one [`Packing`] entry per (rank, count) (a rank may repeat until
    /// the buffer is compacted); otherwise one universe id per overlap, in file order.
    ids: Vec<u32>,
    /// Fragment lines of the barcode (saturating at 2^32-1, far beyond any real cell).
    lines: u32,
    /// Those of its lines that overlap at least one universe region (saturating).
    in_universe: u32,
}

/// How a unique-mode entry packs a genomic rank (high bits) and a count (low bits) into 4
/// bytes, so that the buffers are no larger than plain ids and sorting entries sorts by
/// rank. The count takes the bits the universe's ranks leave (12 for a million regions);
/// a rank whose count outgrows them gets another entry, and the final count is the sum.
#[derive(Debug, Clone, Copy)]
pub(super) struct Packing {
    count_bits: u32,
    max_count: u32,
}

impl Packing {
    /// The packing for ranks below `n_ranks` (a universe of fewer than 2^31 regions, so
    /// at least one bit is left for the count).
    pub(super) fn new(n_ranks: usize) -> Self {
        let rank_bits = (usize::BITS - n_ranks.saturating_sub(1).leading_zeros()).clamp(1, 31);
        let count_bits = 32 - rank_bits;
        Packing {
            count_bits,
            max_count: (1u32 << count_bits) - 1,
        }
    }

    #[inline]
    fn entry(self, rank: u32, count: u32) -> u32 {
        (rank << self.count_bits) | count
    }

    #[inline]
    fn rank_of(self, e: u32) -> u32 {
        e >> self.count_bits
    }

    #[inline]
    fn count_of(self, e: u32) -> u32 {
        e & self.max_count
    }

    /// Sorts entries by rank and folds each rank's entries into as few as its total count
    /// needs (one, unless it passes `max_count`), in place: a run of `k` entries never
    /// needs more than `k`.
    fn compact(self, ids: &mut Vec<u32>) {
        if !ids.is_sorted() {
            ids.sort_unstable();
        }
        let mut w = 0;
        let mut i = 0;
        while i < ids.len() {
            let rank = self.rank_of(ids[i]);
            let mut total = 0u64;
            while i < ids.len() && self.rank_of(ids[i]) == rank {
                total += u64::from(self.count_of(ids[i]));
                i += 1;
            }
            let max = u64::from(self.max_count);
            while total > 0 {
                let c = total.min(max);
                ids[w] = self.entry(rank, c as u32);
                w += 1;
                total -= c;
            }
        }
        ids.truncate(w);
    }
}

impl Cell {
    const FIRST_COMPACTION: usize = 4096;

    /// Counts one overlap of the region of genomic rank `r` (unique ids).
    #[inline]
    fn count(&mut self, r: u32, p: Packing) {
        let first = p.entry(r, 1);
        if let Some(last) = self.ids.last_mut() {
            // Consecutive fragments on one region: the common case, counted in place.
            // One compare: the entry is rank r's with a count in 1..max_count.
            if last.wrapping_sub(first) < p.max_count - 1 {
                *last += 1;
                return;
            }
        }
        self.make_room(p);
        self.ids.push(first);
    }

    /// With unique ids: compacts a full buffer before it grows (see
    /// [`Packing::compact`]), and grows it only when that frees less than half, so
    /// repeated ranks never take more than about four times the output.
    #[inline]
    fn make_room(&mut self, p: Packing) {
        if self.ids.len() < self.ids.capacity() || self.ids.len() < Self::FIRST_COMPACTION {
            return;
        }
        p.compact(&mut self.ids);
        if 2 * self.ids.len() > self.ids.capacity() {
            self.ids.reserve(self.ids.capacity());
        }
    }
}

/// The barcodes met so far, in cell order: their bytes back to back (about 8 bytes beside
/// each barcode) and, without a barcode list, a hash index of cell numbers over them (4
/// bytes a slot, at most half full).
#[derive(Debug, Default)]
struct Barcodes {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    slots: Vec<u32>,
}

impl Barcodes {
    const EMPTY: u32 = u32::MAX;

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn name(&self, cell: usize) -> &[u8] {
        let start = if cell == 0 { 0 } else { self.ends[cell - 1] };
        &self.bytes[start..self.ends[cell]]
    }

    fn hash(barcode: &[u8]) -> usize {
        let mut h = FastHasher::default();
        h.write(barcode);
        h.finish() as usize
    }

    /// The cell of an indexed barcode.
    fn get(&self, barcode: &[u8]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = Self::hash(barcode) & mask;
        loop {
            let cell = self.slots[i];
            if cell == Self::EMPTY {
                return None;
            }
            if self.name(cell as usize) == barcode {
                return Some(cell);
            }
            i = (i + 1) & mask;
        }
    }

    /// Appends a barcode as the next cell, without indexing it.
    fn push(&mut self, barcode: &[u8]) -> u32 {
        let cell = self.ends.len() as u32;
        self.bytes.extend_from_slice(barcode);
        self.ends.push(self.bytes.len());
        cell
    }

    /// Appends a barcode that [`Barcodes::get`] does not find, and indexes it.
    fn insert(&mut self, barcode: &[u8]) -> u32 {
        let cell = self.push(barcode);
        if 2 * self.len() > self.slots.len() {
            self.slots = vec![Self::EMPTY; (2 * self.slots.len()).max(16)];
            for c in 0..self.len() {
                self.place(c as u32);
            }
        } else {
            self.place(cell);
        }
        cell
    }

    fn place(&mut self, cell: u32) {
        let mask = self.slots.len() - 1;
        let mut i = Self::hash(self.name(cell as usize)) & mask;
        while self.slots[i] != Self::EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = cell;
    }

    /// The fast table the workers look barcodes up in, over the first `n` barcodes.
    fn snapshot(&self, n: usize) -> BarcodeMap {
        let mut map = BarcodeMap::default();
        for c in 0..self.len().min(n) {
            map.insert(self.name(c), c as u32);
        }
        map
    }
}

/// The workers' table stops growing at this many barcodes: past it, barcodes new to the
/// table are resolved by the merger, so that millions of barcodes that never become cells
/// cost their compact entry in [`Barcodes`] only, not a fast-table slot as well.
const SNAPSHOT_MAX: usize = 1 << 18;

/// How many records ahead [`Merger::apply`] prefetches the cell it will append to.
const MERGE_AHEAD: usize = 8;

/// Gathers the workers' results into cells, in file order; owns the barcode table.
pub(super) struct Merger {
    path: PathBuf,
    unique: bool,
    /// The unique-mode entries' layout.
    packing: Packing,
    listed: bool,
    /// The barcode table the workers see: the list, or a snapshot of `names`.
    pub(super) known: Arc<BarcodeMap>,
    /// Barcodes added to `names` since `known` was taken.
    fresh: usize,
    /// Every barcode seen so far (without a list, indexed), or the list.
    names: Barcodes,
    cells: Vec<Cell>,
    /// Cells past this many fragment lines can no longer be kept: their ids are dropped.
    max_fragments: Option<u64>,
    stats: FragmentStats,
    /// The queried lines per chromosome, summed over the chunks.
    coverage: Coverage,
    /// The start of a line whose end is in a later chunk.
    pending: Vec<u8>,
    /// Inside a `#` line too long to hold, whose end is in a later chunk.
    skipping: bool,
    /// A lost BGZF block cut the held line: it is dropped (and counted) when it ends.
    pending_cut: bool,
    /// The start of the file was looked at for a UTF-8 byte-order mark.
    bom_checked: bool,
    local_to_global: Vec<u32>,
}

impl Merger {
    pub(super) fn new(
        path: &Path,
        opts: &FragmentOptions,
        coverage: Coverage,
        n_ranks: usize,
    ) -> Result<Self> {
        let mut known = BarcodeMap::default();
        let mut names = Barcodes::default();
        if let Some(list) = &opts.barcodes {
            if list.len() >= LOCAL as usize {
                return Err(Error::InvalidInput(
                    "too many barcodes (at most 2^31-1)".into(),
                ));
            }
            for (i, bc) in list.iter().enumerate() {
                if known.insert(bc.as_bytes(), i as u32).is_some() {
                    return Err(Error::InvalidInput(format!(
                        "barcode {bc:?} is listed more than once"
                    )));
                }
                names.push(bc.as_bytes());
            }
        }
        Ok(Merger {
            path: path.to_path_buf(),
            unique: opts.unique,
            packing: Packing::new(n_ranks),
            listed: opts.barcodes.is_some(),
            known: Arc::new(known),
            fresh: 0,
            cells: (0..names.len()).map(|_| Cell::default()).collect(),
            names,
            max_fragments: opts.max_fragments,
            stats: FragmentStats::default(),
            coverage,
            pending: Vec::new(),
            skipping: false,
            pending_cut: false,
            bom_checked: false,
            local_to_global: Vec::new(),
        })
    }

    /// Lets the workers see the barcodes found so far; copies the table only when it has
    /// grown enough for the copy to pay off.
    pub(super) fn refresh(&mut self) {
        let n = self.names.len();
        if self.fresh > 0
            && self.known.len() < SNAPSHOT_MAX
            && (n < 1 << 16 || 8 * self.fresh >= self.known.len())
        {
            self.known = Arc::new(self.names.snapshot(SNAPSHOT_MAX));
            self.fresh = 0;
        }
    }

    /// Merges a batch of chunk results, in order.
    pub(super) fn merge_all(
        &mut self,
        ctx: &WorkerContext<'_>,
        outs: Vec<ChunkOutput>,
    ) -> Result<()> {
        outs.into_iter().try_for_each(|t| self.merge_task(ctx, t))
    }

    /// Merges one chunk: the line it completes, then its own complete lines.
    fn merge_task(&mut self, ctx: &WorkerContext<'_>, t: ChunkOutput) -> Result<()> {
        if let Some(f) = t.failure {
            return Err(match f {
                ReadFailure::Io(e) => Error::io(&self.path, e),
                ReadFailure::Compression(message) => Error::Compression {
                    path: self.path.clone(),
                    line: self.stats.lines,
                    message,
                },
            });
        }
        if let Some(at) = t.missing_eof {
            self.stats.missing_eof = Some(at);
        }
        if t.lost.count > 0 {
            self.stats.lost_blocks += t.lost.count;
            if self.stats.first_lost_block.is_none() {
                self.stats.first_lost_block = t.lost.first;
            }
        }
        if !self.skipping {
            self.pending.extend_from_slice(&t.head);
        }
        self.pending_cut |= t.head_cut;
        if !self.bom_checked && (self.pending.len() >= UTF8_BOM.len() || t.has_newline) {
            // A byte-order mark at the very start of the file is not part of its first
            // line (as in the BED reader); the file's first bytes are always in `pending`.
            self.bom_checked = true;
            if self.pending.starts_with(UTF8_BOM) {
                self.pending.drain(..UTF8_BOM.len());
            }
        }
        if !t.has_newline {
            return self.check_pending(ctx.skip_bad);
        }
        if std::mem::take(&mut self.skipping) {
            // The end of a comment line too long to hold.
            self.stats.lines += 1;
            self.pending_cut = false;
        } else if std::mem::take(&mut self.pending_cut) {
            self.drop_cut_line();
        } else {
            self.pending.push(b'\n');
            let straddling = parse_lines(ctx, &self.known, &self.pending);
            self.pending.clear();
            self.apply(straddling)?;
        }
        self.apply(t.parsed)?;
        self.pending.extend_from_slice(&t.tail);
        self.pending_cut = t.tail_cut;
        Ok(())
    }

    /// Drops the held line, which a lost BGZF block cut; counts it unless it is empty.
    fn drop_cut_line(&mut self) {
        if !self.pending.is_empty() {
            self.stats.lines += 1;
            self.stats.skipped_lines += 1;
            if self.stats.first_skipped.is_none() {
                self.stats.first_skipped = Some((self.stats.lines, cut_by_lost_block()));
            }
        }
        self.pending.clear();
    }

    /// A line held across chunks may not grow past [`MAX_LINE_BYTES`]: past it, it is an
    /// error, unless it is a `#` comment, whose rest is then read past without being kept.
    /// With `skip_bad`, a long line that is not a comment is skipped and counted.
    fn check_pending(&mut self, skip_bad: bool) -> Result<()> {
        if self.pending.len() <= MAX_LINE_BYTES {
            return Ok(());
        }
        let comment = is_comment(&self.pending, false);
        if comment || skip_bad {
            if !comment {
                self.stats.skipped_lines += 1;
                if self.stats.first_skipped.is_none() {
                    self.stats.first_skipped = Some((self.stats.lines + 1, too_long()));
                }
            }
            self.pending = Vec::new();
            self.skipping = true;
            return Ok(());
        }
        Err(Error::Parse {
            path: self.path.clone(),
            line: self.stats.lines + 1,
            problem: too_long(),
        })
    }

    /// Parses the last line when the file does not end with a newline.
    pub(super) fn finish_input(&mut self, ctx: &WorkerContext<'_>) -> Result<()> {
        if std::mem::take(&mut self.skipping) {
            self.stats.lines += 1;
            return Ok(());
        }
        if std::mem::take(&mut self.pending_cut) {
            self.drop_cut_line();
            return Ok(());
        }
        if !self.bom_checked && self.pending.starts_with(UTF8_BOM) {
            self.pending.drain(..UTF8_BOM.len());
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        self.pending.push(b'\n');
        let last = parse_lines(ctx, &self.known, &self.pending);
        self.pending.clear();
        self.apply(last)
    }

    /// Adds parsed lines to their cells and their counts to the stats.
    fn apply(&mut self, body: ParsedLines) -> Result<()> {
        let base = self.stats.lines;
        if let Some((line, problem)) = body.error {
            return Err(Error::Parse {
                path: self.path.clone(),
                line: base + line,
                problem,
            });
        }
        self.local_to_global.clear();
        self.local_to_global.resize(body.new_ends.len(), IGNORE);
        let mut at = 0;
        for (k, rec) in body.records.iter().enumerate() {
            // Appending to a cell touches the end of its id list, a cache miss with
            // thousands of cells; start the load for the cell a few records ahead.
            if let Some(ahead) = body.records.get(k + MERGE_AHEAD) {
                if let Some(c) = self.cells.get(ahead.cell as usize) {
                    prefetch(c.ids.as_ptr().wrapping_add(c.ids.len().saturating_sub(1)));
                }
            }
            let g = if rec.cell & LOCAL != 0 {
                self.resolve(&body, (rec.cell & !LOCAL) as usize)?
            } else {
                rec.cell
            };
            let n = rec.n_ids as usize;
            let ids = &body.ids[at..at + n];
            at += n;
            let cell = &mut self.cells[g as usize];
            cell.lines = cell.lines.saturating_add(1);
            cell.in_universe = cell.in_universe.saturating_add(u32::from(n > 0));
            if self
                .max_fragments
                .is_some_and(|m| u64::from(cell.lines) > m)
            {
                // Too many lines to be kept, whatever follows: its ids go now.
                if cell.ids.capacity() > 0 {
                    cell.ids = Vec::new();
                }
                continue;
            }
            if self.unique {
                let packing = self.packing;
                for &r in ids {
                    cell.count(r, packing);
                }
            } else {
                cell.ids.extend_from_slice(ids);
            }
        }
        self.coverage.merge(&body.coverage);
        self.stats.lines += body.lines;
        self.stats.fragments += body.fragments;
        self.stats.skipped_lines += body.skipped;
        if self.stats.first_skipped.is_none() {
            self.stats.first_skipped = body.first_skipped.map(|(l, p)| (base + l, p));
        }
        Ok(())
    }

    /// The cell of the `l`-th new barcode of `body`, creating it on first sight.
    fn resolve(&mut self, body: &ParsedLines, l: usize) -> Result<u32> {
        let g = self.local_to_global[l];
        if g != IGNORE {
            return Ok(g);
        }
        let start = if l == 0 { 0 } else { body.new_ends[l - 1] };
        let bytes = &body.new_bytes[start..body.new_ends[l]];
        let g = match self.names.get(bytes) {
            Some(g) => g,
            None => {
                if self.cells.len() >= LOCAL as usize {
                    return Err(Error::InvalidInput(format!(
                        "{}: more than 2^31-1 barcodes",
                        self.path.display()
                    )));
                }
                // Workers only hand over barcodes they checked to be UTF-8.
                let g = self.names.insert(bytes);
                self.cells.push(Cell::default());
                self.fresh += 1;
                g
            }
        };
        self.local_to_global[l] = g;
        Ok(g)
    }

    /// Filters, sorts and joins the cells, with their counts (unique ids) and QC numbers.
    pub(super) fn into_ragged(
        self,
        tok: &Tokenizer,
        order: Option<&GenomicOrder>,
        opts: &FragmentOptions,
        par: bool,
    ) -> (Ragged, FragmentStats) {
        let Merger {
            mut cells,
            names,
            stats,
            listed,
            coverage,
            packing,
            ..
        } = self;
        let keep = |c: &Cell| {
            let lines = u64::from(c.lines);
            lines >= opts.min_fragments && opts.max_fragments.is_none_or(|m| lines <= m)
        };
        let finish = |c: &mut Cell| {
            if !keep(c) {
                c.ids = Vec::new();
            } else if order.is_some() && !c.ids.is_sorted() {
                // Sorted is enough: the join below sums a rank's entries, which sorting
                // makes adjacent (folding them here first would walk the ids twice).
                c.ids.sort_unstable();
            }
        };
        if par {
            cells.par_iter_mut().for_each(finish);
        } else {
            cells.iter_mut().for_each(finish);
        }
        let unk = tok.special_id(Special::Unk) as i32;
        let n_kept = cells.iter().filter(|c| keep(c)).count();
        let total: usize = cells.iter().map(|c| c.ids.len().max(1)).sum();
        let mut out = Ragged::unnamed(Vec::with_capacity(total), Vec::with_capacity(n_kept + 1));
        out.offsets.push(0);
        let mut counts: Vec<u32> = Vec::with_capacity(if order.is_some() { total } else { 0 });
        let mut qc = CellQc::default();
        for (i, cell) in cells.into_iter().enumerate() {
            if !keep(&cell) || (cell.ids.is_empty() && !listed) {
                continue;
            }
            let name = String::from_utf8_lossy(names.name(i)).into_owned();
            let before = out.ids.len();
            if cell.ids.is_empty() {
                // A listed cell with no tokens: the placeholder, overlapped by nothing.
                out.ids.push(unk);
                counts.push(0);
            } else if let Some(order) = order {
                // Sorted by rank; a rank with several entries (a count past the packing's
                // maximum) gets their sum.
                let by_rank = order.ids();
                let mut last = u32::MAX;
                for &e in &cell.ids {
                    let (rank, n) = (packing.rank_of(e), packing.count_of(e));
                    if rank == last {
                        if let Some(c) = counts.last_mut() {
                            *c = c.saturating_add(n);
                        }
                        continue;
                    }
                    last = rank;
                    out.ids.push(by_rank[rank as usize] as i32);
                    counts.push(n);
                }
            } else {
                out.ids.extend(cell.ids.iter().map(|&id| id as i32));
            }
            let n_tokens = if cell.ids.is_empty() {
                0
            } else {
                out.ids.len() - before
            };
            qc.push(
                u64::from(cell.lines),
                u64::from(cell.in_universe),
                n_tokens as u64,
            );
            out.offsets.push(out.ids.len() as i64);
            out.names.push(name);
        }
        out.counts = order.is_some().then_some(counts);
        out.qc = Some(qc);
        out.coverage = Some(coverage);
        (out, stats)
    }
}

#[cfg(test)]
mod packing_tests {
    use super::*;

    #[test]
    fn a_cell_is_half_a_cache_line() {
        assert_eq!(std::mem::size_of::<Cell>(), 32);
    }

    #[test]
    fn packing_leaves_the_ranks_bits_to_the_count() {
        assert_eq!(Packing::new(1_000_000).count_bits, 12);
        assert_eq!(Packing::new(1).count_bits, 31);
        assert_eq!(Packing::new(1 << 31).count_bits, 1);
    }

    #[test]
    fn counts_past_the_packing_spill_into_more_entries() {
        // Two count bits: at most 3 per entry.
        let p = Packing::new(1 << 30);
        assert_eq!(p.max_count, 3);
        let mut cell = Cell::default();
        for r in [5, 5, 5, 5, 2, 5, 5, 5, 5, 5, 5, 2] {
            cell.count(r, p);
        }
        p.compact(&mut cell.ids);
        let got: Vec<(u32, u32)> = cell
            .ids
            .iter()
            .map(|&e| (p.rank_of(e), p.count_of(e)))
            .collect();
        assert_eq!(got, vec![(2, 2), (5, 3), (5, 3), (5, 3), (5, 1)]);
    }
}
