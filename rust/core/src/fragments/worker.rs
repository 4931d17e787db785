//! What a worker does with one chunk: inflate it if it holds BGZF blocks, set aside the
//! partial lines at both ends (the merger stitches them to their neighbours), parse the
//! complete lines, look their barcodes up and query the universe.

use std::sync::Arc;

use memchr::memchr;

use super::barcodes::{BarcodeMap, BATCH};
use super::chunks::{BufferPool, Chunk, ReadFailure};
use super::parse::{fast_line, parse_fields, Fragment};
use crate::bed::{is_comment, too_long};
use crate::bgzf;
use crate::coverage::{ChromResolver, Coverage, Tally};
use crate::error::LineProblem;
use crate::hash::FastMap;
use crate::index::Scratch;
use crate::io::MAX_LINE_BYTES;
use crate::universe::Universe;

/// What the workers share.
pub(super) struct WorkerContext<'a> {
    pub(super) universe: &'a Universe,
    /// Maps the file's chromosome names to the universe's (aliases included).
    pub(super) resolver: ChromResolver<'a>,
    /// Genomic rank of each id, when cells keep unique ids (workers emit ranks then).
    pub(super) ranks: Option<&'a [u32]>,
    /// A barcode list was given: barcodes missing from it are not cells.
    pub(super) listed: bool,
    /// Skip and count malformed lines instead of stopping at the first.
    pub(super) skip_bad: bool,
    /// Where chunk buffers go back to once parsed.
    pub(super) buffers: Arc<BufferPool>,
}

/// Cell reference of a line whose barcode is not wanted.
pub(super) const IGNORE: u32 = u32::MAX;
/// Marks a cell reference as an index into the chunk's own table of new barcodes.
pub(super) const LOCAL: u32 = 1 << 31;

/// One kept fragment line: its cell and how many ids (ranks) it produced.
#[derive(Debug, Clone, Copy)]
pub(super) struct FragmentRecord {
    pub(super) cell: u32,
    pub(super) n_ids: u32,
}

/// Results for a run of complete lines; line numbers are relative to the run (1-based).
#[derive(Debug, Default)]
pub(super) struct ParsedLines {
    pub(super) lines: u64,
    pub(super) fragments: u64,
    pub(super) records: Vec<FragmentRecord>,
    pub(super) ids: Vec<u32>,
    /// Barcodes missing from the shared table, in first-seen order, concatenated.
    pub(super) new_bytes: Vec<u8>,
    pub(super) new_ends: Vec<usize>,
    pub(super) skipped: u64,
    pub(super) first_skipped: Option<(u64, LineProblem)>,
    pub(super) error: Option<(u64, LineProblem)>,
    /// The queried lines per chromosome (lines of barcodes that are not cells excluded).
    pub(super) coverage: Coverage,
}

impl ParsedLines {
    /// Records a malformed line; true when parsing must stop.
    pub(super) fn bad(&mut self, skip: bool, line: u64, problem: LineProblem) -> bool {
        if skip {
            self.skipped += 1;
            // Barcode problems are found a few lines after parse problems.
            if self.first_skipped.as_ref().is_none_or(|(l, _)| line < *l) {
                self.first_skipped = Some((line, problem));
            }
            false
        } else {
            self.error = Some((line, problem));
            true
        }
    }
}

/// What a line cut by a lost BGZF block is reported as (with `skip_bad`).
pub(super) fn cut_by_lost_block() -> LineProblem {
    LineProblem::Other("part of a line next to a corrupt BGZF block that was skipped".into())
}

/// BGZF blocks that failed their checks and were skipped (with `skip_bad`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct LostBlocks {
    pub(super) count: u64,
    /// What was wrong with the first, with its byte offset.
    pub(super) first: Option<String>,
}

impl LostBlocks {
    fn add(&mut self, problem: String, blocks: u64) {
        self.count += blocks;
        self.first.get_or_insert(problem);
    }
}

/// A worker's result for one chunk.
#[derive(Debug, Default)]
pub(super) struct ChunkOutput {
    pub(super) failure: Option<ReadFailure>,
    /// BGZF blocks skipped in this chunk.
    pub(super) lost: LostBlocks,
    /// Text before the first newline (the end of a line begun in earlier chunks), or the
    /// whole chunk when it has no newline.
    pub(super) head: Vec<u8>,
    /// Text after the last newline.
    pub(super) tail: Vec<u8>,
    pub(super) has_newline: bool,
    /// A lost block lies before the first newline: the line that `head` ends is cut.
    pub(super) head_cut: bool,
    /// A lost block lies after the last newline: the line that `tail` begins is cut.
    pub(super) tail_cut: bool,
    /// The BGZF file ended here without its end-of-file block.
    pub(super) missing_eof: Option<u64>,
    /// The complete lines between `head` and `tail`.
    pub(super) parsed: ParsedLines,
}

/// Inflates (for BGZF) and parses one chunk, looking barcodes up in `known`; a chunk
/// that failed to read or inflate comes back as its failure.
pub(super) fn parse_chunk(
    ctx: &WorkerContext<'_>,
    known: &BarcodeMap,
    chunk: Chunk,
) -> ChunkOutput {
    match chunk {
        Chunk::Failed(f) => ChunkOutput {
            failure: Some(f),
            ..ChunkOutput::default()
        },
        Chunk::Lost(m) => ChunkOutput {
            lost: LostBlocks {
                count: 1,
                first: Some(format!("{m}; the rest of the file is not read")),
            },
            // The line that was being read is cut.
            head_cut: true,
            ..ChunkOutput::default()
        },
        Chunk::MissingEof(at) => ChunkOutput {
            missing_eof: Some(at),
            ..ChunkOutput::default()
        },
        Chunk::Text(text) => {
            let out = split_and_parse(ctx, known, &text);
            ctx.buffers.give(text);
            out
        }
        Chunk::Blocks {
            raw,
            spans,
            data_len,
        } => {
            let mut text = ctx.buffers.take();
            text.resize(data_len, 0);
            let mut at = 0;
            let mut failure = None;
            let mut lost = LostBlocks::default();
            // Where the data of lost blocks would have been (offsets into `text`).
            let mut gaps: Vec<usize> = Vec::new();
            match bgzf::Inflater::new() {
                None => failure = Some(ReadFailure::Compression("out of memory".into())),
                Some(mut d) => {
                    for s in &spans {
                        let block = &raw[s.start..s.start + s.len];
                        let out = &mut text[at..at + s.data_len];
                        match bgzf::inflate_block(&mut d, block, s, out) {
                            Ok(()) => at += s.data_len,
                            Err(m) if ctx.skip_bad => {
                                // The block's data is lost, and with it any part of the
                                // lines on both sides of the gap (see `split_with_gaps`).
                                if gaps.last() != Some(&at) {
                                    gaps.push(at);
                                }
                                lost.add(m, 1 + bgzf::members_inside(block));
                            }
                            Err(m) => {
                                failure = Some(ReadFailure::Compression(m));
                                break;
                            }
                        }
                    }
                }
            }
            text.truncate(at);
            ctx.buffers.give(raw);
            let mut out = match failure {
                Some(f) => ChunkOutput {
                    failure: Some(f),
                    ..ChunkOutput::default()
                },
                None if gaps.is_empty() => split_and_parse(ctx, known, &text),
                None => split_with_gaps(ctx, known, &text, &gaps),
            };
            out.lost = lost;
            ctx.buffers.give(text);
            out
        }
    }
}

/// Splits and parses a chunk in which BGZF blocks were lost, `gaps` (increasing) saying
/// where their data would have been. What a lost block held is unknown, so every line
/// that touches a gap is dropped: the text before a gap back to its last newline, and the
/// text after it up to its first newline. Each dropped piece of a line that is not empty
/// counts as a skipped line. The lines that `head` ends and `tail` begins are dropped by
/// the merger (which sees the neighbouring chunks) when `head_cut` / `tail_cut` say so.
fn split_with_gaps(
    ctx: &WorkerContext<'_>,
    known: &BarcodeMap,
    text: &[u8],
    gaps: &[usize],
) -> ChunkOutput {
    let (Some(first), Some(last)) = (memchr(b'\n', text), memchr::memrchr(b'\n', text)) else {
        // No newline: the whole chunk continues one cut line.
        return ChunkOutput {
            head: text.to_vec(),
            head_cut: true,
            ..ChunkOutput::default()
        };
    };
    let head_cut = gaps.iter().any(|&g| g <= first);
    let tail_cut = gaps.iter().any(|&g| g > last);
    // The complete lines run from `first + 1` to `last` (inclusive); a line from `s` to
    // its newline at `e` is cut by a gap `g` with `s <= g <= e`.
    let body = first + 1..last + 1;
    let mut kept: Vec<u8> = Vec::with_capacity(body.len());
    let mut from = body.start;
    let mut pieces = 0u64;
    let mut first_cut_line: Option<u64> = None;
    let mut i = 0;
    let inner: Vec<usize> = gaps.iter().copied().filter(|g| body.contains(g)).collect();
    while i < inner.len() {
        let g = inner[i];
        let s = memchr::memrchr(b'\n', &text[from..g]).map_or(from, |k| from + k + 1);
        // The cut span runs to the newline at or after the last gap it holds.
        let mut e = memchr(b'\n', &text[g..]).map_or(last, |k| g + k);
        i += 1;
        while i < inner.len() && inner[i] <= e {
            e = memchr(b'\n', &text[inner[i]..]).map_or(last, |k| inner[i] + k);
            i += 1;
        }
        pieces += u64::from(e > s);
        kept.extend_from_slice(&text[from..s]);
        if first_cut_line.is_none() {
            first_cut_line = Some(memchr::memchr_iter(b'\n', &kept).count() as u64 + 1);
        }
        from = e + 1;
    }
    kept.extend_from_slice(&text[from..body.end]);
    let mut parsed = parse_lines(ctx, known, &kept);
    if pieces > 0 {
        parsed.lines += pieces;
        let line = first_cut_line.unwrap_or(1);
        for _ in 0..pieces {
            parsed.bad(true, line, cut_by_lost_block());
        }
    }
    ChunkOutput {
        failure: None,
        lost: LostBlocks::default(),
        head: text[..first].to_vec(),
        tail: text[last + 1..].to_vec(),
        has_newline: true,
        head_cut,
        tail_cut,
        missing_eof: None,
        parsed,
    }
}

pub(super) fn split_and_parse(
    ctx: &WorkerContext<'_>,
    known: &BarcodeMap,
    text: &[u8],
) -> ChunkOutput {
    match (memchr(b'\n', text), memchr::memrchr(b'\n', text)) {
        (Some(first), Some(last)) => ChunkOutput {
            failure: None,
            lost: LostBlocks::default(),
            head: text[..first].to_vec(),
            tail: text[last + 1..].to_vec(),
            has_newline: true,
            head_cut: false,
            tail_cut: false,
            missing_eof: None,
            parsed: parse_lines(ctx, known, &text[first + 1..=last]),
        },
        _ => ChunkOutput {
            head: text.to_vec(),
            ..ChunkOutput::default()
        },
    }
}

/// Parses and queries complete lines (`text` is empty or ends with a newline).
pub(super) fn parse_lines(ctx: &WorkerContext<'_>, known: &BarcodeMap, text: &[u8]) -> ParsedLines {
    let mut b = ParsedLines::default();
    let mut local: FastMap<&[u8], u32> = FastMap::default();
    let mut scratch = Scratch::default();
    let mut tally = Tally::new(ctx.resolver);
    // Fragment files are sorted by position, so the chromosome rarely changes.
    let mut last_chrom: (&[u8], Option<u32>) = (&[], None);
    let mut batch: Vec<(Fragment<'_>, u64)> = Vec::with_capacity(BATCH);
    let mut found = [None::<u32>; BATCH];
    let mut pos = 0;
    let mut line_no = 0u64;
    let mut stop: Option<(u64, LineProblem)> = None;
    while pos < text.len() && stop.is_none() {
        batch.clear();
        while batch.len() < BATCH && pos < text.len() {
            if let Some((f, used)) =
                fast_line(&text[pos..]).filter(|&(_, used)| used <= MAX_LINE_BYTES)
            {
                line_no += 1;
                pos += used;
                batch.push((f, line_no));
                continue;
            }
            let end = memchr(b'\n', &text[pos..]).map_or(text.len(), |i| pos + i);
            let mut line = &text[pos..end];
            pos = end + 1;
            line_no += 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            if line.len() > MAX_LINE_BYTES {
                if is_comment(line, false) {
                    continue;
                }
                if ctx.skip_bad {
                    b.bad(true, line_no, too_long());
                    continue;
                }
                stop = Some((line_no, too_long()));
                break;
            }
            match parse_fields(line) {
                Ok(f) => batch.push((f, line_no)),
                Err(_) if line.trim_ascii().is_empty() => {}
                Err(problem) if ctx.skip_bad => {
                    b.bad(true, line_no, problem);
                }
                // Lines before this one in the batch may still fail first.
                Err(problem) => {
                    stop = Some((line_no, problem));
                    break;
                }
            }
        }
        known.get_batch(batch.iter().map(|(f, _)| f.barcode), &mut found);
        for (&(ref f, line), &hit) in batch.iter().zip(&found) {
            let cell = if let Some(g) = hit {
                g
            } else if ctx.listed {
                IGNORE
            } else if let Some(&l) = local.get(f.barcode) {
                l | LOCAL
            } else if std::str::from_utf8(f.barcode).is_err() {
                if b.bad(ctx.skip_bad, line, LineProblem::NotUtf8) {
                    return b;
                }
                continue;
            } else {
                let l = b.new_ends.len() as u32;
                b.new_bytes.extend_from_slice(f.barcode);
                b.new_ends.push(b.new_bytes.len());
                local.insert(f.barcode, l);
                l | LOCAL
            };
            b.fragments += 1;
            if cell == IGNORE {
                continue;
            }
            if f.chrom != last_chrom.0 {
                last_chrom = (f.chrom, tally.enter(f.chrom).chrom);
            }
            let before = b.ids.len();
            if let Some(c) = last_chrom.1 {
                let ids = &mut b.ids;
                match ctx.ranks {
                    Some(ranks) => ctx
                        .universe
                        .overlaps(c, f.start, f.end, &mut scratch, |id| {
                            ids.push(ranks[id as usize])
                        }),
                    None => ctx
                        .universe
                        .overlaps(c, f.start, f.end, &mut scratch, |id| ids.push(id)),
                }
            }
            let n_ids = (b.ids.len() - before) as u32;
            tally.count(f.start, f.end, n_ids > 0);
            b.records.push(FragmentRecord { cell, n_ids });
        }
    }
    if let Some((line, problem)) = stop {
        b.bad(false, line, problem);
    }
    b.lines = line_no;
    b.coverage = tally.finish();
    b
}
