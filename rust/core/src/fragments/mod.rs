//! Tokenization of 10x Genomics fragment files: one token list per cell (barcode).
//!
//! # Format
//! Lines `chrom, start, end, barcode, count[, extra columns...]` separated by tabs (or runs
//! of spaces, which some tools write), with
//! 0-based half-open coordinates (bp). Lines starting with `#` and blank lines are skipped.
//! The file may be plain text, gzip, or BGZF (gzip whose members carry a `BC` extra
//! subfield); the kind is detected from the first bytes, not the file name.
//!
//! # Tokens
//! Each fragment is queried against the tokenizer's universe with the tokenizer's overlap
//! rule (`start < fragment_end && fragment_start < end`). A fragment that overlaps nothing
//! contributes nothing (the peer emits `[unk]` per such fragment instead).
//! - `unique = true`: each universe id at most once per cell, in ascending genomic order,
//!   that is the universe sorted by (chromosome name as bytes, start, end), the order of
//!   [`crate::RegionSet::sort`].
//! - `unique = false`: every overlap of every fragment, fragments in file order and the
//!   overlaps of one fragment in (start, end) order, duplicates kept.
//!
//! # Counts and QC
//! With `unique`, [`Ragged::counts`] gives, for each id of a cell, how many of the cell's
//! fragment lines overlap that region (lines, not the `count` column; a PCR duplicate
//! left in the file counts again). Without `unique` there are no counts (the repeats are
//! the ids). [`Ragged::qc`] gives per cell `n_fragments` (its well-formed lines, as
//! `min_fragments` counts them), `n_in_universe` (those overlapping at least one region)
//! and `n_tokens` (its universe ids, 0 for the `[unk]` placeholder).
//!
//! # Cells
//! - Without `barcodes`, cells come in the order their barcode first appears in the file,
//!   and cells left with no tokens are dropped.
//! - With `barcodes`, the output has exactly those cells in that order; a listed cell with
//!   no tokens (including one absent from the file) gets `[unk]`, with count 0 (no
//!   fragment overlaps it) and `n_tokens` 0; one absent from the file has
//!   `n_fragments` 0. Lines of other barcodes
//!   are parsed and checked but not queried. A listed barcode may not appear twice.
//! - `min_fragments` / `max_fragments` count the fragment lines of a barcode (all its
//!   well-formed lines, whether or not they overlap the universe; the `count` column is not
//!   summed). A cell outside the bounds is dropped, whether it was listed or not.
//!
//! # Errors
//! A malformed line (fewer than five non-empty columns, a coordinate or count that is not a
//! non-negative integer, `start > end`, a barcode that is not UTF-8) is an [`Error::Parse`] naming the file and 1-based line; with `skip_bad_lines` it
//! is skipped and counted in [`FragmentStats`]. With a barcode list, a barcode that is not
//! UTF-8 simply matches no listed barcode. Corrupt or truncated gzip or BGZF is an
//! [`Error::Compression`]; a BGZF file without its end-of-file block is read whole (as
//! htslib does) and noted in [`FragmentStats::missing_eof`]. Every BGZF block
//! is checked against itself (its deflate stream ends where its `BSIZE` says, its data
//! matches its CRC32 and `ISIZE`); a block that fails is an [`Error::Compression`] naming its
//! byte offset, or with `skip_bad_lines` is skipped with its lines and counted in
//! [`FragmentStats::lost_blocks`] (with the blocks a too-large `BSIZE` swallowed, counted by
//! their gzip member headers). What a lost block held is unknown, so the text between the
//! newlines around it (a line it cuts) is dropped too, and counted as one skipped line
//! unless empty. A block that cannot be read at all (a `BSIZE` too small, a truncated last
//! block) loses the rest of the file, counted as one lost block. Line numbers after a lost
//! block are approximate. A UTF-8 byte-order mark at the very start of the file is dropped.
//!
//! # How it runs (one file per stage)
//! The file is read in chunks of about 1 MiB (for BGZF, runs of whole raw blocks, inflated
//! by the worker with libdeflate). Workers split their chunk into lines, parse them and
//! query the universe; the line that straddles two chunks is stitched and parsed when the
//! chunks are merged. Merging is serial and in file order, so the first-seen order of cells
//! is exact, and it overlaps with the reading of the next batch and the parsing of the one
//! after. Parallel work runs in [`crate::parallel`]'s pool (serially after a fork). Memory
//! is the output plus a few chunks per thread, plus about 72 bytes per distinct barcode
//! (its bytes, a 4-byte index slot or two and a 40-byte cell; the workers' fast table holds
//! the first 2^18 barcodes only). A barcode past `max_fragments` can no longer be a cell,
//! and its ids are dropped at once. With `unique`, a cell holds 8-byte (rank, count)
//! entries: a fragment on the same region as the entry before it adds to that count in
//! place (the common case in a position-sorted file), and whenever the buffer is full
//! (from 4096 entries on) it is sorted and each rank's entries folded into one, summing
//! their counts; the buffer grows only when that frees less than half, so repeated ranks
//! never hold more than about four times the output (ids and counts).
//!
//! - `chunks`: opening the file and cutting it into chunks (text, or raw BGZF blocks).
//! - `worker`: one chunk in a worker: inflating, splitting into lines, parsing, querying.
//! - `parse`: the parsers of one fragment line.
//! - `barcodes`: the barcode-to-cell table the workers read, and barcode lists.
//! - `merge`: the serial merge of the workers' results, in file order, into cells.
//! - `pipeline`: the overlapping of reading, working and merging, and the whole run.

use std::path::Path;

use crate::coverage::ChromNames;
use crate::error::{LineProblem, Result};
use crate::ragged::Ragged;
use crate::tokenizer::Tokenizer;

mod barcodes;
mod chunks;
mod merge;
mod parse;
mod pipeline;
mod worker;

#[cfg(test)]
pub(crate) mod tests;

pub use barcodes::read_barcodes;

/// What to read from a fragment file and how to shape the cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentOptions {
    /// Barcodes to keep, in output order; `None` keeps every barcode in first-seen order.
    pub barcodes: Option<Vec<String>>,
    /// Drop cells with fewer fragment lines than this.
    pub min_fragments: u64,
    /// Drop cells with more fragment lines than this.
    pub max_fragments: Option<u64>,
    /// Each id at most once per cell, in genomic order (else all overlaps in file order).
    pub unique: bool,
    /// Skip and count malformed lines instead of failing on the first one.
    pub skip_bad_lines: bool,
    /// How the file's chromosome names are matched to the universe's.
    pub chrom_names: ChromNames,
}

impl Default for FragmentOptions {
    fn default() -> Self {
        FragmentOptions {
            barcodes: None,
            min_fragments: 0,
            max_fragments: None,
            unique: true,
            skip_bad_lines: false,
            chrom_names: ChromNames::Auto,
        }
    }
}

/// Counts from one pass over a fragment file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FragmentStats {
    /// Lines read, including comments, blank and malformed lines.
    pub lines: u64,
    /// Well-formed fragment lines, of any barcode.
    pub fragments: u64,
    /// Malformed lines skipped (only with `skip_bad_lines`).
    pub skipped_lines: u64,
    /// The first skipped line: its 1-based number and what was wrong with it.
    pub first_skipped: Option<(u64, LineProblem)>,
    /// BGZF blocks that failed their checks and were skipped with their lines (only with
    /// `skip_bad_lines`).
    pub lost_blocks: u64,
    /// What was wrong with the first lost block, naming its byte offset.
    pub first_lost_block: Option<String>,
    /// The BGZF file ended, after this many bytes, without its end-of-file block (it may
    /// have been truncated at a block boundary). Read anyway, as htslib does.
    pub missing_eof: Option<u64>,
}

/// Tokenizes a fragment file into one cell per barcode; see the module docs for the rules.
pub fn tokenize_fragments(
    tok: &Tokenizer,
    path: &Path,
    opts: &FragmentOptions,
) -> Result<(Ragged, FragmentStats)> {
    pipeline::run(tok, path, opts, &pipeline::Tuning::default())
}
